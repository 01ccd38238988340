"""From JSON files to the database once; a state dir it cannot use is refused untouched.

``release-0.1/`` holds ``tokens.json`` and ``clusters.json`` exactly as the release
before the database wrote them (made with its ``TokenRegistry`` and ``RelayState``),
and ``issued.json`` the tokens it printed, so the test can present them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from core.aio.relay import Relay, RelayConfig
from core.errors import AuthError, ConfigError, RegistryError
from core.pki.tokens import TokenKind, parse
from core.registry import migrate
from core.registry.sqlite import DB_FILE, SqliteStore
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS, ClusterRecord, TokenRecord
from core.registry.tokens import TokenRegistry

RELEASE = Path(__file__).with_name("release-0.1")
ISSUED_AT = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def old_state(tmp_path: Path) -> Path:
    state = tmp_path / "relay"
    state.mkdir(mode=0o700)
    for name in ("tokens.json", "clusters.json"):
        shutil.copyfile(RELEASE / name, state / name)
        (state / name).chmod(0o600)
    return state


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_release_state_dir_is_migrated_once(old_state: Path) -> None:
    before = _snapshot(old_state)
    issued = {k: parse(v) for k, v in json.loads((RELEASE / "issued.json").read_text()).items()}
    store = SqliteStore.open(old_state, NOW)

    # Everything came across, as the old code had it.
    assert store.clusters() == {
        "lab": ClusterRecord("lab", None),
        "prod": ClusterRecord("prod", 16443),
    }
    records = {r.token_id: r for r in store.tokens()}
    assert len(records) == 5
    expected = {
        "unused_join": (TokenKind.JOIN, "prod", None, False),
        "unused_client": (TokenKind.CLIENT, "alice", None, False),
        "used": (TokenKind.CLIENT, "bob", ISSUED_AT + dt.timedelta(minutes=5), False),
        "revoked": (TokenKind.JOIN, "lab", None, True),
        "expired": (TokenKind.CLIENT, "carol", None, False),
    }
    for label, (kind, name, used_at, revoked) in expected.items():
        record = records[issued[label].token_id]
        assert (record.kind, record.name, record.used_at, record.revoked) == (
            kind,
            name,
            used_at,
            revoked,
        ), label
        assert record.created == ISSUED_AT
    assert records[issued["unused_client"].token_id].expires is None
    assert records[issued["expired"].token_id].expires == ISSUED_AT + dt.timedelta(hours=1)

    # The JSON files are backups now, byte for byte, and nothing else was touched.
    after = _snapshot(old_state)
    stamp = NOW.strftime("%Y%m%dT%H%M%SZ")
    assert after[f"tokens.json.migrated-{stamp}"] == before["tokens.json"]
    assert after[f"clusters.json.migrated-{stamp}"] == before["clusters.json"]
    assert not {"tokens.json", "clusters.json"} & set(after)

    # The tokens keep their meaning: the unused ones work once, the others never.
    tokens = TokenRegistry(store)
    for label in ("unused_join", "unused_client"):
        token = issued[label]
        assert tokens.consume(token.token_id, token.secret, NOW).name == token.name
    for label in ("unused_join", "used", "revoked", "expired"):
        with pytest.raises(AuthError, match=r"^invalid token$"):
            tokens.consume(issued[label].token_id, issued[label].secret, NOW)
    store.close()

    # Never read again: a tokens.json that reappears (an old Wicket) is ignored.
    (old_state / "tokens.json").write_text("{not json")
    (old_state / "tokens.json").chmod(0o600)
    again = RelayState(old_state)
    assert len(again.tokens().records()) == 5
    assert set(again.clusters()) == {"lab", "prod"}
    again.close()


def test_racing_first_starts_migrate_once(old_state: Path) -> None:
    first, second = SqliteStore.open(old_state, NOW), SqliteStore.open(old_state, NOW)
    assert len(first.tokens()) == len(second.tokens()) == 5
    first.close()
    second.close()


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("tokens.json", "{", "corrupt token registry"),
        ("tokens.json", '{"version": 1, "tokens": [{"id": "x"}]}', "corrupt token registry"),
        ("clusters.json", '{"version": 1, "clusters": 3}', "not a valid clusters file"),
        (
            "clusters.json",
            '{"version": 1, "clusters": [{"name": "a", "public_port": 7}, '
            '{"name": "b", "public_port": 7}]}',
            "public port 7 twice",
        ),
        ("clusters.json", '{"version": 1, "clusters": [{"name": "A B"}]}', "invalid cluster"),
    ],
)
def test_a_state_dir_that_cannot_be_migrated_is_left_as_it_was(
    old_state: Path, name: str, text: str, problem: str
) -> None:
    (old_state / name).write_text(text)
    before = _snapshot(old_state)
    with pytest.raises(RegistryError, match=problem) as info:
        SqliteStore.open(old_state, NOW)
    assert isinstance(info.value, ConfigError) and name in str(info.value)
    assert _snapshot(old_state) == before  # no database, no backup, no change


def test_readable_json_is_refused_like_before(old_state: Path) -> None:
    (old_state / "tokens.json").chmod(0o644)
    before = _snapshot(old_state)
    with pytest.raises(RegistryError, match="too open"):
        SqliteStore.open(old_state, NOW)
    assert _snapshot(old_state) == before


def _damaged(path: Path) -> None:
    store = SqliteStore.open(path.parent, NOW)
    TokenRegistry(store).issue(
        TokenKind.JOIN, "prod", relay="r.test:1", ca_fingerprint="ab" * 32, now=NOW
    )
    store.close()  # checkpoints the WAL into the file
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 12] = b"\xa5" * 12  # the header of page 2 (a table's root)
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tokens (id TEXT)")
    conn.close()


def _newer(path: Path) -> None:
    SqliteStore.open(path.parent, NOW).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {migrate.SCHEMA_VERSION + 1}")
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + b"\x00\x10\x01\x01" + b"\x17" * 4000)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_damaged, "damaged|malformed"),
        (_garbage, "not a database|malformed|damaged"),
        (_foreign, "not a Wicket registry"),
        (_newer, "newer than this Wicket"),
    ],
)
def test_a_damaged_database_is_refused_without_being_changed(
    tmp_path: Path, damage: object, problem: str
) -> None:
    state = tmp_path / "relay"
    state.mkdir(mode=0o700)
    path = state / DB_FILE
    damage(path)  # type: ignore[operator]
    path.chmod(0o600)
    for name in ("tokens.json", "clusters.json"):  # and JSON files that must stay too
        shutil.copyfile(RELEASE / name, state / name)
    before = _snapshot(state)
    attempts: dict[str, Callable[[RelayState], object]] = {
        "lookup": lambda s: s.clusters(),
        "join-token": lambda s: s.join_token("prod", "r.test:1", 16443, NOW),
        "client-token": lambda s: s.client_token("alice", "r.test:1", NOW, scope=ALL_CLUSTERS),
        "again": lambda s: s.tokens().records(),
    }
    for what, attempt in attempts.items():
        with pytest.raises(RegistryError, match=problem):
            attempt(RelayState(state))
        assert _snapshot(state) == before, what  # no CA made either


async def test_a_relay_on_a_damaged_database_does_not_start(tmp_path: Path) -> None:
    state = tmp_path / "relay"
    state.mkdir(mode=0o700)
    _garbage(state / DB_FILE)
    before = _snapshot(state)
    relay = Relay(RelayConfig(state_dir=state))
    with pytest.raises(RegistryError, match="not a database"):
        await relay.start()
    assert _snapshot(state) == before


def test_records_keep_their_types(tmp_path: Path) -> None:
    """Timestamps go in as microseconds and come back equal (aware, UTC)."""
    tmp_path.chmod(0o700)
    store = SqliteStore.open(tmp_path, NOW)
    record = TokenRecord(
        "0123456789abcdef",
        TokenKind.CLIENT,
        "alice",
        "sha256:" + "0" * 64,
        NOW + dt.timedelta(microseconds=7),
        NOW + dt.timedelta(days=1),
    )
    store.add_token(record)
    assert store.token(record.token_id) == record
    assert store.token("f" * 16) is None
    store.close()
