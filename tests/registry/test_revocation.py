"""Revoked identities: schema version 2 adds them to a version 1 registry in place, and
revoking a cluster's agents leaves its clients and other clusters alone (on both
engines)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from core.pki.identity import Role
from core.pki.tokens import TokenKind
from core.registry import migrate
from core.registry.sqlite import DB_FILE, SqliteStore
from core.registry.store import IdentityRecord, RegistryStore, TokenRecord
from tests.support.registry import Registry

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _identity(store: RegistryStore, role: Role, name: str, n: int) -> IdentityRecord:
    token = TokenRecord(f"t{n}", TokenKind.JOIN, name, "h", NOW, None)
    store.add_token(token)
    record = IdentityRecord(f"{n:x}", role, name, f"{n:064x}", NOW, NOW, token.token_id)
    store.add_identity(record)
    return record


def test_revoking_a_clusters_agents(registry: Registry) -> None:
    store = registry.open(NOW)
    lab = _identity(store, Role.AGENT, "lab", 1)
    lab_again = _identity(store, Role.AGENT, "lab", 2)
    prod = _identity(store, Role.AGENT, "prod", 3)
    client = _identity(store, Role.CLIENT, "lab", 4)
    assert store.revoke_identities(Role.AGENT, "lab") == 2
    assert store.revoke_identities(Role.AGENT, "lab") == 0  # nothing left to revoke
    assert store.identity_revoked(lab.fingerprint)
    assert store.identity_revoked(lab_again.fingerprint)
    assert not store.identity_revoked(prod.fingerprint)
    assert not store.identity_revoked(client.fingerprint)
    assert not store.identity_revoked("0" * 63 + "f")  # unknown: not revoked
    store.close()


def test_a_version_1_registry_gains_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.executescript(migrate.SCHEMAS[0])
    conn.execute(f"PRAGMA application_id = {migrate.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO tokens VALUES ('t1', 'join', 'lab', 'h', 1, NULL, 2, 0)")
    conn.execute(f"INSERT INTO identities VALUES ('1', 'agent', 'lab', '{1:064x}', 1, 9, 't1')")
    conn.commit()
    conn.close()
    (tmp_path / DB_FILE).chmod(0o600)

    store = SqliteStore.open(tmp_path, NOW)
    (record,) = store.identities()
    assert (record.name, record.fingerprint) == ("lab", f"{1:064x}")
    assert not store.identity_revoked(record.fingerprint)
    assert store.revoke_identities(Role.AGENT, "lab") == 1
    assert store.identity_revoked(record.fingerprint)
    store.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrate.SCHEMA_VERSION == 3
    conn.close()
