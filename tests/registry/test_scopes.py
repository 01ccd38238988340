"""Client scopes: schema version 3 adds them to a version 2 registry (existing client
tokens keep every cluster), the JSON import gives its client tokens every cluster too,
and an identity's scope is its token's (on both engines)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

from core.pki.identity import Role
from core.pki.tokens import TokenKind
from core.registry import migrate
from core.registry.sqlite import DB_FILE, SqliteStore
from core.registry.store import ALL_CLUSTERS, IdentityRecord, RegistryStore, TokenRecord
from tests.support.registry import Registry

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _enrolled(store: RegistryStore, n: int, kind: TokenKind, scope: frozenset[str] | None) -> str:
    token = TokenRecord(f"t{n}", kind, f"c{n}", "h", NOW, None, scope=scope)
    store.add_token(token)
    role = Role.CLIENT if kind == TokenKind.CLIENT else Role.AGENT
    fp = f"{n:064x}"
    store.add_identity(IdentityRecord(f"{n:x}", role, f"c{n}", fp, NOW, NOW, token.token_id))
    return fp


def test_an_identitys_scope_is_its_tokens(registry: Registry) -> None:
    store = registry.open(NOW)
    two = _enrolled(store, 1, TokenKind.CLIENT, frozenset({"prod", "lab"}))
    every = _enrolled(store, 2, TokenKind.CLIENT, ALL_CLUSTERS)
    agent = _enrolled(store, 3, TokenKind.JOIN, frozenset())
    assert store.scope(two) == frozenset({"prod", "lab"})
    assert store.scope(every) is ALL_CLUSTERS
    assert store.scope(agent) == frozenset()
    assert store.scope("f" * 64) == frozenset()  # unknown: nothing
    assert {r.token_id: r.scope for r in store.tokens()} == {
        "t1": frozenset({"prod", "lab"}),
        "t2": ALL_CLUSTERS,
        "t3": frozenset(),
    }
    assert [i.scope for i in store.identities()] == [frozenset({"prod", "lab"}), None, frozenset()]
    assert all(i.last_seen is None for i in store.identities())
    store.seen(two, NOW)
    assert [i.last_seen for i in store.identities()] == [NOW, None, None]
    assert store.use_token("t1", NOW)
    assert store.revoke_tokens(TokenKind.CLIENT, "c1") == 0  # used tokens stay as they are
    assert store.revoke_tokens(TokenKind.CLIENT, "c2") == 1  # unused: revoked
    store.close()


def test_a_changed_scope_applies_to_a_clients_identities_and_tokens(registry: Registry) -> None:
    """``set_scope`` (``wicket relay scope``) on both engines: every client token of the
    name, used or not, takes the new scope; the running relay's own connection sees a
    new generation (it then re-reads its live clients' scopes)."""
    store, relay = registry.open(NOW), registry.open(NOW)
    alice = _enrolled(store, 1, TokenKind.CLIENT, frozenset({"a", "b"}))
    store.add_token(TokenRecord("t2", TokenKind.CLIENT, "c1", "h", NOW, None, scope=ALL_CLUSTERS))
    other = _enrolled(store, 3, TokenKind.CLIENT, frozenset({"b"}))
    agent = _enrolled(store, 4, TokenKind.JOIN, frozenset())
    generation = relay.generation()
    assert store.set_scope("c1", frozenset({"a"})) == 2
    assert registry.soon(lambda: relay.generation() != generation)
    assert relay.scope(alice) == frozenset({"a"})
    assert {t.token_id: t.scope for t in relay.tokens()} == {
        "t1": frozenset({"a"}),
        "t2": frozenset({"a"}),
        "t3": frozenset({"b"}),  # another client's: as it was
        "t4": frozenset(),
    }
    assert store.set_scope("c1", ALL_CLUSTERS) == 2
    assert registry.soon(lambda: relay.scope(alice) is ALL_CLUSTERS)
    assert store.set_scope("c1", frozenset()) == 2
    assert relay.scope(alice) == frozenset()
    assert (relay.scope(other), relay.scope(agent)) == (frozenset({"b"}), frozenset())
    assert store.set_scope("c4", frozenset({"a"})) == 0  # an agent's: not a client
    assert store.set_scope("nobody", frozenset({"a"})) == 0


def test_a_version_2_registry_keeps_its_clients_reaching_every_cluster(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILE)
    for script in migrate.SCHEMAS[:2]:
        conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {migrate.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO tokens VALUES ('t1', 'client', 'alice', 'h', 1, NULL, 2, 0)")
    conn.execute("INSERT INTO tokens VALUES ('t2', 'join', 'lab', 'h', 1, NULL, 2, 0)")
    conn.execute("INSERT INTO tokens VALUES ('t3', 'client', 'bob', 'h', 1, NULL, NULL, 0)")
    conn.execute(
        f"INSERT INTO identities VALUES ('1', 'client', 'alice', '{1:064x}', 1, 9, 't1', 0)"
    )
    conn.commit()
    conn.close()
    (tmp_path / DB_FILE).chmod(0o600)

    store = SqliteStore.open(tmp_path, NOW)
    assert store.scope(f"{1:064x}") is ALL_CLUSTERS
    assert {r.token_id: r.scope for r in store.tokens()} == {
        "t1": ALL_CLUSTERS,
        "t2": frozenset(),
        "t3": ALL_CLUSTERS,
    }
    (identity,) = store.identities()
    assert (identity.name, identity.revoked, identity.last_seen) == ("alice", False, None)
    assert store.revoke_tokens(TokenKind.CLIENT, "bob") == 1  # unused: revoked
    store.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrate.SCHEMA_VERSION == 3
    conn.close()


def test_the_json_imports_client_tokens_reach_every_cluster(tmp_path: Path) -> None:
    tokens = {
        "version": 1,
        "tokens": [
            {"id": f"{n:016x}", "kind": kind, "name": name, "hash": "h",
             "created": NOW.isoformat(), "expires": None, "used_at": None, "revoked": False}
            for n, (kind, name) in enumerate([("client", "alice"), ("join", "prod")])
        ],
    }  # fmt: skip
    (tmp_path / migrate.LEGACY_TOKENS).write_text(json.dumps(tokens))
    (tmp_path / migrate.LEGACY_TOKENS).chmod(0o600)
    store = SqliteStore.open(tmp_path, NOW)
    assert {r.name: r.scope for r in store.tokens()} == {"alice": ALL_CLUSTERS, "prod": frozenset()}
    store.close()
