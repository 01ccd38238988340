"""Identities are kept per relay (by the relay CA's fingerprint): a new token wins.

Two real relays, one desktop client state directory. A token for the second relay used
to be ignored in favour of the identity the first relay issued, and the client dialed
the first relay forever.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.aio.dial import RELAYS_DIR, identity_dir, load_enrollment
from core.aio.endpoint import RelayClient
from core.aio.relay import Relay, RelayConfig
from core.format import utcnow
from core.pki.identity import Role
from core.pki.tokens import Token, parse
from core.registry.store import ALL_CLUSTERS

RUNNING: list[Relay] = []


@pytest.fixture
async def relays(tmp_path: Path) -> AsyncIterator[tuple[Relay, Relay]]:
    async with contextlib.AsyncExitStack() as stack:
        pair = []
        for name in ("a", "b"):
            relay = Relay(RelayConfig(state_dir=tmp_path / f"relay-{name}"))
            await relay.start()
            stack.push_async_callback(relay.stop)
            pair.append(relay)
        RUNNING[:] = pair
        yield pair[0], pair[1]
        RUNNING.clear()


def client_token(relay: Relay, name: str) -> Token:
    return parse(relay.state.client_token(name, relay.address, utcnow(), scope=ALL_CLUSTERS))


def fingerprint_of(relay: Relay) -> str:
    return relay.state.ca(utcnow()).fingerprint


def clients_at(relay: Relay) -> list[str]:
    return [p.name for p in relay.snapshot().peers if p.role == "client"]


async def run_client(state_dir: Path, token: Token | None) -> tuple[str, str]:
    """Start a client until it is online; (its relay address, its name), checked against
    the relays' own lists of sessions."""
    client = RelayClient(state_dir, token)
    await client.start()
    try:
        await client.wait_online(10)
        assert client.creds is not None
        relay, name = client.creds.relay, client.creds.identity.name
        assert [r.address for r in RUNNING if name in clients_at(r)] == [relay]
        return relay, name
    finally:
        await client.stop()


async def test_a_token_for_another_relay_enrolls_there(
    tmp_path: Path, relays: tuple[Relay, Relay]
) -> None:
    a, b = relays
    state = tmp_path / "client"
    assert await run_client(state, client_token(a, "alice-a")) == (a.address, "alice-a")
    assert await run_client(state, client_token(b, "alice-b")) == (b.address, "alice-b")
    # Without a token, the identity in use is the last relay's.
    assert await run_client(state, None) == (b.address, "alice-b")
    # A token for the first relay again: its identity is still there, the token unused.
    again = client_token(a, "alice-a")
    assert await run_client(state, again) == (a.address, "alice-a")
    assert await run_client(state, None) == (a.address, "alice-a")
    (record,) = [r for r in a.state.tokens().records() if r.token_id == again.token_id]
    assert record.used_at is None
    for relay, name in ((a, "alice-a"), (b, "alice-b")):
        directory = identity_dir(state, fingerprint_of(relay))
        assert sorted(p.name for p in directory.iterdir()) == [
            "ca.pem", "client-key.pem", "client-relay", "client.pem"
        ]  # fmt: skip
        creds = load_enrollment(state, Role.CLIENT, fingerprint_of(relay))
        assert creds is not None and creds.identity.name == name
    assert stat.S_IMODE((state / RELAYS_DIR).stat().st_mode) == 0o700


async def test_a_token_for_another_name_at_the_same_relay_enrolls_anew(
    tmp_path: Path, relays: tuple[Relay, Relay]
) -> None:
    a, _ = relays
    state = tmp_path / "agent-like-client"
    assert await run_client(state, client_token(a, "laptop")) == (a.address, "laptop")
    assert await run_client(state, client_token(a, "desk")) == (a.address, "desk")
    assert await run_client(state, None) == (a.address, "desk")


def to_legacy_layout(state: Path, fingerprint: str) -> None:
    """What an older Wicket kept: one identity beside ``ca.pem``, no relay directory."""
    directory = identity_dir(state, fingerprint)
    for path in directory.iterdir():
        os.replace(path, state / path.name)
    directory.rmdir()
    (state / RELAYS_DIR).rmdir()
    (state / "client-relay-ca").unlink()


async def test_a_single_legacy_identity_is_migrated_in_place_and_keeps_working(
    tmp_path: Path, relays: tuple[Relay, Relay]
) -> None:
    a, b = relays
    state = tmp_path / "client"
    await run_client(state, client_token(a, "old"))
    to_legacy_layout(state, fingerprint_of(a))
    assert sorted(p.name for p in state.iterdir()) == [
        "ca.pem", "client-key.pem", "client-relay", "client.pem"
    ]  # fmt: skip

    assert await run_client(state, None) == (a.address, "old")
    assert sorted(p.name for p in state.iterdir()) == ["client-relay-ca", RELAYS_DIR]
    assert (identity_dir(state, fingerprint_of(a)) / "client.pem").exists()
    # The migrated identity is one relay's among others now: a new token wins.
    assert await run_client(state, client_token(b, "new")) == (b.address, "new")
    assert await run_client(state, None) == (b.address, "new")


async def test_a_token_for_a_known_relay_says_where_it_is_now(
    tmp_path: Path, relays: tuple[Relay, Relay]
) -> None:
    """Same CA, another address (the embedded relay on a new port): the identity stays,
    the address the token names is dialed and remembered."""
    a, _ = relays
    state = tmp_path / "client"
    await run_client(state, client_token(a, "alice"))
    fingerprint = fingerprint_of(a)
    relay_file = identity_dir(state, fingerprint) / "client-relay"
    relay_file.write_bytes(b"127.0.0.1:1")  # where it was once
    host, port = a.address.rsplit(":", 1)
    moved = client_token(a, "alice")
    assert await run_client(state, moved) == (a.address, "alice")
    assert relay_file.read_text() == f"{host}:{port}"
    assert stat.S_IMODE(relay_file.stat().st_mode) == 0o600
