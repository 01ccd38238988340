"""Wicket's multiplexer against an independent yamux (@libp2p/yamux), both roles.

The node peer (peer.mjs) is the other end of a plain TCP connection on loopback; what
each side sends is verified by SHA-256 on the other. See README.md for its protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator

import pytest

from core import errors
from core.aio.mux import MuxConnection, MuxStream
from core.protocol.mux import INITIAL_WINDOW, MuxConfig
from tests.interop.node_peer import NodePeer, node_missing_reason

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(node_missing_reason() is not None, reason=node_missing_reason() or ""),
]

MiB = 1 << 20
CONFIG = MuxConfig(keepalive_interval=0.5, keepalive_timeout=5.0, max_window=16 * MiB)


async def echo_roundtrip(conn: MuxConnection, payload: bytes) -> int:
    """Send ``payload`` on a new stream, half-close, check the echo; returns the stream id."""
    reader, writer = await conn.open_connection(payload[:1000])

    async def send() -> None:
        for i in range(1000, len(payload), 200_000):
            writer.write(payload[i : i + 200_000])
            await writer.drain()
        writer.write_eof()  # half-close; the echo keeps coming until the node's FIN

    sender = asyncio.create_task(send())
    digest = hashlib.sha256()
    total = 0
    while data := await reader.read(MiB):
        digest.update(data)
        total += len(data)
    await sender
    assert total == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()
    writer.close()
    sid: int = writer.get_extra_info("mux_stream_id")
    return sid


async def sink(conn: MuxConnection, size: int) -> int:
    """Send ``size`` bytes to the node's SINK; returns the largest window it granted us."""
    payload = os.urandom(size)
    reader, writer = await conn.open_connection(b"SINK" + struct.pack(">Q", size))
    stream = writer.transport
    assert isinstance(stream, MuxStream)
    largest = 0
    for i in range(0, size, 256 * 1024):
        writer.write(payload[i : i + 256 * 1024])
        await writer.drain()
        snap = stream.snapshot()
        if snap is not None:
            largest = max(largest, snap.send_window + snap.outbox)
    writer.write_eof()
    assert await reader.readexactly(32) == hashlib.sha256(payload).digest()
    assert await reader.read() == b""
    writer.close()
    return largest


@pytest.fixture
async def node_server() -> AsyncIterator[tuple[NodePeer, MuxConnection]]:
    with NodePeer.server("--keepalive-ms", "300", timeout_ms=90_000) as node:
        assert node.port is not None
        loop = asyncio.get_running_loop()
        inbound: list[MuxStream] = []
        _, conn = await loop.create_connection(
            lambda: MuxConnection(True, CONFIG, stream_handler=inbound.append),
            "127.0.0.1",
            node.port,
        )
        conn.inbound = inbound  # type: ignore[attr-defined]
        try:
            yield node, conn
        finally:
            conn.abort()
            await conn.wait_closed()


async def test_wicket_client_echo_sink_window_growth_and_ping(
    node_server: tuple[NodePeer, MuxConnection],
) -> None:
    node, conn = node_server
    await asyncio.gather(*(echo_roundtrip(conn, os.urandom(MiB)) for _ in range(4)))
    largest = await sink(conn, 16 * MiB)
    assert largest > INITIAL_WINDOW  # the node grew our send window past 256 KiB
    rtt = await conn.ping()
    assert 0 <= rtt < 1.0
    await node.wait_for_async("ping", timeout=10)  # the node's keepalive got our replies
    ping_reader, ping_writer = await conn.open_connection(b"PING")
    ping_writer.write_eof()
    reply = json.loads(await ping_reader.read())
    assert reply["ok"] is True
    ping_writer.close()
    await conn.close(drain_timeout=5)
    summary = node.assert_ok(30)
    assert summary["results"].get("echo:closed") == 4


async def test_wicket_client_resets_both_ways(node_server: tuple[NodePeer, MuxConnection]) -> None:
    node, conn = node_server
    # the node resets a stream: our reader sees StreamReset
    reader, writer = await conn.open_connection(b"RST!" + bytes(1024))
    with pytest.raises(errors.StreamReset):
        await asyncio.wait_for(reader.read(), 10)
    writer.close()
    # we reset a stream mid-transfer: the node sees the reset
    reader2, writer2 = await conn.open_connection(os.urandom(64 * 1024))
    assert len(await reader2.readexactly(1000)) == 1000
    writer2.transport.abort()
    event = await node.wait_for_async("stream", direction="inbound", result="reset", timeout=10)
    assert event["id"] == writer2.get_extra_info("mux_stream_id")
    # and the session is unharmed
    await echo_roundtrip(conn, os.urandom(300_000))
    await conn.close(drain_timeout=5)
    node.assert_ok(30)


async def test_wicket_client_accepts_node_opened_streams(
    node_server: tuple[NodePeer, MuxConnection],
) -> None:
    node, conn = node_server
    inbound: list[MuxStream] = conn.inbound  # type: ignore[attr-defined]
    ctl_reader, ctl_writer = await conn.open_connection(b"OPEN" + struct.pack(">IQ", 3, 2 * MiB))
    ctl_writer.write_eof()
    echoes = []
    for _ in range(3):
        while not inbound:
            await asyncio.sleep(0.01)
        reader, writer = conn.stream_pair(inbound.pop(0))
        echoes.append(asyncio.create_task(_echo(reader, writer)))
    received = await asyncio.gather(*echoes)
    report = json.loads(await asyncio.wait_for(ctl_reader.read(), 30))
    assert report["ok"] is True
    assert sorted(s["sha256"] for s in report["streams"]) == sorted(received)
    assert all(s["id"] % 2 == 0 for s in report["streams"])  # server-opened: even ids
    ctl_writer.close()
    await conn.close(drain_timeout=5)
    node.assert_ok(30)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    digest = hashlib.sha256()
    while data := await reader.read(MiB):
        digest.update(data)
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    writer.close()
    return digest.hexdigest()


# -- Wicket as the server, the node as the client ------------------------------------------


class NodeProtocolServer:
    """Serves the node peer's inbound stream protocol: echo, SINK, RST!, OPEN."""

    def __init__(self) -> None:
        self.conn: MuxConnection | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.get_running_loop().create_future()
        self.max_reserved = 0

    def factory(self) -> MuxConnection:
        self.conn = MuxConnection(False, CONFIG, stream_handler=self.handle)
        return self.conn

    def handle(self, stream: MuxStream) -> None:
        assert self.conn is not None
        reader, writer = self.conn.stream_pair(stream)
        task = asyncio.get_running_loop().create_task(self.serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.conn is not None
        try:
            head = await reader.read(4)
            if head == b"RST!":
                writer.transport.abort()
                return
            if head == b"SINK":
                (size,) = struct.unpack(">Q", await reader.readexactly(8))
                digest = hashlib.sha256()
                left = size
                while left:
                    data = await reader.read(min(left, MiB))
                    if not data:
                        raise AssertionError("SINK ended early")
                    digest.update(data)
                    left -= len(data)
                    self.max_reserved = max(self.max_reserved, self.conn.session.reserved)
                writer.write(digest.digest())
            elif head == b"OPEN":
                count, size = struct.unpack(">IQ", await reader.readexactly(12))
                report = []
                for _ in range(count):
                    payload = os.urandom(size)
                    sid = await echo_roundtrip(self.conn, payload)
                    sha = hashlib.sha256(payload).hexdigest()
                    report.append({"id": sid, "bytes": size, "sha256": sha, "ok": True})
                writer.write(json.dumps({"ok": True, "streams": report}).encode() + b"\n")
            else:
                writer.write(head)
                while data := await reader.read(MiB):
                    writer.write(data)
                    await writer.drain()
            writer.write_eof()
            await reader.read()
        except (ConnectionError, errors.MuxError):
            pass
        finally:
            writer.close()


async def test_node_client_against_wicket_server() -> None:
    served = NodeProtocolServer()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(served.factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with NodePeer.client(
            port,
            *("--streams", "4", "--bytes", str(MiB)),
            *("--reset-streams", "2", "--expect-reset-streams", "1"),
            *("--sink-bytes", str(16 * MiB), "--open-streams", "2", "--open-bytes", "300000"),
            "--ping",
            timeout_ms=90_000,
        ) as node:
            while node.returncode is None:
                await asyncio.sleep(0.05)
            summary = node.assert_ok(30)
        assert summary["results"]["echo:closed"] == 4 + 2  # ours, and the OPENed ones
        assert len(node.find("stream", mode="reset", result="reset_sent")) == 2
        assert node.find("stream", mode="expect_reset", result="reset", ok=True)
        assert node.find("stream", mode="sink", ok=True)
        assert node.find("stream", mode="open_control", ok=True)
        assert summary["pings"] >= 1
        assert served.max_reserved > INITIAL_WINDOW  # our receive window grew for the SINK
        assert served.conn is not None
        assert served.conn.snapshot().rtt is not None
        assert served.conn.snapshot().goaway_received == 0
    finally:
        for task in list(served.tasks):
            task.cancel()
        if served.conn is not None:
            served.conn.abort()
            await served.conn.wait_closed()
        server.close()
        await server.wait_closed()
