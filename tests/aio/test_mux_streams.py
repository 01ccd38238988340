"""The asyncio adapter over loopback TCP and TLS: data, half-close, reset, limits."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import sys
from typing import cast

import pytest

from core import errors
from core.aio.mux import MuxConnection, MuxStream
from core.protocol.mux import INITIAL_WINDOW, MuxConfig
from tests.aio.conftest import MuxPair, connect_pair, shutdown
from tests.support.certs import LoopbackPKI

MiB = 1 << 20


def echo_handler(conn_ref: list[MuxConnection]) -> object:
    tasks: set[asyncio.Task[None]] = set()

    def handle(stream: MuxStream) -> None:
        reader, writer = conn_ref[0].stream_pair(stream)

        async def echo() -> None:
            try:
                while data := await reader.read(256 * 1024):
                    writer.write(data)
                    await writer.drain()
                writer.write_eof()
            except (ConnectionError, errors.MuxError):
                pass
            finally:
                writer.close()

        task = asyncio.get_running_loop().create_task(echo())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return handle


async def echo_pair(config: MuxConfig | None = None, pki: LoopbackPKI | None = None) -> MuxPair:
    ref: list[MuxConnection] = []
    p = await connect_pair(
        config or MuxConfig(keepalive_interval=None),
        handler=echo_handler(ref),  # type: ignore[arg-type]
        pki=pki,
    )
    ref.append(p.server)
    return p


async def roundtrip(conn: MuxConnection, payload: bytes, first: bytes = b"") -> None:
    reader, writer = await conn.open_connection(first)

    async def send() -> None:
        view = memoryview(payload)
        for i in range(0, len(view), 300_000):
            writer.write(view[i : i + 300_000])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    digest = hashlib.sha256()
    total = 0
    while data := await reader.read(1 << 20):
        digest.update(data)
        total += len(data)
    await sender
    assert total == len(first) + len(payload)
    assert digest.digest() == hashlib.sha256(first + payload).digest()
    writer.close()
    await writer.wait_closed()


async def test_checksummed_echo_one_stream_and_eight_in_parallel() -> None:
    p = await echo_pair()
    try:
        await roundtrip(p.client, os.urandom(8 * MiB), first=b"hello")
        await asyncio.gather(*(roundtrip(p.client, os.urandom(2 * MiB)) for _ in range(8)))
        assert p.client.session.stream_count == 0
    finally:
        await shutdown(p)


async def test_over_tls(pki: LoopbackPKI) -> None:
    p = await echo_pair(pki=pki)
    try:
        await asyncio.gather(*(roundtrip(p.client, os.urandom(MiB)) for _ in range(4)))
        assert p.client.get_extra_info("ssl_object") is not None
    finally:
        await shutdown(p)


async def test_half_close_reads_go_on_until_the_peer_fin(pair: MuxPair) -> None:
    reader, writer = await pair.client.open_connection(b"input")
    writer.write_eof()
    s_reader, s_writer = await pair.server.accept_connection()
    assert await s_reader.read() == b"input"  # EOF seen by the server
    for i in range(50):
        s_writer.write(b"line %d\n" % i)
        await s_writer.drain()
    s_writer.write_eof()
    lines = (await reader.read()).splitlines()
    assert len(lines) == 50
    assert lines[-1] == b"line 49"
    writer.close()
    s_writer.close()


async def test_reset_reaches_the_peer_reader(pair: MuxPair) -> None:
    _reader, writer = await pair.client.open_connection(b"x")
    s_reader, s_writer = await pair.server.accept_connection()
    assert await s_reader.readexactly(1) == b"x"
    writer.transport.abort()
    with pytest.raises(errors.StreamReset):
        await asyncio.wait_for(s_reader.read(10), 5)
    s_writer.close()


async def test_refused_when_backlog_full() -> None:
    p = await connect_pair(MuxConfig(keepalive_interval=None, accept_backlog=1))
    try:
        _r1, w1 = await p.client.open_connection(b"a")
        r2, w2 = await p.client.open_connection(b"b")
        with pytest.raises(errors.StreamRefused):
            await asyncio.wait_for(r2.read(), 5)
        w1.close()
        w2.close()
    finally:
        await shutdown(p)


async def test_per_read_timeout_never_damages_the_stream_or_others(pair: MuxPair) -> None:
    """FRP regression (a): read timeouts and cancellations, then every byte still arrives."""
    reader, writer = await pair.client.open_connection(b"start")
    other_r, other_w = await pair.client.open_connection(b"other")
    s_reader, s_writer = await pair.server.accept_connection()
    o_reader, o_writer = await pair.server.accept_connection()
    await s_reader.readexactly(5)
    await o_reader.readexactly(5)
    payload = os.urandom(3 * MiB)
    timeouts = 0
    cancelled = 0

    async def slow_send() -> None:
        for i in range(0, len(payload), 512 * 1024):
            s_writer.write(payload[i : i + 512 * 1024])
            await s_writer.drain()
            await asyncio.sleep(0.06)
        s_writer.write_eof()

    sender = asyncio.create_task(slow_send())
    got = bytearray()
    while True:
        try:
            data = await asyncio.wait_for(reader.read(100_000), 0.02)
        except TimeoutError:
            timeouts += 1
            continue
        if not data:
            break
        got += data
        reading = asyncio.create_task(reader.readexactly(7))  # cancelled mid-wait
        await asyncio.sleep(0)
        reading.cancel()
        try:
            got += await reading  # it may have completed before the cancel landed
        except asyncio.CancelledError:
            cancelled += 1
        except asyncio.IncompleteReadError as exc:
            got += exc.partial
            break
    await sender
    assert timeouts > 3
    assert cancelled > 0
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    o_writer.write(b"still fine")
    o_writer.write_eof()
    assert await other_r.read() == b"still fine"
    assert pair.client.session.terminated is None
    for w in (writer, other_w, s_writer, o_writer):
        w.close()


async def test_slow_reader_stalls_only_its_own_stream() -> None:
    p = await echo_pair()
    try:
        stalled_r, stalled_w = await p.client.open_connection()
        stalled_w.write(os.urandom(4 * INITIAL_WINDOW))  # its echo is never read
        await roundtrip(p.client, os.urandom(16 * MiB))
        snap = p.client.snapshot()
        assert snap.terminated is None
        assert snap.session_buffer <= 4 * MiB
        stalled_w.transport.abort()
        del stalled_r
    finally:
        await shutdown(p)


async def test_write_timeout_resets_and_the_peer_sees_it() -> None:
    p = await connect_pair(MuxConfig(keepalive_interval=None, write_timeout=0.3))
    try:
        reader, writer = await p.client.open_connection()
        s_reader, s_writer = await p.server.accept_connection()
        s_reader._transport.pause_reading()  # type: ignore[attr-defined]  # never reads
        writer.write(b"z" * (INITIAL_WINDOW + MiB))
        with pytest.raises(errors.WriteTimeout):
            await asyncio.wait_for(writer.drain(), 5)
        s_reader._transport.resume_reading()  # type: ignore[attr-defined]
        with pytest.raises(errors.StreamReset):
            while await asyncio.wait_for(s_reader.read(MiB), 5):
                pass
        del reader
        s_writer.close()
    finally:
        await shutdown(p)


async def test_missed_keepalive_ends_the_session_and_its_streams() -> None:
    cfg = MuxConfig(keepalive_interval=0.2, keepalive_timeout=0.3)
    p = await connect_pair(cfg, server_config=MuxConfig(keepalive_interval=None))
    try:
        assert await p.client.ping() >= 0
        reader, writer = await p.client.open_connection(b"x")
        _, s_writer = await p.server.accept_connection()
        p.server_transport.pause_reading()  # a black hole: nothing is answered
        started = asyncio.get_running_loop().time()
        with pytest.raises(errors.KeepaliveTimeout):
            await asyncio.wait_for(reader.read(), 3)
        assert asyncio.get_running_loop().time() - started < 0.2 + 0.3 + 0.3
        assert isinstance(p.client.session.terminated, errors.KeepaliveTimeout)
        assert p.client.snapshot().rtt is not None
        writer.close()
        s_writer.close()
    finally:
        await shutdown(p)


async def test_go_away_drains_open_streams_then_closes(pair: MuxPair) -> None:
    reader, writer = await pair.client.open_connection(b"a")
    s_reader, s_writer = await pair.server.accept_connection()

    async def finish() -> None:
        await asyncio.sleep(0.1)
        s_writer.write(await s_reader.readexactly(1))
        s_writer.write_eof()
        writer.write_eof()

    task = asyncio.create_task(finish())
    closing = asyncio.create_task(pair.server.close(drain_timeout=5))
    await asyncio.sleep(0.02)
    with pytest.raises(errors.SessionGoneAway):
        pair.client.open_stream()
    assert await reader.read() == b"a"
    await task
    await closing
    writer.close()


async def test_close_returns_when_the_last_stream_ends_or_at_the_drain_timeout(
    pair: MuxPair,
) -> None:
    _, writer = await pair.client.open_connection(b"a")
    s_reader, s_writer = await pair.server.accept_connection()
    loop = asyncio.get_running_loop()
    start = loop.time()
    closing = asyncio.create_task(pair.server.close(drain_timeout=0.3))
    await asyncio.sleep(0)
    assert not closing.done()
    await closing  # the stream never ends: close waits out the drain timeout, no longer
    assert 0.25 <= loop.time() - start < 2.0
    writer.close()
    s_writer.close()
    del s_reader


async def test_close_wakes_at_once_when_drained(pair: MuxPair) -> None:
    reader, writer = await pair.client.open_connection(b"a")
    s_reader, s_writer = await pair.server.accept_connection()
    closing = asyncio.create_task(pair.server.close(drain_timeout=30))
    await asyncio.sleep(0.05)
    assert not closing.done()
    s_writer.write(await s_reader.readexactly(1))
    s_writer.write_eof()
    writer.write_eof()
    assert await reader.read() == b"a"
    await asyncio.wait_for(closing, 2.0)  # woken by the stream's end, not polling 30 s
    writer.close()


async def test_protocol_error_from_peer_closes_with_go_away(pair: MuxPair) -> None:
    reader, _writer = await pair.client.open_connection(b"a")
    pair.server_transport.write(bytes([9]) + bytes(11))  # version 9
    with pytest.raises(errors.SessionClosed, match="version"):
        await asyncio.wait_for(reader.read(), 5)


async def test_stream_snapshots_keep_final_counters(pair: MuxPair) -> None:
    reader, writer = await pair.client.open_connection(b"12345")
    writer.write_eof()
    s_reader, s_writer = await pair.server.accept_connection()
    assert await s_reader.read() == b"12345"
    s_writer.write(b"abc")
    s_writer.write_eof()
    assert await reader.read() == b"abc"
    await asyncio.sleep(0.01)
    stream = writer.transport
    assert isinstance(stream, MuxStream)
    final = stream.snapshot()
    assert final is not None
    assert (final.bytes_sent, final.bytes_received) == (5, 3)
    assert final.state.value == "closed"


async def test_a_failing_stream_protocol_ends_only_its_stream(
    pair: MuxPair, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            raise ValueError("application bug")

    bad_reader, bad_writer = await pair.client.open_connection()
    good_reader, good_writer = await pair.client.open_connection(b"fine")
    (await pair.server.accept()).attach(Broken())
    s_reader, s_writer = await pair.server.accept_connection()
    bad_writer.write(b"boom")  # arrives while Broken is attached: raised in dispatch
    with pytest.raises(errors.StreamReset):
        await asyncio.wait_for(bad_reader.read(), 5)
    assert "its protocol failed" in caplog.text
    assert await s_reader.readexactly(4) == b"fine"
    s_writer.write(b"still here")
    s_writer.write_eof()
    assert await good_reader.read() == b"still here"
    assert pair.client.session.terminated is None
    for w in (bad_writer, good_writer, s_writer):
        w.close()


async def test_a_finished_stream_leaves_nothing_allocated() -> None:
    """Thousands of streams opened, spliced to a peer, echoed and closed cost no memory
    after they are gone: nothing per stream stays allocated (the compiled build once
    kept an empty dict per stream, the asyncio base's ``_extra`` slot)."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def eof_received(self) -> bool:
            self.transport.write_eof()
            return True

    def echo(stream: MuxStream) -> None:
        stream.attach(Echo())

    p = await connect_pair(MuxConfig(keepalive_interval=None), handler=echo)

    async def streams(n: int) -> None:
        for _ in range(n):
            reader, writer = p.client.stream_pair(p.client.open_stream(b"hello"))
            assert await reader.readexactly(5) == b"hello"
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
        await asyncio.sleep(0.05)  # the last closes' callbacks
        gc.collect()

    try:
        await streams(200)
        before = sys.getallocatedblocks()
        await streams(2000)
        per_stream = (sys.getallocatedblocks() - before) / 2000
        assert per_stream < 0.5, f"{per_stream:.2f} blocks kept per stream"
    finally:
        await shutdown(p)
