"""A process hosting many relay peers on one event loop, for the scale benchmark.

``python -m tests.bench.scale_hosts {agents,clients} --work DIR --names a,b,... [--loop L]``

Each name is one peer with its own state dir (``DIR/<role>s/<name>``) and, until it has
enrolled, its one-time token (``DIR/tokens/<name>.token``, 0600). The peers are the real
``core.aio.agent.Agent`` and ``core.aio.endpoint.RelayClient``: enrollment, mutual TLS,
the mux session, keepalives and reconnects with jittered backoff are theirs, unchanged.
An agents host also runs the agents' target: a loopback echo server. A clients host can
put load through the tunnel: connections to a listener of its own whose every accepted
connection becomes a stream (``core.aio.tunnel.TunnelDialer``, what ``wicket connect``
runs) from a random client to a random cluster, echoed once by that cluster's agent.

Driven like ``tests.bench.peers``: one JSON command a line on stdin, one JSON reply a line
on stdout. It exits on stdin EOF, on ``quit``, or after ``--budget`` seconds whatever
happens (so a benchmark that dies leaves nothing behind).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.aio.agent import Agent
from core.aio.endpoint import RelayClient
from core.aio.eventloop import loop_factory, raise_open_files_limit, resolve
from core.aio.peer import RelayPeer
from core.aio.tunnel import StreamBook, TunnelDialer
from core.pki.tokens import Token, parse
from core.protocol.preamble import EndpointKind, StreamRequest

HOST = "127.0.0.1"
#: Every command is bounded by this (seconds) unless it says otherwise.
STEP_TIMEOUT = 600.0


class Echo(asyncio.Protocol):
    """The agents' target: echoes, and closes on the peer's EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False


class Host:
    def __init__(self, role: str, work: Path, names: list[str]) -> None:
        self.role = role
        self.work = work
        self.names = names
        self.peers: dict[str, RelayPeer] = {}
        self.target_port = 0
        self.book = StreamBook(history=16)
        self.clusters: list[str] = []

    def _token(self, name: str) -> Token | None:
        path = self.work / "tokens" / f"{name}.token"
        return parse(path.read_text()) if path.exists() else None

    def _peer(self, name: str) -> RelayPeer:
        state = self.work / f"{self.role}s" / name
        token = self._token(name)
        if self.role == "agent":
            return Agent(state, HOST, self.target_port, token=token)
        return RelayClient(state, token)

    async def hello(self) -> dict[str, Any]:
        if self.role == "agent":
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Echo, HOST, 0, backlog=1024)
            self.target_port = server.sockets[0].getsockname()[1]
        return {"pid": os.getpid(), "fd_limit": raise_open_files_limit(), "peers": len(self.names)}

    # -- commands ----------------------------------------------------------------------

    async def start(self, pace: int = 16, count: int | None = None) -> dict[str, Any]:
        """Start the peers not started yet (the first ``count`` of them), at most
        ``pace`` of them connecting at once; reply when they are online (or failed)."""
        todo = [n for n in self.names if n not in self.peers][:count]
        gate = asyncio.Semaphore(pace)
        t0 = time.monotonic()

        async def one(name: str) -> None:
            async with gate:
                peer = self.peers[name] = self._peer(name)
                await peer.start()
                waiting = asyncio.ensure_future(peer.wait_online(STEP_TIMEOUT))
                assert peer.task is not None
                await asyncio.wait([waiting, peer.task], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()

        await asyncio.gather(*(one(n) for n in todo))
        return {"started": len(todo), "wall_s": time.monotonic() - t0, **self.count()}

    def count(self) -> dict[str, Any]:
        states = collections.Counter(p.state for p in self.peers.values())
        errors = collections.Counter(
            p.last_error for p in self.peers.values() if p.last_error and p.state != "online"
        )
        since = [p.connected_since for p in self.peers.values() if p.connected_since]
        return {
            "online": sum(1 for p in self.peers.values() if p.conn is not None),
            "states": dict(states),
            "reconnects": sum(p.reconnects for p in self.peers.values()),
            "errors": dict(errors.most_common(5)),
            "last_online_at": max(since) if since else None,
            "first_online_at": min(since) if since else None,
        }

    async def status(self) -> dict[str, Any]:
        return self.count()

    async def since(self) -> dict[str, Any]:
        """When each online peer's session began (wall clock)."""
        return {
            "since": sorted(p.connected_since for p in self.peers.values() if p.connected_since)
        }

    async def wait(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until every started peer is online (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.conn is not None for p in self.peers.values()):
                break
            await asyncio.sleep(0.05)
        return self.count()

    async def stop(self) -> dict[str, Any]:
        peers, self.peers = list(self.peers.values()), {}
        await asyncio.gather(*(p.stop() for p in peers), return_exceptions=True)
        return {"stopped": len(peers)}

    async def load(
        self, seconds: float, concurrency: int, clusters: list[str], payload: int = 1
    ) -> dict[str, Any]:
        """Connections for ``seconds``: each through a random online client to a random
        cluster, ``payload`` bytes echoed, then closed; ``concurrency`` at once."""
        clients = [p for p in self.peers.values() if p.conn is not None]
        if not clients:
            return {"error": "load: no client online"}
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: self._dialer(clients, clusters), HOST, 0, backlog=4096
        )
        port = server.sockets[0].getsockname()[1]
        data = b"x" * payload
        latencies: list[float] = []
        failures: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                t = time.perf_counter()
                try:
                    async with asyncio.timeout(10.0):
                        await _echo_once(port, data)
                    latencies.append(time.perf_counter() - t)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    failures[type(exc).__name__] += 1

        t0 = time.monotonic()
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            server.close()
        wall = time.monotonic() - t0
        latencies.sort()
        return {
            "conns": len(latencies),
            "failures": dict(failures),
            "wall_s": wall,
            "p50_ms": 1e3 * statistics.median(latencies) if latencies else None,
            "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
            "clusters": len(set(clusters)),
        }

    def _dialer(self, clients: list[RelayPeer], clusters: list[str]) -> TunnelDialer:
        client = random.choice(clients)
        request = StreamRequest(random.choice(clusters), EndpointKind.LOCAL, "scale-bench")
        return TunnelDialer(lambda: client.conn, lambda _tcp: request, self.book)

    def commands(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {
            "start": self.start,
            "status": self.status,
            "since": self.since,
            "wait": self.wait,
            "stop": self.stop,
            "load": self.load,
        }


async def _echo_once(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        got = await reader.readexactly(len(data))
        if got != data:
            raise ConnectionError("echo mismatch")
    finally:
        writer.close()
        await writer.wait_closed()


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(host: Host, budget: float) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(budget, os._exit, 3)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    reply(await host.hello())
    commands = host.commands()
    try:
        while line := await stdin.readline():
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "quit":
                break
            try:
                async with asyncio.timeout(cmd.pop("timeout", STEP_TIMEOUT)):
                    reply(await commands[op](**cmd))
            except Exception as exc:  # reported to the orchestrator, which fails the run
                reply({"error": f"{op}: {exc!r}"})
    finally:
        await host.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["agents", "clients"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--names", required=True, help="comma-separated peer names")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--budget", type=float, default=3600.0)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    raise_open_files_limit()
    logging.basicConfig(
        level=logging.WARNING,
        filename=args.log,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    host = Host(args.role[:-1], args.work, args.names.split(","))
    kind = resolve(args.loop, auto_uvloop=True)
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        runner.run(serve(host, args.budget))


if __name__ == "__main__":
    main()
