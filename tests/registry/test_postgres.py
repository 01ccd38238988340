"""The PostgreSQL store's own behaviour: its schema checks, the password rules, hearing
of other members' changes (notifications, and the re-read when they were missed), and
what it stores. The contract it shares with SQLite is tested on both engines elsewhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.errors import ConfigError, RegistryError
from core.pki.identity import Role
from core.pki.tokens import TokenKind
from core.registry import pgschema
from core.registry.location import StoreLocation
from core.registry.postgres import RESYNC, PostgresStore
from core.registry.store import IdentityRecord, TokenRecord
from core.registry.tokens import TokenRegistry
from tests.support.postgres import PostgresServer
from tests.support.registry import eventually

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def location(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> StoreLocation:
    return StoreLocation(postgres_database, postgres_server.password_file(tmp_path))


@pytest.fixture
def stores(location: StoreLocation) -> Iterator[list[PostgresStore]]:
    """Stores opened by the test (``open``), closed after it."""
    opened: list[PostgresStore] = []
    yield opened
    for store in opened:
        store.close()


def _open(location: StoreLocation, stores: list[PostgresStore]) -> PostgresStore:
    store = location.open(None, NOW)
    assert isinstance(store, PostgresStore)
    stores.append(store)
    return store


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


# -- the password never on the command line --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://wicket:hunter2@db.example/wicket",
        "postgres://db.example/wicket?password=hunter2",
    ],
)
def test_a_url_with_a_password_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="holds a password") as info:
        StoreLocation(url)
    assert "hunter2" not in str(info.value)


def test_only_postgresql_urls_and_private_password_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes a PostgreSQL URL"):
        StoreLocation("sqlite:///var/lib/wicket/registry.db")
    with pytest.raises(ConfigError, match="need --store"):
        StoreLocation(None, tmp_path / "pw")
    loose = tmp_path / "pw"
    loose.write_text("hunter2\n")
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="too open"):
        StoreLocation("postgresql://db.example/wicket", loose).password()
    loose.chmod(0o600)
    assert StoreLocation("postgresql://db.example/wicket", loose).password() == "hunter2"


def test_a_wrong_password_is_a_clear_error(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    with pytest.raises(RegistryError, match="password authentication failed") as info:
        StoreLocation(postgres_database, wrong).open(None, NOW)
    assert "not-the-password" not in str(info.value)


def test_pgpassword_from_the_environment_works(
    postgres_server: PostgresServer,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
    stores: list[PostgresStore],
) -> None:
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    store = _open(StoreLocation(postgres_database), stores)
    assert store.clusters() == {}


# -- the schema --------------------------------------------------------------------------


def test_a_foreign_or_newer_database_is_refused_untouched(
    postgres_server: PostgresServer, location: StoreLocation, postgres_database: str
) -> None:
    db = _database(postgres_database)
    postgres_server.execute("CREATE TABLE orders (id integer)", db)
    with pytest.raises(RegistryError, match="not a Wicket registry; refused"):
        location.open(None, NOW)
    tables = postgres_server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname='public'", db
    )
    assert tables == [("orders",)]

    postgres_server.execute("DROP TABLE orders", db)
    postgres_server.execute(pgschema.SCHEMAS[0], db)
    postgres_server.execute(
        f"INSERT INTO schema_version (application, version) VALUES"
        f" ('{pgschema.APPLICATION}', {pgschema.SCHEMA_VERSION + 1})",
        db,
    )
    with pytest.raises(RegistryError, match="newer than this Wicket's"):
        location.open(None, NOW)


def test_members_starting_at_once_make_one_schema(
    location: StoreLocation, stores: list[PostgresStore]
) -> None:
    """Six relays open an empty database at the same moment: one creates the schema,
    the others wait for it (advisory lock) and find it done."""
    barrier = threading.Barrier(6)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def member() -> None:
        barrier.wait()
        try:
            opened.append(_open(location, stores))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=member) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(opened) == 6
    opened[0].put_cluster("prod", 16443)
    for store in opened:
        assert eventually(lambda store=store: "prod" in store.clusters())  # type: ignore[misc]


def test_the_secret_is_not_stored(location: StoreLocation, stores: list[PostgresStore]) -> None:
    store = _open(location, stores)
    token = TokenRegistry(store).issue(
        TokenKind.JOIN, "prod", relay="r.test:1", ca_fingerprint="ab" * 32, now=NOW
    )
    with store._errors() as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
    text = repr(rows)
    assert token.secret_text not in text and token.secret.hex() not in text
    assert rows[0][3].startswith("sha256:")


# -- hearing of other members' changes ---------------------------------------------------


def _enrolled(store: PostgresStore, n: int) -> str:
    store.add_token(TokenRecord(f"t{n}", TokenKind.CLIENT, f"c{n}", "h", NOW, None))
    fp = f"{n:064x}"
    store.add_identity(IdentityRecord(f"{n:x}", Role.CLIENT, f"c{n}", fp, NOW, NOW, f"t{n}"))
    return fp


def _changed(store: PostgresStore, generation: int) -> bool:
    return store.generation() != generation


def test_a_revocation_reaches_another_member_within_a_second(
    location: StoreLocation, stores: list[PostgresStore]
) -> None:
    member, admin = _open(location, stores), _open(location, stores)
    fp = _enrolled(admin, 1)
    latencies = []
    for n in range(2, 12):
        generation = member.generation()
        started = time.monotonic()
        admin.revoke_identities(Role.CLIENT, f"c{n - 1}")
        assert eventually(functools.partial(_changed, member, generation), timeout=1.0)
        latencies.append(time.monotonic() - started)
        _enrolled(admin, n)
    assert member.identity_revoked(fp)
    print(f"\nrevocation heard after {max(latencies) * 1000:.1f} ms at most")


def test_what_does_not_concern_relays_notifies_no_one(
    location: StoreLocation, stores: list[PostgresStore]
) -> None:
    """Using a token, recording a session, issuing an identity: no notification (the
    relays' re-reads follow revocations, scopes and clusters only)."""
    member, admin = _open(location, stores), _open(location, stores)
    generation = member.generation()
    fp = _enrolled(admin, 1)
    admin.use_token("t1", NOW)
    admin.seen(fp, NOW)
    time.sleep(0.2)
    assert member.generation() == generation


def test_lookups_answer_from_memory_and_a_lost_connection_is_remade(
    postgres_server: PostgresServer, location: StoreLocation, stores: list[PostgresStore]
) -> None:
    """``clusters()`` and ``generation()`` make no database call (they answer with both of
    the store's connections cut); the follower reconnects and re-reads what changed while
    it was away; a read reconnects and is tried again, a write fails once (it may have
    committed: it is not repeated) and the next call reconnects."""
    member, admin = _open(location, stores), _open(location, stores)
    admin.put_cluster("prod", None)
    assert eventually(lambda: "prod" in member.clusters())
    db = _database(location.url or "")
    pids = postgres_server.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        f" AND pid != pg_backend_pid()"
    )
    assert len(pids) >= 4  # both stores: main connection and follower
    assert set(member.clusters()) == {"prod"}  # from memory
    with pytest.raises(RegistryError, match="terminating connection"):
        admin.put_cluster("lab", None)
    admin.put_cluster("lab", None)
    assert eventually(lambda: set(member.clusters()) == {"prod", "lab"}, timeout=RESYNC + 2)
    assert not member.identity_revoked("0" * 64)  # a read: reconnected, no error
    member.put_cluster("stage", 16444)
    assert set(member.clusters()) == {"prod", "lab", "stage"}


@pytest.mark.parametrize("version", range(1, pgschema.SCHEMA_VERSION))
def test_an_older_schema_is_upgraded_in_place_and_keeps_its_rows(
    postgres_server: PostgresServer,
    location: StoreLocation,
    postgres_database: str,
    stores: list[PostgresStore],
    version: int,
) -> None:
    """A database made by an earlier release (schema ``version``, with rows) is brought
    to the current version at the next start, every row kept."""
    db = _database(postgres_database)
    for script in pgschema.SCHEMAS[:version]:
        postgres_server.execute(script, db)
    postgres_server.execute(
        "INSERT INTO schema_version (application, version)"
        f" VALUES ('{pgschema.APPLICATION}', {version});"
        "INSERT INTO tokens VALUES ('t1', 'client', 'alice', 'sha256:h',"
        " '2026-11-30 09:00Z', NULL, '2026-11-30 09:05Z', false, false);"
        "INSERT INTO token_clusters VALUES ('t1', 'prod');"
        f"INSERT INTO identities VALUES ('1', 'client', 'alice', '{1:064x}',"
        " '2026-11-30 09:05Z', '2027-02-28 09:05Z', 't1', false, NULL);"
        "INSERT INTO clusters VALUES ('prod', 16443);",
        db,
    )
    store = _open(location, stores)
    ((now_version,),) = postgres_server.execute("SELECT version FROM schema_version", db)
    assert now_version == pgschema.SCHEMA_VERSION
    (token,) = store.tokens()
    assert (token.name, token.scope, token.used_at) == (
        "alice",
        frozenset({"prod"}),
        dt.datetime(2026, 11, 30, 9, 5, tzinfo=dt.UTC),
    )
    (identity,) = store.identities()
    assert (identity.fingerprint, identity.scope) == (f"{1:064x}", frozenset({"prod"}))
    assert store.clusters()["prod"].public_port == 16443
    assert store.ca() is None and store.members() == []  # the later tables, empty
    store.heartbeat("m1", "relay.example:7443")
    assert [m.advertise for m in store.members()] == ["relay.example:7443"]
