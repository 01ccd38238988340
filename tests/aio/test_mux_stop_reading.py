"""The adapter against a peer that stops reading, and streams that wait in the backlog
while the handler changes (issue 14, items 1 and 3)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time

import pytest

from core import errors
from core.aio.mux import READ_BUFFER, MuxConnection, MuxStream, read_size
from core.protocol.mux import MuxConfig
from tests.aio.conftest import MuxPair, connect_pair, shutdown
from tests.support.certs import LoopbackPKI

QUIET = MuxConfig(keepalive_interval=None)
DRAIN = 1.0


async def _stalled() -> MuxPair:
    """The client stops reading; the server writes until its transport pauses."""
    p = await connect_pair(QUIET, MuxConfig(keepalive_interval=None, drain_timeout=DRAIN))
    transport = p.client._transport
    assert transport is not None
    transport.pause_reading()
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(64):  # 64 initial windows: far past both kernel buffers
        p.server.open_stream(bytes(256 * 1024))
    async with asyncio.timeout(5):
        while not p.server._write_paused:
            await asyncio.sleep(0.01)
    return p


def _count_flushes(conn: MuxConnection) -> list[float]:
    calls: list[float] = []
    flush = conn._flush

    def counted() -> None:
        calls.append(time.monotonic())
        flush()

    conn._flush = counted  # type: ignore[method-assign]
    return calls


async def test_a_paused_transport_costs_no_work_then_the_drain_deadline_drops_it() -> None:
    p = await _stalled()
    try:
        paused_at = time.monotonic()
        flushes = _count_flushes(p.server)
        await asyncio.sleep(0.3)
        assert len(flushes) <= 2, f"{len(flushes)} flushes in 0.3 s while paused"
        async with asyncio.timeout(DRAIN + 2):
            await p.server.wait_closed()
        took = time.monotonic() - paused_at
        assert isinstance(p.server.session.terminated, errors.DrainTimeout)
        assert took < DRAIN + 1.0, took
    finally:
        await shutdown(p)


async def test_close_is_bounded_when_the_peer_reads_nothing() -> None:
    p = await _stalled()
    try:
        start = time.monotonic()
        async with asyncio.timeout(3):
            await p.server.close(drain_timeout=0.2)
        assert time.monotonic() - start < 1.0
    finally:
        await shutdown(p)


async def test_resume_writing_brings_the_writes_back() -> None:
    p = await connect_pair(QUIET)
    try:
        p.server.pause_writing()
        _, writer = p.server.stream_pair(p.server.open_stream(b""))
        writer.write(b"held")
        await asyncio.sleep(0.05)
        assert p.server.session.wants_write
        p.server.resume_writing()
        stream = await p.client.accept()
        r, w = p.client.stream_pair(stream)
        assert await r.readexactly(4) == b"held"
        for wr in (writer, w):
            wr.close()
    finally:
        await shutdown(p)


async def test_a_stream_left_in_the_backlog_does_not_break_the_next_one() -> None:
    """The handler set later gets the stream its event is for, never the oldest one."""
    p = await connect_pair(QUIET)
    try:
        first = p.client.open_stream(b"1")
        async with asyncio.timeout(2):
            while not p.server.session.backlog:
                await asyncio.sleep(0.01)
        handled: list[MuxStream] = []
        p.server.stream_handler = handled.append
        second = p.client.open_stream(b"2")
        async with asyncio.timeout(2):
            while not handled:
                await asyncio.sleep(0.01)
        assert [s.stream_id for s in handled] == [second.stream_id]
        p.server.stream_handler = None
        waiting = await p.server.accept()
        assert waiting.stream_id == first.stream_id
        for stream in (first, second, waiting, *handled):
            stream.abort()
    finally:
        await shutdown(p)


@pytest.mark.parametrize("limit", [None, 1000])
def test_read_buffer_follows_the_receive_budget(limit: int | None) -> None:
    assert read_size(MuxConfig(max_received=limit)) == (READ_BUFFER if limit is None else limit)


async def test_reconfigure_resizes_the_read_buffer_and_raises_the_limits() -> None:
    tiny = MuxConfig(keepalive_interval=None, max_received=1000, max_streams=1)
    p = await connect_pair(QUIET, tiny)
    try:
        assert len(p.server.get_buffer(-1)) == 1000
        p.server.reconfigure(QUIET)
        assert len(p.server.get_buffer(-1)) == READ_BUFFER
        assert p.server.session.config is QUIET
        _, w = await p.client.open_connection(bytes(4000))  # past the old budget
        stream = await p.server.accept()
        assert stream.snapshot() is not None
        assert p.server.session.terminated is None
        stream.abort()
        w.close()
    finally:
        await shutdown(p)


async def test_every_session_of_a_loop_reads_into_one_buffer(pki: LoopbackPKI) -> None:
    """A relay holds thousands of idle sessions: none owns a read buffer (256 KiB each
    before). Eight TLS sessions then move data both ways at once, with frames split
    across reads, and every byte arrives intact."""
    pairs = [await connect_pair(QUIET, pki=pki if i % 2 else None) for i in range(8)]
    try:
        buffers = {id(c.get_buffer(-1).obj) for p in pairs for c in (p.client, p.server)}
        assert len(buffers) == 1
        payloads = [os.urandom(200_000 + 1_000 * i) for i in range(len(pairs))]

        async def echo(p: MuxPair, data: bytes) -> bytes:
            p.server.stream_handler = lambda s: _echo(p.server, s)
            reader, writer = await p.client.open_connection()
            writer.write(data)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            return got

        got = await asyncio.wait_for(
            asyncio.gather(*(echo(p, d) for p, d in zip(pairs, payloads, strict=True))), 10
        )
        assert [hashlib.sha256(g).digest() for g in got] == [
            hashlib.sha256(d).digest() for d in payloads
        ]
    finally:
        for p in pairs:
            await shutdown(p)


def _echo(conn: MuxConnection, stream: MuxStream) -> None:
    reader, writer = conn.stream_pair(stream)

    async def run() -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    _tasks.add(task := asyncio.ensure_future(run()))
    task.add_done_callback(_tasks.discard)


_tasks: set[asyncio.Task[None]] = set()
