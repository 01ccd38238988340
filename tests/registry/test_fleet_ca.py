"""One CA for the fleet, in its PostgreSQL store: members with empty state directories
share it, members starting at once make one, its key sealed with the members' key
file (or, without one, in the clear, and said so), and an identity enrolled at one
member is accepted by another, whose server certificate the peer accepts in turn."""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.aio.dial import connect_mux, enroll, hello
from core.aio.relay import Relay, RelayConfig
from core.errors import ConfigError, PKIError
from core.format import utcnow
from core.pki import tls
from core.pki.ca import CA_CERT_FILE, CA_KEY_FILE, load_or_create_ca
from core.pki.identity import Role
from core.pki.tokens import parse
from core.protocol.mux import MuxConfig
from core.registry.location import StoreLocation
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS, FleetStore
from tests.support.postgres import PostgresServer

QUIET_MUX = MuxConfig(keepalive_interval=None)


@pytest.fixture
def fleet(postgres_server: PostgresServer, postgres_database: str, tmp_path: Path) -> StoreLocation:
    return StoreLocation(postgres_database, postgres_server.password_file(tmp_path))


@pytest.fixture
def members() -> Iterator[list[RelayState]]:
    made: list[RelayState] = []
    yield made
    for state in made:
        state.close()


def _member(
    members: list[RelayState], state_dir: Path | None, location: StoreLocation
) -> RelayState:
    state = RelayState(state_dir, location)
    members.append(state)
    return state


def _key_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _stored_key(server: PostgresServer, fleet: StoreLocation) -> tuple[object, bytes]:
    """How the CA key is stored, and the bytes in the database."""
    database = urlsplit(fleet.url or "").path.lstrip("/")
    ((how, key),) = server.execute("SELECT key_encryption, key FROM ca", database)
    assert isinstance(key, bytes)
    return how, key


def test_members_with_empty_state_dirs_share_one_ca(
    fleet: StoreLocation, members: list[RelayState], tmp_path: Path
) -> None:
    first = _member(members, tmp_path / "m1", fleet).ca()
    second = _member(members, tmp_path / "m2", fleet).ca()
    assert first.fingerprint == second.fingerprint
    assert first.key.private_numbers() == second.key.private_numbers()
    for n in ("m1", "m2"):  # the CA lives in the store only
        assert not (tmp_path / n / CA_CERT_FILE).exists()
        assert not (tmp_path / n / CA_KEY_FILE).exists()
    admin = _member(members, None, fleet)  # token commands: no state dir, no key needed
    assert admin.ca_fingerprint() == first.fingerprint


def test_members_starting_at_once_end_with_one_ca(
    fleet: StoreLocation, members: list[RelayState], tmp_path: Path
) -> None:
    states = [_member(members, tmp_path / f"m{n}", fleet) for n in range(6)]
    for state in states:
        state.open()
    barrier = threading.Barrier(len(states))
    fingerprints: list[str] = []

    def start(state: RelayState) -> None:
        barrier.wait()
        fingerprints.append(state.ca().fingerprint)

    threads = [threading.Thread(target=start, args=(s,)) for s in states]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(fingerprints) == 6 and len(set(fingerprints)) == 1


def test_a_sealed_key_needs_the_fleets_key_file(
    postgres_server: PostgresServer,
    fleet: StoreLocation,
    members: list[RelayState],
    tmp_path: Path,
) -> None:
    raw = bytes(range(32))
    sealed = replace(fleet, ca_key_file=_key_file(tmp_path / "ca.key", raw))
    ca = _member(members, tmp_path / "m1", sealed).ca()
    how, key = _stored_key(postgres_server, fleet)
    assert how == "aes-256-gcm" and b"PRIVATE KEY" not in key

    same_in_base64 = _key_file(tmp_path / "ca.key.b64", base64.b64encode(raw) + b"\n")
    again = _member(members, tmp_path / "m2", replace(fleet, ca_key_file=same_in_base64))
    assert again.ca().fingerprint == ca.fingerprint

    with pytest.raises(PKIError, match="sealed; give this member --ca-key-file"):
        _member(members, tmp_path / "m3", fleet).ca()
    wrong = replace(fleet, ca_key_file=_key_file(tmp_path / "wrong.key", bytes(32)))
    with pytest.raises(PKIError, match="does not open the fleet's CA key"):
        _member(members, tmp_path / "m4", wrong).ca()
    short = replace(fleet, ca_key_file=_key_file(tmp_path / "short.key", b"too short"))
    with pytest.raises(ConfigError, match="not a CA key file"):
        _member(members, tmp_path / "m5", short).ca()


def test_without_a_key_file_the_key_is_in_the_clear_and_the_fleet_stays_so(
    postgres_server: PostgresServer,
    fleet: StoreLocation,
    members: list[RelayState],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _member(members, tmp_path / "m1", fleet).ca()
    assert "stored in the clear" in caplog.text
    how, key = _stored_key(postgres_server, fleet)
    assert how == "none" and b"PRIVATE KEY" in key
    keyed = replace(fleet, ca_key_file=_key_file(tmp_path / "ca.key", bytes(range(32))))
    with pytest.raises(PKIError, match=r"stored in the clear .* refused"):
        _member(members, tmp_path / "m2", keyed).ca()


def test_a_single_relays_ca_becomes_the_fleets_and_another_is_refused(
    fleet: StoreLocation, members: list[RelayState], tmp_path: Path
) -> None:
    own = load_or_create_ca(tmp_path / "was-single", utcnow())
    assert _member(members, tmp_path / "was-single", fleet).ca().fingerprint == own.fingerprint
    assert _member(members, tmp_path / "fresh", fleet).ca().fingerprint == own.fingerprint
    load_or_create_ca(tmp_path / "other", utcnow())
    with pytest.raises(PKIError, match=r"but the fleet's is .* refused"):
        _member(members, tmp_path / "other", fleet).ca()


@pytest.fixture
async def two_relays(fleet: StoreLocation, tmp_path: Path) -> AsyncIterator[tuple[Relay, Relay]]:
    relays = [Relay(RelayConfig(state_dir=tmp_path / f"relay{n}", store=fleet)) for n in range(2)]
    try:
        for relay in relays:
            await relay.start()
        yield relays[0], relays[1]
    finally:
        for relay in relays:
            await relay.stop()


async def test_an_identity_enrolled_at_one_member_is_accepted_by_another(
    two_relays: tuple[Relay, Relay], tmp_path: Path
) -> None:
    a, b = two_relays
    assert a.state.ca().fingerprint == b.state.ca().fingerprint
    store = a.state.store
    assert isinstance(store, FleetStore)
    assert {m.advertise for m in store.members()} == {a.address, b.address}
    token = parse(a.state.client_token("alice", a.address, utcnow(), scope=ALL_CLUSTERS))
    enrolled = await enroll(token, tmp_path / "alice", Role.CLIENT, QUIET_MUX)
    # The CA pinned at enrollment verifies b's certificate (and its name), and b
    # verifies the certificate a issued.
    context = tls.client_context(enrolled.ca, cert_file=enrolled.cert_file,
                                 key_file=enrolled.key_file)  # fmt: skip
    conn = await connect_mux(b.address, context, QUIET_MUX)
    try:
        channel = await hello(conn, enrolled.identity)
        channel.close()
    finally:
        conn.abort()
