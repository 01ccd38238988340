"""The registry's schema, its versions, and the one-time import of the JSON files.

Releases before the database kept ``tokens.json`` and ``clusters.json``. The first start
of this code reads and checks both completely *before* any file is created or changed;
then the schema and every record go in one transaction, and only after it committed are
the JSON files renamed to ``<name>.migrated-<stamp>``, which nothing reads again.
Anything wrong (a corrupt file, a duplicate port) is a ``RegistryError`` and the state
directory stays as it was.

``PRAGMA user_version`` is the schema version (``SCHEMAS[n-1]`` makes version n) and
``PRAGMA application_id`` marks the file as Wicket's, so a foreign SQLite file is refused
instead of being written into.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from core.errors import PKIError, RegistryError
from core.pki import files
from core.pki.identity import is_valid_name
from core.pki.tokens import TokenKind
from core.registry.store import ClusterRecord, TokenRecord

APPLICATION_ID = 0x57434B54  # "WCKT"
LEGACY_TOKENS = "tokens.json"
LEGACY_CLUSTERS = "clusters.json"

SCHEMAS = (
    """
    CREATE TABLE tokens (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('join', 'client')),
        name        TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_us  INTEGER NOT NULL,
        expires_us  INTEGER,
        used_us     INTEGER,
        revoked     INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
    );
    CREATE TABLE identities (
        serial      TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role IN ('agent', 'client')),
        name        TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        issued_us   INTEGER NOT NULL,
        not_after_us INTEGER NOT NULL,
        token_id    TEXT NOT NULL REFERENCES tokens (id)
    );
    CREATE TABLE clusters (
        name        TEXT PRIMARY KEY,
        public_port INTEGER UNIQUE CHECK (public_port BETWEEN 1 AND 65535)
    );
    """,
    # 2: an identity can be revoked (its cluster was removed): the relay refuses it.
    """
    ALTER TABLE identities ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0
        CHECK (revoked IN (0, 1));
    """,
    # 3: a client token, and every identity it enrolls, reach only the clusters of its
    # scope (all of them, or its token_clusters rows); an identity's last session. The
    # client tokens issued before reached every cluster, and keep that.
    """
    ALTER TABLE tokens ADD COLUMN all_clusters INTEGER NOT NULL DEFAULT 0
        CHECK (all_clusters IN (0, 1));
    CREATE TABLE token_clusters (
        token_id    TEXT NOT NULL REFERENCES tokens (id),
        cluster     TEXT NOT NULL,
        PRIMARY KEY (token_id, cluster)
    );
    ALTER TABLE identities ADD COLUMN last_seen_us INTEGER;
    UPDATE tokens SET all_clusters = 1 WHERE kind = 'client';
    """,
)
SCHEMA_VERSION = len(SCHEMAS)

T = TypeVar("T")


@dataclass(frozen=True)
class Legacy:
    """The JSON files of a state directory from before the database, read and checked."""

    paths: tuple[Path, ...] = ()
    tokens: list[TokenRecord] = field(default_factory=list)
    clusters: list[ClusterRecord] = field(default_factory=list)


def read_legacy(state_dir: Path) -> Legacy:
    """Both JSON files, fully parsed and checked; ``RegistryError`` names a bad one."""
    tokens_path, clusters_path = state_dir / LEGACY_TOKENS, state_dir / LEGACY_CLUSTERS
    paths = tuple(p for p in (tokens_path, clusters_path) if p.exists())
    tokens = _load(tokens_path, "corrupt token registry", _tokens) if tokens_path in paths else []
    clusters = (
        _load(clusters_path, "not a valid clusters file", _clusters)
        if clusters_path in paths
        else []
    )
    return Legacy(paths, tokens, clusters)


def upgrade(conn: sqlite3.Connection, legacy: Legacy) -> bool:
    """Bring an empty or older database to ``SCHEMA_VERSION`` in one transaction.

    The legacy records go in with the first schema. Returns whether they did (another
    process may have migrated first: then this one changes nothing).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for script in SCHEMAS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        imported = version == 0
        if imported:
            _import(conn, legacy)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return imported


def retire(legacy: Legacy, now: dt.datetime) -> None:
    """Rename the imported JSON files to backups nothing reads (after the commit)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for path in legacy.paths:
        os.replace(path, path.with_name(f"{path.name}.migrated-{stamp}"))


def to_us(value: dt.datetime) -> int:
    """Microseconds since the epoch: exact, and ordered in SQL (``expires_us > ?``)."""
    return (_utc(value) - _EPOCH) // dt.timedelta(microseconds=1)


def from_us(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _import(conn: sqlite3.Connection, legacy: Legacy) -> None:
    conn.executemany(
        "INSERT INTO tokens (id, kind, name, secret_hash, created_us, expires_us, used_us,"
        " revoked, all_clusters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.token_id,
                r.kind.value,
                r.name,
                r.secret_hash,
                to_us(r.created),
                None if r.expires is None else to_us(r.expires),
                None if r.used_at is None else to_us(r.used_at),
                int(r.revoked),
                int(r.kind == TokenKind.CLIENT),  # the JSON's client tokens reached all
            )
            for r in legacy.tokens
        ],
    )
    conn.executemany(
        "INSERT INTO clusters VALUES (?, ?)", [(c.name, c.public_port) for c in legacy.clusters]
    )


def _load(path: Path, problem: str, parse: Callable[[dict[str, Any]], list[T]]) -> list[T]:
    try:
        doc = json.loads(files.read_file(path, private=True))
        if doc["version"] != 1:
            raise ValueError("unknown version")
        return parse(doc)
    except PKIError as exc:
        raise RegistryError(f"cannot migrate {path}: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(f"{path}: {problem} ({exc}); nothing was migrated") from exc


def _tokens(doc: dict[str, Any]) -> list[TokenRecord]:
    records = [
        TokenRecord(
            str(t["id"]),
            TokenKind(t["kind"]),
            str(t["name"]),
            str(t["hash"]),
            dt.datetime.fromisoformat(t["created"]),
            _from_iso(t["expires"]),
            _from_iso(t["used_at"]),
            bool(t["revoked"]),
        )
        for t in doc["tokens"]
    ]
    _unique([r.token_id for r in records], "token id")
    return records


def _clusters(doc: dict[str, Any]) -> list[ClusterRecord]:
    records = [ClusterRecord(str(e["name"]), e.get("public_port")) for e in doc["clusters"]]
    for r in records:
        if not is_valid_name(r.name):
            raise ValueError(f"invalid cluster name {r.name!r}")
        port = r.public_port
        if port is not None and (type(port) is not int or not 1 <= port <= 65535):
            raise ValueError(f"invalid public port {port!r}")
    _unique([r.name for r in records], "cluster")
    _unique([r.public_port for r in records if r.public_port is not None], "public port")
    return records


def _unique(values: list[Any], what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value} twice")
        seen.add(value)


def _from_iso(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("timestamp must be a string")
    return dt.datetime.fromisoformat(value)
