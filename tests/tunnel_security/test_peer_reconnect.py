"""A peer's reconnections: jittered capped backoff, and no TLS context rebuilt per try."""

from __future__ import annotations

import asyncio
import os
import statistics

import pytest

from core.aio import dial
from core.aio.agent import Agent
from core.aio.endpoint import RelayClient
from core.aio.peer import backoff_delay
from core.format import utcnow
from core.pki.tokens import parse
from core.registry.store import ALL_CLUSTERS

from .conftest import PROMPT, World


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    """Uniform in [0, min(cap, base * 2^attempt)]: a fleet that lost its relay at once
    comes back spread out, not in lockstep."""
    for attempt, bound in [(0, 0.2), (1, 0.4), (3, 1.6), (5, 5.0), (30, 5.0)]:
        delays = [backoff_delay(attempt, 0.2, 5.0) for _ in range(2000)]
        assert min(delays) >= 0 and max(delays) <= bound
        assert statistics.mean(delays) == pytest.approx(bound / 2, rel=0.1)
        assert len(set(delays)) > 1900  # jitter: hardly two alike


async def _reconnected(client: RelayClient, count: int) -> None:
    async with asyncio.timeout(PROMPT):
        while client.reconnects < count or client.conn is None:
            await asyncio.sleep(0.01)


def _count_contexts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many TLS client contexts were built (a spy on the real method)."""
    built = [0]
    real = dial.Enrollment.context

    def counting(self: dial.Enrollment) -> object:
        built[0] += 1
        return real(self)

    monkeypatch.setattr(dial.Enrollment, "context", counting)
    return built


async def test_a_peer_builds_its_tls_context_once_across_reconnects(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the context (CA, certificate, key) cost more than the handshake, on every
    try. It is built again only when the identity's files change."""
    built = _count_contexts(monkeypatch)
    relay = world.relay
    token = parse(relay.state.client_token("carol", relay.address, utcnow(), scope=ALL_CLUSTERS))
    client = RelayClient(world.root / "carol", token, backoff_base=0.01, backoff_cap=0.05)
    await client.start()
    try:
        await client.wait_online(PROMPT)
        for round_ in range(1, 4):  # the relay ends its session: it reconnects
            [peer] = [p for p in relay._clients if p.identity.name == "carol"]
            peer.conn.abort()
            await _reconnected(client, round_)
        assert built == [1]
        assert client.creds is not None
        cert = client.creds.cert_file
        cert.write_bytes(cert.read_bytes())  # the same identity, a new file
        os.utime(cert, ns=(0, 0))
        [peer] = [p for p in relay._clients if p.identity.name == "carol"]
        peer.conn.abort()
        await _reconnected(client, 4)
        assert built == [2]
    finally:
        await client.stop()
    await world.check()


async def test_an_agent_builds_its_tls_context_once_across_reconnects(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for an agent, whose sessions its pool keeps (one per fleet member)."""
    built = _count_contexts(monkeypatch)
    relay = world.relay
    token = parse(relay.state.join_token("lab", relay.address, None, utcnow()))
    assert world.target.server is not None
    port = world.target.server.sockets[0].getsockname()[1]
    agent = Agent(world.root / "lab", "127.0.0.1", port, token=token)
    agent.backoff_base, agent.backoff_cap = 0.01, 0.05
    await agent.start()
    try:
        await agent.wait_online(PROMPT)
        for _ in range(3):  # the relay ends its session: it reconnects
            session = relay._agents["lab"]
            session.conn.abort()
            async with asyncio.timeout(PROMPT):
                while relay._agents.get("lab") in (None, session):
                    await asyncio.sleep(0.01)
        assert built == [1]
    finally:
        await agent.stop()
    await world.check()
