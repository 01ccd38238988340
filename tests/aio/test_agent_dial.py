"""The agent's dial to its target has a deadline: a target that never answers is refused.

The deadline is a timer that cancels the dial (not ``asyncio.timeout``, which costs a
Python object and two context-manager calls per connection): the client still learns
``target_unreachable: … timeout`` at once, and stopping the agent mid-dial is a plain
cancellation, not a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.aio.agent import AGENT_MUX, Agent
from core.aio.endpoint import LocalEndpoint, RelayClient
from core.aio.relay import Relay, RelayConfig
from core.format import utcnow
from core.pki.tokens import parse
from core.registry.store import ALL_CLUSTERS

CLUSTER = "prod"
DIAL_TIMEOUT = 0.5


@contextlib.contextmanager
def silent_target() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connect hangs (SYN dropped)."""
    listener = socket.socket()
    held: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(4):  # more than the queue takes; the rest stay in SYN_SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            held.append(s)
        yield port
    finally:
        for s in held:
            s.close()
        listener.close()


@pytest.fixture
async def tunnel(tmp_path: Path) -> AsyncIterator[tuple[Agent, LocalEndpoint]]:
    with silent_target() as port:
        async with contextlib.AsyncExitStack() as stack:
            relay = Relay(RelayConfig(state_dir=tmp_path / "relay"))
            await relay.start()
            stack.push_async_callback(relay.stop)
            join = parse(relay.state.join_token(CLUSTER, relay.address, None, utcnow()))
            agent = Agent(
                tmp_path / "agent", "127.0.0.1", port, token=join, mux=AGENT_MUX,
                dial_timeout=DIAL_TIMEOUT,
            )  # fmt: skip
            await agent.start()
            stack.push_async_callback(agent.stop)
            token = relay.state.client_token("alice", relay.address, utcnow(), scope=ALL_CLUSTERS)
            client = RelayClient(tmp_path / "client", parse(token))
            await client.start()
            stack.push_async_callback(client.stop)
            endpoint = LocalEndpoint(client, CLUSTER)
            await endpoint.start()
            stack.push_async_callback(endpoint.stop)
            await agent.wait_online(10)
            await client.wait_online(10)
            yield agent, endpoint


async def test_a_target_that_never_answers_is_refused_at_the_deadline(
    tunnel: tuple[Agent, LocalEndpoint],
) -> None:
    agent, endpoint = tunnel
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    started = loop.time()
    writer.write(b"hello")
    async with asyncio.timeout(DIAL_TIMEOUT + 5):
        with contextlib.suppress(OSError):
            assert await reader.read() == b""  # the endpoint ends the refused connection
    took = loop.time() - started
    writer.close()
    assert DIAL_TIMEOUT * 0.8 <= took < DIAL_TIMEOUT + 3
    assert endpoint.last_refusal is not None
    assert endpoint.last_refusal.startswith("target_unreachable"), endpoint.last_refusal
    assert "timeout" in endpoint.last_refusal
    closed = [r.info() for r in agent.book.closed]
    assert [r.close_reason for r in closed] == ["target unreachable: timeout"]
    assert not agent._dials, "the deadline timer is dropped with its dial"


async def test_stopping_the_agent_mid_dial_is_not_a_timeout(
    tunnel: tuple[Agent, LocalEndpoint],
) -> None:
    agent, endpoint = tunnel
    _reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"hello")
    async with asyncio.timeout(5):
        while not agent._dials:
            await asyncio.sleep(0.01)
    dials = list(agent._dials)
    await agent.stop()
    assert all(task.cancelled() for task in dials)
    assert not any(r.close_reason == "target unreachable: timeout" for r in agent.book.closed)
    writer.close()
