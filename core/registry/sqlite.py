"""The registry in SQLite: ``<state>/registry.db`` (0600), shared by every process.

WAL mode, so readers (the relay routing a stream) never wait for a writer; a busy
timeout, so a writer waits its turn instead of failing; each change is one short
transaction, ``BEGIN IMMEDIATE`` where it reads before it writes. One connection per
store, used by one thread at a time (a lock: the desktop app calls from worker threads).
Opening checks the file first: a damaged, foreign or newer database is a
``RegistryError`` before anything in it is written (docs/registry.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import stat
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import ConfigError, RegistryError
from core.fsutil import PRIVATE_FILE_MODE
from core.pki.identity import Role
from core.pki.tokens import TokenKind
from core.registry import migrate
from core.registry.migrate import from_us, to_us
from core.registry.store import ALL_CLUSTERS, ClusterRecord, IdentityRecord, Scope, TokenRecord

DB_FILE = "registry.db"
BUSY_TIMEOUT = 10.0  # seconds a writer waits for another's transaction

log = logging.getLogger("wicket.registry")

_SELECT_TOKENS = (
    "SELECT id, kind, name, secret_hash, created_us, expires_us, used_us, revoked, all_clusters,"
    " (SELECT group_concat(cluster, ' ') FROM token_clusters WHERE token_id = id) FROM tokens"
)


class SqliteStore:
    """``RegistryStore`` on one SQLite connection; open it with :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()
        self._clusters: tuple[int, dict[str, ClusterRecord]] | None = None
        self._close = weakref.finalize(self, conn.close)

    @classmethod
    def open(cls, state_dir: Path, now: dt.datetime) -> SqliteStore:
        """Open (create, or migrate the JSON files into) ``<state_dir>/registry.db``."""
        path = state_dir / DB_FILE
        # Read the JSON before creating the database: a bad file must leave no trace.
        legacy = None if path.exists() else migrate.read_legacy(state_dir)
        conn = _connect(path)
        try:
            if _checked_version(conn, path) < migrate.SCHEMA_VERSION:
                if legacy is None:
                    legacy = migrate.read_legacy(state_dir)
                if migrate.upgrade(conn, legacy) and legacy.paths:
                    _retire(legacy, now)
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            conn.close()
            raise RegistryError(f"{path}: {exc}; refused, nothing was changed") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- tokens ------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        """The token and its scope in one transaction."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO tokens (id, kind, name, secret_hash, created_us, expires_us,"
                " used_us, revoked, all_clusters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.token_id,
                    record.kind.value,
                    record.name,
                    record.secret_hash,
                    to_us(record.created),
                    _us(record.expires),
                    _us(record.used_at),
                    int(record.revoked),
                    int(record.scope is ALL_CLUSTERS),
                ),
            )
            conn.executemany(
                "INSERT INTO token_clusters (token_id, cluster) VALUES (?, ?)",
                [(record.token_id, cluster) for cluster in sorted(record.scope or ())],
            )

    def token(self, token_id: str) -> TokenRecord | None:
        rows = self._query(_SELECT_TOKENS + " WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def tokens(self) -> list[TokenRecord]:
        rows = self._query(_SELECT_TOKENS + " ORDER BY created_us, id")
        return [_token(row) for row in rows]

    def use_token(self, token_id: str, now: dt.datetime) -> bool:
        return bool(
            self._execute(
                "UPDATE tokens SET used_us = ? WHERE id = ? AND used_us IS NULL"
                " AND revoked = 0 AND (expires_us IS NULL OR expires_us > ?)",
                (to_us(now), token_id, to_us(now)),
            )
        )

    def revoke_token(self, token_id: str) -> bool:
        return bool(self._execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,)))

    def revoke_tokens(self, kind: TokenKind, name: str) -> int:
        return self._execute(
            "UPDATE tokens SET revoked = 1 WHERE kind = ? AND name = ? AND used_us IS NULL"
            " AND revoked = 0",
            (kind.value, name),
        )

    # -- identities --------------------------------------------------------------------

    def add_identity(self, record: IdentityRecord) -> None:
        self._execute(
            "INSERT INTO identities (serial, role, name, fingerprint, issued_us, not_after_us,"
            " token_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.serial,
                record.role.value,
                record.name,
                record.fingerprint,
                to_us(record.issued_at),
                to_us(record.not_after),
                record.token_id,
            ),
        )

    def identities(self) -> list[IdentityRecord]:
        rows = self._query(
            "SELECT serial, role, name, fingerprint, issued_us, not_after_us, token_id,"
            " revoked, last_seen_us FROM identities ORDER BY issued_us"
        )
        scopes = self._scopes()
        return [
            IdentityRecord(
                s, Role(r), n, f, from_us(i), from_us(a), t, bool(v), _dt(seen), scopes[t]
            )
            for s, r, n, f, i, a, t, v, seen in rows
        ]

    def scope(self, fingerprint: str) -> Scope:
        rows = self._query("SELECT token_id FROM identities WHERE fingerprint = ?", (fingerprint,))
        return self._scopes(rows[0][0])[rows[0][0]] if rows else frozenset()

    def set_scope(self, name: str, scope: Scope) -> int:
        with self._transaction() as conn:
            ids = [row[0] for row in conn.execute(_CLIENT_TOKENS, {"name": name})]
            conn.executemany(
                "UPDATE tokens SET all_clusters = ? WHERE id = ?",
                [(int(scope is ALL_CLUSTERS), token_id) for token_id in ids],
            )
            conn.executemany("DELETE FROM token_clusters WHERE token_id = ?", [(t,) for t in ids])
            conn.executemany(
                "INSERT INTO token_clusters (token_id, cluster) VALUES (?, ?)",
                [(t, cluster) for t in ids for cluster in sorted(scope or ())],
            )
        return len(ids)

    def seen(self, fingerprint: str, now: dt.datetime) -> None:
        self._execute(
            "UPDATE identities SET last_seen_us = ? WHERE fingerprint = ?",
            (to_us(now), fingerprint),
        )

    def _scopes(self, token_id: str | None = None) -> dict[str, Scope]:
        """Each token's scope (or only ``token_id``'s)."""
        sql = (
            "SELECT t.id, t.all_clusters, c.cluster FROM tokens t"
            " LEFT JOIN token_clusters c ON c.token_id = t.id"
        )
        rows = self._query(*((sql + " WHERE t.id = ?", (token_id,)) if token_id else (sql,)))
        clusters: dict[str, set[str]] = {}
        every: set[str] = set()
        for token, all_clusters, cluster in rows:
            clusters.setdefault(token, set()).update([cluster] if cluster else [])
            if all_clusters:
                every.add(token)
        return {t: ALL_CLUSTERS if t in every else frozenset(c) for t, c in clusters.items()}

    def revoke_identities(self, role: Role, name: str) -> int:
        return self._execute(
            "UPDATE identities SET revoked = 1 WHERE role = ? AND name = ? AND revoked = 0",
            (role.value, name),
        )

    def identity_revoked(self, fingerprint: str) -> bool:
        rows = self._query("SELECT revoked FROM identities WHERE fingerprint = ?", (fingerprint,))
        return bool(rows and rows[0][0])

    # -- clusters ----------------------------------------------------------------------

    def clusters(self) -> dict[str, ClusterRecord]:
        """Re-read only when another connection committed (``PRAGMA data_version``)."""
        with self._lock, self._errors():
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if self._clusters is None or self._clusters[0] != version:
                rows = self._conn.execute("SELECT name, public_port FROM clusters").fetchall()
                self._clusters = (version, {n: ClusterRecord(n, p) for n, p in sorted(rows)})
            return dict(self._clusters[1])

    def put_cluster(self, name: str, public_port: int | None) -> ClusterRecord:
        with self._transaction() as conn:
            old = conn.execute("SELECT public_port FROM clusters WHERE name = ?", (name,))
            row = old.fetchone()
            port = public_port if public_port is not None else (row[0] if row else None)
            other = conn.execute(
                "SELECT name FROM clusters WHERE public_port = ? AND name != ?", (port, name)
            ).fetchone()
            if other is not None:
                raise ConfigError(f"public port {port} is already used by cluster {other[0]}")
            conn.execute(
                "INSERT INTO clusters (name, public_port) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET public_port = excluded.public_port",
                (name, port),
            )
        return ClusterRecord(name, port)

    def remove_cluster(self, name: str) -> bool:
        return bool(self._execute("DELETE FROM clusters WHERE name = ?", (name,)))

    def generation(self) -> int:
        with self._lock, self._errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # -- plumbing ----------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self._errors():
            return self._conn.execute(sql, args).fetchall()

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement, one transaction (autocommit); the number of rows it changed."""
        with self._lock, self._errors():
            self._clusters = None  # our own commits leave data_version as it is
            return self._conn.execute(sql, args).rowcount

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A read-modify-write: the write lock is taken first, so no one writes between."""
        with self._lock, self._errors():
            self._clusters = None
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise RegistryError(f"{self.path}: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to ``path``, created 0600 (SQLite gives its -wal and -shm the same mode)."""
    try:
        # Create it 0600, but never open an existing file here: closing a descriptor of
        # it would drop every POSIX lock this process holds on it, those of another
        # connection (an embedded relay's) included, and let another writer in.
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            os.close(os.open(path, flags, PRIVATE_FILE_MODE))
        except FileExistsError:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise RegistryError(f"{path}: not a regular file; refused") from None
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise RegistryError(f"{path}: cannot open: {exc}") from exc
    return conn


def _checked_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version, after refusing a foreign, newer or damaged database (read only)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != migrate.APPLICATION_ID and (app_id or version or tables):
        raise RegistryError(f"{path}: not a Wicket registry; refused, nothing was changed")
    if version > migrate.SCHEMA_VERSION:
        raise RegistryError(
            f"{path}: schema version {version} is newer than this Wicket's"
            f" ({migrate.SCHEMA_VERSION}); refused, nothing was changed: upgrade Wicket"
        )
    problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise RegistryError(f"{path}: damaged ({problems[0]}); refused, nothing was changed")
    conn.execute("PRAGMA foreign_keys = ON")
    return int(version)


def _retire(legacy: migrate.Legacy, now: dt.datetime) -> None:
    """Rename the imported JSON files; if that fails they stay, and are ignored."""
    try:
        migrate.retire(legacy, now)
    except OSError as exc:
        log.warning("migrated %s but could not rename it: %s", legacy.paths, exc)
    else:
        log.info("migrated %s into %s", ", ".join(p.name for p in legacy.paths), DB_FILE)


def _us(value: dt.datetime | None) -> int | None:
    return None if value is None else to_us(value)


def _dt(value: int | None) -> dt.datetime | None:
    return None if value is None else from_us(value)


def _token(row: tuple[Any, ...]) -> TokenRecord:
    token_id, kind, name, secret_hash, created, expires, used, revoked, every, clusters = row
    return TokenRecord(
        token_id,
        TokenKind(kind),
        name,
        secret_hash,
        from_us(created),
        _dt(expires),
        _dt(used),
        bool(revoked),
        ALL_CLUSTERS if every else frozenset((clusters or "").split()),
    )


#: The client tokens of a client's name: those issued to that name, and those that
#: enrolled an identity of that name.
_CLIENT_TOKENS = (
    "SELECT id FROM tokens WHERE kind = 'client' AND (name = :name OR id IN"
    " (SELECT token_id FROM identities WHERE role = 'client' AND name = :name))"
)
