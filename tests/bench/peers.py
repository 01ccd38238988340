"""The two benchmark processes: a sink server and a sender client, plain TLS or mux.

``python -m tests.bench.peers {server,client} --mode {tls,mux} --pki DIR [--port P]``

Both ends run the same application code on asyncio ``StreamReader``/``StreamWriter``
pairs; only where the pair comes from differs: one TLS connection per stream (``tls``,
the anchor: what you would write without a multiplexer) or one stream of a single
``MuxConnection`` over one TLS connection (``mux``). Per stream the client sends ``S`` +
u64 N then N bytes and the server replies u64 N once it has read them all (so a timing
includes delivery), or ``E`` and the server echoes until EOF (idle streams).

The orchestrator (``mux_bench``) drives a process with JSON lines on stdin and reads one
JSON reply line per command on stdout; the process exits on stdin EOF, on ``quit``, or
after ``--budget`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.aio.mux import READER_LIMIT, MuxConnection, MuxStream
from core.protocol.mux import MuxConfig
from tests.support.certs import LoopbackPKI

HOST = "127.0.0.1"
#: Application write size (then ``drain()``) and read size, the same for both modes.
WRITE_SIZE = 256 * 1024
READ_SIZE = 256 * 1024
#: Every awaited step of a command is bounded by this (seconds).
STEP_TIMEOUT = 120.0
U64 = struct.Struct(">Q")
PAYLOAD = bytes(WRITE_SIZE)

Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def load_pki(directory: Path) -> LoopbackPKI:
    return LoopbackPKI(
        (directory / "ca.crt").read_bytes(), directory / "server.crt", directory / "server.key"
    )


def mux_config() -> MuxConfig:
    return MuxConfig(max_pending_opens=4096, accept_backlog=4096)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One stream, server side: sink-and-ack or echo."""
    try:
        op = await reader.readexactly(1)
        if op == b"S":
            total = U64.unpack(await reader.readexactly(8))[0]
            left = total
            while left:
                chunk = await reader.read(min(READ_SIZE, left))
                if not chunk:
                    raise ConnectionError(f"EOF with {left} of {total} bytes unread")
                left -= len(chunk)
            writer.write(U64.pack(total))
            await writer.drain()
        elif op == b"E":
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


class Peer:
    """What both ends share: the command loop and process-wide housekeeping."""

    def __init__(self, mode: str, pki: LoopbackPKI) -> None:
        self.mode = mode
        self.pki = pki
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def mux(self) -> MuxConnection | None:
        return None

    async def start(self) -> dict[str, Any]:
        raise NotImplementedError

    def commands(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {"settle": self.settle, "snapshot": self.snapshot}

    async def settle(self) -> dict[str, Any]:
        """Let in-flight work finish and collect garbage before a memory reading."""
        await asyncio.sleep(0.3)
        gc.collect()
        return {}

    async def snapshot(self, times: int = 50) -> dict[str, Any]:
        conn = self.mux()
        if conn is None:
            return {}
        durations = []
        streams = 0
        for _ in range(times):
            t0 = time.perf_counter()
            snap = conn.snapshot()
            durations.append(time.perf_counter() - t0)
            streams = len(snap.streams)
            await asyncio.sleep(0)
        return {"ms": statistics.median(durations) * 1e3, "streams": streams}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        reply(await self.start())
        commands = self.commands()
        while line := await stdin.readline():
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "quit":
                break
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    reply(await commands[op](**cmd))
            except Exception as exc:  # reported to the orchestrator, which fails the run
                reply({"error": f"{op}: {exc!r}"})


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Server(Peer):
    def __init__(self, mode: str, pki: LoopbackPKI) -> None:
        super().__init__(mode, pki)
        self.conns: list[MuxConnection] = []

    def mux(self) -> MuxConnection | None:
        return self.conns[0] if self.conns else None

    async def start(self) -> dict[str, Any]:
        ctx = self.pki.server_context()
        if self.mode == "tls":
            server = await asyncio.start_server(
                serve, HOST, 0, ssl=ctx, limit=READER_LIMIT, backlog=4096
            )
        else:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(self._new_session, HOST, 0, ssl=ctx, backlog=16)
        return {"port": server.sockets[0].getsockname()[1]}

    def _new_session(self) -> MuxConnection:
        conn = MuxConnection(False, mux_config(), stream_handler=self._stream)
        self.conns.append(conn)
        return conn

    def _stream(self, stream: MuxStream) -> None:
        conn: MuxConnection = stream.get_extra_info("mux_connection")
        self.spawn(serve(*conn.stream_pair(stream, READER_LIMIT)))


class Client(Peer):
    def __init__(self, mode: str, pki: LoopbackPKI, port: int) -> None:
        super().__init__(mode, pki)
        self.port = port
        self.conn: MuxConnection | None = None
        self.idle: list[Pair] = []

    def mux(self) -> MuxConnection | None:
        return self.conn

    def commands(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        return {**super().commands(), "bulk": self.bulk, "idle": self.open_idle,
                "release": self.release}  # fmt: skip

    async def start(self) -> dict[str, Any]:
        if self.mode == "mux":
            loop = asyncio.get_running_loop()
            _, self.conn = await loop.create_connection(
                lambda: MuxConnection(True, mux_config()),
                HOST,
                self.port,
                ssl=self.pki.client_context(),
                server_hostname="localhost",
            )
            await self.conn.ping()
        return {}

    async def connect(self, first: bytes) -> Pair:
        """A new stream whose first bytes are ``first``."""
        if self.conn is not None:
            return await self.conn.open_connection(first, READER_LIMIT)
        reader, writer = await asyncio.open_connection(
            HOST,
            self.port,
            ssl=self.pki.client_context(),
            server_hostname="localhost",
            limit=READER_LIMIT,
        )
        writer.write(first)
        return reader, writer

    async def bulk(self, streams: int, nbytes: int) -> dict[str, Any]:
        """Push ``nbytes`` on each of ``streams`` streams at once; time until every ack."""
        pairs = [await self.connect(b"S" + U64.pack(nbytes)) for _ in range(streams)]
        t0 = time.perf_counter()
        ends = await asyncio.gather(*(self._push(r, w, nbytes, t0) for r, w in pairs))
        wall = time.perf_counter() - t0
        for _, writer in pairs:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in pairs), return_exceptions=True)
        return {"wall_s": wall, "stream_wall_s": ends}

    @staticmethod
    async def _push(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, nbytes: int, t0: float
    ) -> float:
        view = memoryview(PAYLOAD)
        left = nbytes
        while left:
            k = min(WRITE_SIZE, left)
            writer.write(PAYLOAD if k == WRITE_SIZE else view[:k])
            await writer.drain()
            left -= k
        ack = U64.unpack(await reader.readexactly(8))[0]
        if ack != nbytes:
            raise RuntimeError(f"server acked {ack} of {nbytes} bytes")
        return time.perf_counter() - t0

    async def open_idle(self, n: int, batch: int = 100) -> dict[str, Any]:
        """Open ``n`` streams, each echoed once (established end to end), and hold them."""
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            self.idle += await asyncio.gather(
                *(self._echo_once() for _ in range(min(batch, n - start)))
            )
        return {"opened": len(self.idle), "wall_s": time.perf_counter() - t0}

    async def _echo_once(self) -> Pair:
        reader, writer = await self.connect(b"Ex")
        if await reader.readexactly(1) != b"x":
            raise RuntimeError("bad echo")
        return reader, writer

    async def release(self) -> dict[str, Any]:
        for _, writer in self.idle:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in self.idle), return_exceptions=True)
        self.idle = []
        return {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--mode", choices=["tls", "mux"], required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--budget", type=float, default=1800.0)
    args = parser.parse_args(argv)
    pki = load_pki(args.pki)
    peer = Server(args.mode, pki) if args.role == "server" else Client(args.mode, pki, args.port)

    async def body() -> None:
        asyncio.get_running_loop().call_later(args.budget, os._exit, 3)
        await peer.run()

    asyncio.run(body())


if __name__ == "__main__":
    main()
