"""An in-process relay with a legitimate agent and desktop client, streaming all along.

Every attack in this package runs against ``world``: a relay with short pre-auth
deadlines, the agent of cluster ``prod`` online in front of an echo server, and a
desktop client whose local endpoint keeps a background echo loop running (checksummed
round trips, plus an "is the agent still online" sample every round). After each attack
``world.check()`` proves the legitimate path still works and never went offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.aio.agent import AGENT_MUX, Agent
from core.aio.dial import Enrollment, enroll
from core.aio.endpoint import LocalEndpoint, RelayClient
from core.aio.relay import Relay, RelayConfig
from core.format import utcnow
from core.pki.identity import Role
from core.pki.tokens import Token, TokenKind, parse
from core.protocol.mux import MuxConfig
from core.registry.store import ALL_CLUSTERS
from tests.support.leaks import no_leaks

CLUSTER = "prod"
HANDSHAKE_TIMEOUT = 1.0
AUTH_TIMEOUT = 1.0
#: How long a connection beyond the pre-auth caps waits for a slot (shipped: 2 s of a
#: 5 s handshake deadline; here a tenth of the 1 s one, so a flood's excess is refused
#: before any admitted connection's deadline frees a slot, unless opening the flood
#: itself takes most of that second: ``test_relay_dos`` bounds it with the wait).
PREAUTH_WAIT = 0.1
#: A refusal that needs no deadline must be over well within this (seconds).
PROMPT = 3.0
CHUNK = 16 * 1024
#: Attackers' own sessions: no keepalive traffic of their own to muddy the counters.
QUIET_MUX = MuxConfig(keepalive_interval=None)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


class EchoTarget:
    """The "apiserver": a TCP echo server the agent dials."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.writers.discard(writer)
            await _close_writer(writer)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()


async def echo_once(port: int, nbytes: int, timeout: float = 10.0) -> float:
    """One fresh connection through the tunnel: send, read back, compare; the seconds."""
    payload = os.urandom(nbytes)
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(payload)
            await writer.drain()
            got = await reader.readexactly(nbytes)
        finally:
            await _close_writer(writer)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return time.monotonic() - start


@dataclass
class EchoLoop:
    """Keeps one tunnelled connection busy with checksummed round trips."""

    port: int
    health: Callable[[], str | None]
    rounds: int = 0
    max_latency: float = 0.0
    errors: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    stopping: bool = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="legit-echo-loop")

    async def _run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while not self.stopping:
                payload = os.urandom(CHUNK)
                start = time.monotonic()
                writer.write(payload)
                await writer.drain()
                async with asyncio.timeout(10):
                    got = await reader.readexactly(CHUNK)
                if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
                    self.errors.append(f"round {self.rounds}: checksum mismatch")
                    return
                self.max_latency = max(self.max_latency, time.monotonic() - start)
                self.rounds += 1
                problem = self.health()
                if problem:
                    self.errors.append(f"round {self.rounds}: {problem}")
                await asyncio.sleep(0.02)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
        finally:
            await _close_writer(writer)

    async def stop(self) -> None:
        # The flag too: Python 3.11's asyncio.wait_for swallows a cancellation that
        # arrives as the read it waits for completes (it had the loop, and the
        # fixture's teardown, run forever now and then); asyncio.timeout does not.
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class World:
    root: Path
    relay: Relay
    target: EchoTarget
    agent: Agent
    client: RelayClient
    endpoint: LocalEndpoint
    agent_token: Token
    agent_session: object = None
    echo: EchoLoop = field(init=False)

    def __post_init__(self) -> None:
        self.agent_session = self.relay._agents[CLUSTER]
        self.echo = EchoLoop(self.endpoint.port, self.health)

    @property
    def address(self) -> str:
        return self.relay.address

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.address.rsplit(":", 1)
        return host, int(port)

    def health(self) -> str | None:
        if self.agent.state != "online" or self.agent.reconnects:
            return f"agent state {self.agent.state}, reconnects {self.agent.reconnects}"
        if self.relay._agents.get(CLUSTER) is not self.agent_session:
            return "the relay lost the agent's session"
        return None

    def token(self, kind: TokenKind, name: str) -> Token:
        """A fresh one-time token from the relay's own registry."""
        if kind == TokenKind.JOIN:
            return parse(self.relay.state.join_token(name, self.address, None, utcnow()))
        return parse(
            self.relay.state.client_token(name, self.address, utcnow(), scope=ALL_CLUSTERS)
        )

    async def enroll(self, role: Role, name: str) -> Enrollment:
        """Another enrolled identity (its own state directory)."""
        kind = TokenKind.JOIN if role == Role.AGENT else TokenKind.CLIENT
        directory = self.root / f"{role.value}-{name}"
        return await enroll(self.token(kind, name), directory, role, QUIET_MUX)

    async def check(self, nbytes: int = 256 * 1024) -> float:
        """The legitimate path works (fresh checksummed echo) and never went offline."""
        rounds = self.echo.rounds
        took = await echo_once(self.endpoint.port, nbytes)
        async with asyncio.timeout(5):
            while self.echo.rounds <= rounds and not self.echo.errors:
                await asyncio.sleep(0.01)
        assert not self.echo.errors, self.echo.errors
        assert self.health() is None, self.health()
        return took


@pytest.fixture
async def world(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[World]:
    caplog.set_level(logging.DEBUG, logger="wicket")
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(loop.set_exception_handler, None)
        relay = Relay(
            RelayConfig(
                state_dir=tmp_path / "relay",
                handshake_timeout=HANDSHAKE_TIMEOUT,
                auth_timeout=AUTH_TIMEOUT,
                max_preauth=256,
                max_preauth_per_source=64,
                preauth_wait=PREAUTH_WAIT,
            )
        )
        await relay.start()
        stack.push_async_callback(relay.stop)
        target = EchoTarget()
        target_port = await target.start()
        stack.push_async_callback(target.stop)
        join = parse(relay.state.join_token(CLUSTER, relay.address, None, utcnow()))
        agent = Agent(tmp_path / "agent", "127.0.0.1", target_port, token=join, mux=AGENT_MUX)
        await agent.start()
        stack.push_async_callback(agent.stop)
        client_token = parse(
            relay.state.client_token("alice", relay.address, utcnow(), scope=ALL_CLUSTERS)
        )
        client = RelayClient(tmp_path / "client", client_token)
        await client.start()
        stack.push_async_callback(client.stop)
        endpoint = LocalEndpoint(client, CLUSTER)
        await endpoint.start()
        stack.push_async_callback(endpoint.stop)
        await agent.wait_online(10)
        await client.wait_online(10)
        world = World(tmp_path, relay, target, agent, client, endpoint, join)
        world.echo.start()
        stack.push_async_callback(world.echo.stop)
        await world.check()
        yield world
        assert not world.echo.errors, world.echo.errors
        assert world.health() is None, world.health()
    unexpected = [c for c in loop_errors if not isinstance(c.get("exception"), OSError)]
    assert not unexpected, unexpected


def replace_token(token: Token, **changes: object) -> Token:
    return dataclasses.replace(token, **changes)  # type: ignore[arg-type]


def relay_lines(
    caplog: pytest.LogCaptureFixture, *needles: str, name: str = "wicket.relay", since: int = 0
) -> list[str]:
    """Messages of logger ``name`` containing every needle (from record ``since`` on)."""
    return [
        r.getMessage()
        for r in caplog.records[since:]
        if r.name == name and all(n in r.getMessage() for n in needles)
    ]


async def wait_for(predicate: Callable[[], object], timeout: float) -> float:
    """Poll until ``predicate()`` is true; the seconds it took (TimeoutError past it)."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
    return time.monotonic() - start


async def wait_closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Read until the relay ends the connection; whatever arrived before that."""
    data = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except (OSError, asyncio.IncompleteReadError):
            pass
    return data


__all__ = ["no_leaks"]
