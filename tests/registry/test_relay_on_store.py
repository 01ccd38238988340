"""A relay on either store: a client enrolls with a token another process issued, and
its live session ends within a second of a revocation another process made (the relay
hears it by ``data_version`` in SQLite, by notification in PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from core.aio.endpoint import RelayClient
from core.aio.relay import Relay, RelayConfig
from core.format import utcnow
from core.pki.identity import Role
from core.pki.tokens import parse
from core.registry.store import ALL_CLUSTERS
from tests.support.registry import Registry


async def test_a_revocation_by_another_process_ends_the_session(
    registry: Registry, tmp_path: Path
) -> None:
    relay = Relay(RelayConfig(state_dir=registry.state_dir, store=registry.location))
    await relay.start()
    client: RelayClient | None = None
    try:
        admin = registry.state()  # `wicket relay client-token`, `revoke`: another process
        token = admin.client_token("alice", relay.address, utcnow(), scope=ALL_CLUSTERS)
        client = RelayClient(tmp_path / "client", parse(token))
        await client.start()
        await client.wait_online(10)
        async with asyncio.timeout(5):  # hello_ok goes out just before the session counts
            while not relay._clients:
                await asyncio.sleep(0.01)
        assert [p.identity.name for p in relay._clients] == ["alice"]
        async with asyncio.timeout(5):  # written by the relay's last-seen thread, later
            while admin.identities()[0].last_seen is None:
                await asyncio.sleep(0.01)
        assert [i.name for i in admin.identities()] == ["alice"]

        assert admin.revoke(Role.CLIENT, "alice") == 1
        revoked_at = time.monotonic()
        while relay._clients:
            assert time.monotonic() - revoked_at < 1.0, "the revoked session lives on"
            await asyncio.sleep(0.01)
        print(f"\n{registry.engine}: ended {time.monotonic() - revoked_at:.3f} s after")
        assert relay.refused["revoked"] == 1
    finally:
        if client is not None:
            await client.stop()
        await relay.stop()


async def test_a_failed_start_leaves_nothing_open(registry: Registry) -> None:
    """The port is taken: the start fails after the registry was opened, and closes it
    (a PostgreSQL store's connections and thread too: the database fixture checks)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        relay = Relay(RelayConfig(state_dir=registry.state_dir, store=registry.location,
                                  port=port))  # fmt: skip
        with pytest.raises(OSError):
            await relay.start()
    assert relay.state._store is None
