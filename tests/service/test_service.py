"""The service façade: components in-process, snapshots with rates, events, clean stop."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.aio.relay import RelayConfig
from core.format import utcnow
from core.pki.tokens import parse
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS
from core.service import ServiceEvent, WicketService

MiB = 1 << 20


async def echo_target() -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[WicketService, asyncio.Server]]:
    target = await echo_target()
    service = WicketService(publish_hz=20)
    await service.start()
    relay = await service.start_relay(RelayConfig(state_dir=tmp_path / "relay"))
    state = RelayState(tmp_path / "relay")
    join = parse(state.join_token("lab", None, None, utcnow()))
    client_token = parse(state.client_token("me", None, utcnow(), scope=ALL_CLUSTERS))
    port = target.sockets[0].getsockname()[1]
    agent = await service.start_agent(tmp_path / "agent", ("127.0.0.1", port), join)
    await agent.wait_online(10)
    client = await service.start_client(tmp_path / "client", client_token)
    await client.wait_online(10)
    await service.start_endpoint(client, "lab")
    assert relay.address
    try:
        yield service, target
    finally:
        await service.stop()
        target.close()
        await target.wait_closed()


async def test_snapshot_shows_clusters_sessions_endpoints_and_stream_rates(
    stack: tuple[WicketService, asyncio.Server],
) -> None:
    service, _ = stack
    events: list[ServiceEvent] = []

    async def collect() -> None:
        async for event in service.subscribe():
            events.append(event)

    collector = asyncio.create_task(collect())
    snap = service.refresh()
    lab = snap.cluster("lab")
    assert lab is not None and lab.state == "online"
    assert lab.rtt is not None
    assert {s.role for s in snap.sessions} == {"agent", "client"}
    assert all(s.state == "online" for s in snap.sessions)
    (endpoint,) = snap.endpoints
    host, port = endpoint.address.rsplit(":", 1)

    reader, writer = await asyncio.open_connection(host, int(port))
    payload = os.urandom(8 * MiB)
    rates: list[float] = []

    async def send() -> None:
        for i in range(0, len(payload), 256 * 1024):
            writer.write(payload[i : i + 256 * 1024])
            await writer.drain()
            await asyncio.sleep(0.005)
            rates.extend(s.rate_up for s in service.refresh().streams if s.closed_at is None)
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = hashlib.sha256()
    while data := await reader.read(MiB):
        got.update(data)
    await sender
    writer.close()
    assert got.digest() == hashlib.sha256(payload).digest()
    await asyncio.sleep(0.2)
    snap = service.refresh()
    closed = [s for s in snap.streams if s.component == "endpoint:lab"]
    assert closed and closed[-1].bytes_up == len(payload) == closed[-1].bytes_down
    assert closed[-1].close_reason == "eof"
    assert max(rates) > 0
    kinds = {e.kind for e in events}
    assert {"stream-opened", "stream-closed"} <= kinds
    collector.cancel()
    with pytest.raises(asyncio.CancelledError):
        await collector


async def test_agent_stopping_shows_the_cluster_offline_with_a_reason(
    stack: tuple[WicketService, asyncio.Server],
) -> None:
    service, _ = stack
    agent_name = next(n for n in service.names if n.startswith("agent:"))
    await service.remove(agent_name)
    await asyncio.sleep(0.1)
    lab = service.refresh().cluster("lab")
    assert lab is not None
    assert lab.state == "offline"
    assert lab.reason == "agent not connected"
    assert service.latest.taken_at > 0
