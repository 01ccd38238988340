"""The registry in PostgreSQL: one database shared by a fleet of relays (docs/registry.md).

The same contract as ``core.registry.sqlite``, kept the same ways: each method is one
short transaction; a token is used by one conditional ``UPDATE`` whose row count is the
answer (PostgreSQL re-checks its ``WHERE`` on the row a concurrent winner committed, so
of any number of members presenting one token exactly one gets 1); a cluster's port is
checked and written under a table lock, and a unique constraint backs it.

Methods are synchronous, over one connection behind a lock, like the SQLite store's:
the token commands, the desktop app's workers and the tests use one interface, and
the relay calls the methods from worker threads (``asyncio.to_thread``), so a slow
database never stops its event loop. A second connection, in a thread of its own,
``LISTEN``s for the notifications the schema's triggers send (``core.registry.pgschema``)
and re-reads the change counter and the clusters on each, and every ``RESYNC`` seconds
in case one was lost (a dropped connection is re-made and re-read at once).
``clusters()`` and ``generation()``, which the relay asks per stream and per watch tick,
answer from that copy without touching the database.

psycopg is imported here only: a relay without a fleet never needs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import select
import threading
from collections.abc import Callable, Iterator
from typing import Any, overload

import psycopg
from psycopg.rows import TupleRow

from core.errors import ConfigError, RegistryError
from core.pki.identity import Role
from core.pki.tokens import TokenKind
from core.registry import pgschema
from core.registry.store import (
    ALL_CLUSTERS,
    LIVE_WINDOW,
    CaRecord,
    ClusterRecord,
    IdentityRecord,
    MemberRecord,
    Scope,
    TokenRecord,
)

#: Seconds between re-reads when no notification came (the safety net).
RESYNC = 2.0
#: A statement waiting longer than this (a lock held elsewhere) fails instead.
STATEMENT_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT = 10
#: A member row silent this long (seconds) is deleted by the others' heartbeats.
_FORGET = 3600.0

log = logging.getLogger("wicket.registry")

Connection = psycopg.Connection[TupleRow]
Clusters = tuple[int, dict[str, ClusterRecord]]

_SELECT_TOKENS = (
    "SELECT id, kind, name, secret_hash, created, expires, used, revoked, all_clusters,"
    " ARRAY(SELECT cluster FROM token_clusters c WHERE c.token_id = t.id) FROM tokens t"
)
_READ_CLUSTERS = (
    "SELECT r.n, c.name, c.public_port FROM registry_changes r LEFT JOIN clusters c ON true"
)


class PostgresStore:
    """``RegistryStore`` in a PostgreSQL database; open it with :meth:`open`."""

    def __init__(self, connect: Callable[[], Connection], where: str) -> None:
        self.where = where
        self._connect = connect
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._clusters: Clusters = (-1, {})
        self._stale = True  # our own cluster writes: read them back at the next lookup
        self._publishing = threading.Lock()
        self._follower: _Follower | None = None
        self._closed = False

    @classmethod
    def open(cls, url: str, *, password: str | None = None) -> PostgresStore:
        """Connect, check and upgrade the schema, and start following changes.

        ``url`` has no password (``core.registry.location`` refused one); it comes from
        ``password``, or libpq's own sources (``PGPASSWORD``, a passfile).
        """
        store = cls(_connector(url, password), url)
        try:
            with store._errors() as conn:
                pgschema.upgrade(conn, url)
            store.clusters()
            store._follower = _Follower(store._connect, store._publish, url)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._closed = True  # a call still on its way (a worker thread) connects no more
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- tokens ------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        """The token and its scope in one transaction."""
        with self._errors() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO tokens (id, kind, name, secret_hash, created, expires, used,"
                " revoked, all_clusters) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    record.token_id,
                    record.kind.value,
                    record.name,
                    record.secret_hash,
                    _utc(record.created),
                    _utc(record.expires),
                    _utc(record.used_at),
                    record.revoked,
                    record.scope is ALL_CLUSTERS,
                ),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO token_clusters (token_id, cluster) VALUES (%s, %s)",
                    [(record.token_id, cluster) for cluster in sorted(record.scope or ())],
                )

    def token(self, token_id: str) -> TokenRecord | None:
        rows = self._query(_SELECT_TOKENS + " WHERE id = %s", (token_id,))
        return _token(rows[0]) if rows else None

    def tokens(self) -> list[TokenRecord]:
        return [_token(row) for row in self._query(_SELECT_TOKENS + " ORDER BY created, id")]

    def use_token(self, token_id: str, now: dt.datetime) -> bool:
        return bool(
            self._execute(
                "UPDATE tokens SET used = %(now)s WHERE id = %(id)s AND used IS NULL"
                " AND NOT revoked AND (expires IS NULL OR expires > %(now)s)",
                {"now": _utc(now), "id": token_id},
            )
        )

    def revoke_token(self, token_id: str) -> bool:
        return bool(self._execute("UPDATE tokens SET revoked = true WHERE id = %s", (token_id,)))

    def revoke_tokens(self, kind: TokenKind, name: str) -> int:
        return self._execute(
            "UPDATE tokens SET revoked = true WHERE kind = %s AND name = %s AND used IS NULL"
            " AND NOT revoked",
            (kind.value, name),
        )

    # -- identities --------------------------------------------------------------------

    def add_identity(self, record: IdentityRecord) -> None:
        self._execute(
            "INSERT INTO identities (serial, role, name, fingerprint, issued, not_after,"
            " token_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                record.serial,
                record.role.value,
                record.name,
                record.fingerprint,
                _utc(record.issued_at),
                _utc(record.not_after),
                record.token_id,
            ),
        )

    def identities(self) -> list[IdentityRecord]:
        rows = self._query(
            "SELECT i.serial, i.role, i.name, i.fingerprint, i.issued, i.not_after, i.token_id,"
            " i.revoked, i.last_seen, t.all_clusters,"
            " ARRAY(SELECT cluster FROM token_clusters c WHERE c.token_id = t.id)"
            " FROM identities i JOIN tokens t ON t.id = i.token_id ORDER BY i.issued, i.serial"
        )
        return [
            IdentityRecord(
                s, Role(r), n, f, _read(i), _read(a), t, v, _read(seen), _scope(every, scope)
            )
            for s, r, n, f, i, a, t, v, seen, every, scope in rows
        ]

    def scope(self, fingerprint: str) -> Scope:
        rows = self._query(
            "SELECT t.all_clusters, ARRAY(SELECT cluster FROM token_clusters c"
            " WHERE c.token_id = t.id) FROM identities i JOIN tokens t ON t.id = i.token_id"
            " WHERE i.fingerprint = %s",
            (fingerprint,),
        )
        return _scope(*rows[0]) if rows else frozenset()

    def set_scope(self, name: str, scope: Scope) -> int:
        """One transaction: the triggers on ``token_clusters`` and ``all_clusters`` tell
        every member (NOTIFY), which applies it to the live sessions."""
        with self._errors() as conn, conn.transaction():
            ids = [row[0] for row in conn.execute(_CLIENT_TOKENS, {"name": name}).fetchall()]
            conn.execute(
                "UPDATE tokens SET all_clusters = %s WHERE id = ANY(%s)",
                (scope is ALL_CLUSTERS, ids),
            )
            conn.execute("DELETE FROM token_clusters WHERE token_id = ANY(%s)", (ids,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO token_clusters (token_id, cluster) VALUES (%s, %s)",
                    [(t, cluster) for t in ids for cluster in sorted(scope or ())],
                )
        return len(ids)

    def seen(self, fingerprint: str, now: dt.datetime) -> None:
        self._execute(
            "UPDATE identities SET last_seen = %s WHERE fingerprint = %s",
            (_utc(now), fingerprint),
        )

    def revoke_identities(self, role: Role, name: str) -> int:
        return self._execute(
            "UPDATE identities SET revoked = true WHERE role = %s AND name = %s AND NOT revoked",
            (role.value, name),
        )

    def identity_revoked(self, fingerprint: str) -> bool:
        rows = self._query("SELECT revoked FROM identities WHERE fingerprint = %s", (fingerprint,))
        return bool(rows and rows[0][0])

    # -- clusters ----------------------------------------------------------------------

    def clusters(self) -> dict[str, ClusterRecord]:
        """The followed copy; read here only after this store changed a cluster itself
        (another process's change arrives by notification)."""
        if self._stale:
            self._stale = False
            with self._errors() as conn:
                self._publish(_clusters(conn.execute(_READ_CLUSTERS).fetchall()))
        return dict(self._clusters[1])

    def generation(self) -> int:
        """The change counter as last heard (``registry_changes``): no database call."""
        return self._clusters[0]

    def put_cluster(self, name: str, public_port: int | None) -> ClusterRecord:
        with self._errors() as conn, conn.transaction():
            conn.execute("LOCK TABLE clusters IN SHARE ROW EXCLUSIVE MODE")
            row = conn.execute(
                "SELECT public_port FROM clusters WHERE name = %s", (name,)
            ).fetchone()
            port = public_port if public_port is not None else (row[0] if row else None)
            other = conn.execute(
                "SELECT name FROM clusters WHERE public_port = %s AND name != %s", (port, name)
            ).fetchone()
            if other is not None:
                raise ConfigError(f"public port {port} is already used by cluster {other[0]}")
            conn.execute(
                "INSERT INTO clusters (name, public_port) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET public_port = EXCLUDED.public_port",
                (name, port),
            )
        self._stale = True
        return ClusterRecord(name, port)

    def remove_cluster(self, name: str) -> bool:
        removed = bool(self._execute("DELETE FROM clusters WHERE name = %s", (name,)))
        self._stale = True
        return removed

    # -- the fleet's CA ----------------------------------------------------------------

    def ca(self) -> CaRecord | None:
        rows = self._query("SELECT cert_pem, key, key_encryption, created FROM ca")
        return _ca(rows[0]) if rows else None

    def add_ca(self, record: CaRecord) -> CaRecord:
        """One transaction: the insert, unless a row is there (a racing member's insert
        is waited for), then the row that is."""
        with self._errors() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO ca (cert_pem, key, key_encryption, created)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (single) DO NOTHING",
                (record.cert_pem, record.key, record.key_encryption, _utc(record.created)),
            )
            row = conn.execute("SELECT cert_pem, key, key_encryption, created FROM ca")
            return _ca(row.fetchall()[0])

    # -- membership --------------------------------------------------------------------

    def heartbeat(self, member_id: str, advertise: str) -> None:
        """One upsert, and rows silent for ``_FORGET`` seconds are deleted."""
        with self._errors() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO members (id, advertise) VALUES (%s, %s) ON CONFLICT (id)"
                " DO UPDATE SET heartbeat = now(), advertise = EXCLUDED.advertise",
                (member_id, advertise),
            )
            conn.execute(
                "DELETE FROM members WHERE heartbeat < now() - make_interval(secs => %s)",
                (_FORGET,),
            )

    def leave(self, member_id: str) -> None:
        self._execute("DELETE FROM members WHERE id = %s", (member_id,))

    def members(self, within: float = LIVE_WINDOW) -> list[MemberRecord]:
        rows = self._query(
            "SELECT id, advertise, started, heartbeat FROM members"
            " WHERE heartbeat > now() - make_interval(secs => %s) ORDER BY started, id",
            (within,),
        )
        return [MemberRecord(i, a, _read(s), _read(h)) for i, a, s, h in rows]

    # -- plumbing ----------------------------------------------------------------------

    def _publish(self, clusters: Clusters) -> None:
        """Keep the newer of two reads (the follower's and our own may cross)."""
        with self._publishing:
            if clusters[0] >= self._clusters[0]:
                self._clusters = clusters

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[TupleRow]:
        """A read; tried once more on a new connection if the old one was found broken
        (a restarted or failed-over database). Writes are not repeated: one may have
        committed before its connection broke."""
        had_connection = self._conn is not None
        try:
            with self._errors() as conn:
                return conn.execute(sql.encode(), args).fetchall()
        except RegistryError:
            if not had_connection or self._conn is not None or self._closed:
                raise
        with self._errors() as conn:
            return conn.execute(sql.encode(), args).fetchall()

    def _execute(self, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> int:
        """One statement, one transaction (autocommit); the number of rows it changed."""
        with self._errors() as conn:
            return conn.execute(sql.encode(), args).rowcount

    @contextlib.contextmanager
    def _errors(self) -> Iterator[Connection]:
        """The connection, under the lock, (re)made if need be; psycopg's errors become
        ``RegistryError``s, and a connection that broke is dropped for the next call."""
        with self._lock:
            if self._closed:
                raise RegistryError(f"{self.where}: the store is closed")
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                yield self._conn
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise RegistryError(f"{self.where}: {_message(exc)}") from exc


class _Follower:
    """``LISTEN`` on a connection of its own, in a thread of its own; after each
    notification, and every ``RESYNC`` seconds without one, read the change counter and
    the clusters (one statement: one snapshot) and hand them to ``publish``."""

    def __init__(
        self, connect: Callable[[], Connection], publish: Callable[[Clusters], None], where: str
    ) -> None:
        self._connect = connect
        self._publish = publish
        self._where = where
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Wake the thread, wait for it (it closes its connection), then the pipe."""
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self.thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {pgschema.CHANNEL}".encode())
                    self._read(conn)  # what changed before we listened
                    backoff = 0.1
                    self._follow(conn)
            except (psycopg.Error, RegistryError) as exc:
                if self._stopping.is_set():
                    return
                why = f"{self._where}: {_message(exc)}" if isinstance(exc, psycopg.Error) else exc
                log.warning("no change notifications (%s); reconnecting in %.1f s", why, backoff)
                if select.select([self._wake_r], [], [], backoff)[0]:
                    return
                backoff = min(backoff * 2, RESYNC)

    def _follow(self, conn: Connection) -> None:
        while True:
            ready = select.select([conn.fileno(), self._wake_r], [], [], RESYNC)[0]
            if self._wake_r in ready:
                return
            if ready:
                for _ in conn.notifies(timeout=0):
                    pass  # one read covers any number of them
            self._read(conn)

    def _read(self, conn: Connection) -> None:
        self._publish(_clusters(conn.execute(_READ_CLUSTERS.encode()).fetchall()))


def _connector(url: str, password: str | None) -> Callable[[], Connection]:
    """Connections to ``url``: autocommit (each statement its own transaction unless one
    is opened), times in UTC, statements that wait too long fail."""

    def connect() -> Connection:
        try:
            conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="wicket",
                password=password,  # None: libpq's own sources (dropped from the conninfo)
            )
        except psycopg.Error as exc:
            raise RegistryError(f"{url}: cannot connect: {_message(exc)}") from exc
        conn.execute(b"SET TIME ZONE 'UTC'")
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}".encode())
        return conn

    return connect


def _message(exc: psycopg.Error) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _clusters(rows: list[TupleRow]) -> Clusters:
    """The counter and the clusters from ``_READ_CLUSTERS`` (a row of NULLs: none)."""
    named = sorted((name, port) for _, name, port in rows if name is not None)
    return int(rows[0][0]), {name: ClusterRecord(name, port) for name, port in named}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@overload
def _read(value: dt.datetime) -> dt.datetime: ...
@overload
def _read(value: None) -> None: ...
def _read(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC)


def _scope(every: bool, clusters: list[str]) -> Scope:
    return ALL_CLUSTERS if every else frozenset(clusters)


def _token(row: TupleRow) -> TokenRecord:
    token_id, kind, name, secret_hash, created, expires, used, revoked, every, clusters = row
    return TokenRecord(
        token_id,
        TokenKind(kind),
        name,
        secret_hash,
        _read(created),
        _read(expires),
        _read(used),
        revoked,
        _scope(every, clusters),
    )


def _ca(row: TupleRow) -> CaRecord:
    cert_pem, key, encryption, created = row
    return CaRecord(bytes(cert_pem), bytes(key), encryption, _read(created))


#: The client tokens of a client's name: those issued to that name, and those that
#: enrolled an identity of that name.
_CLIENT_TOKENS = (
    "SELECT id FROM tokens WHERE kind = 'client' AND (name = %(name)s OR id IN"
    " (SELECT token_id FROM identities WHERE role = 'client' AND name = %(name)s))"
)
