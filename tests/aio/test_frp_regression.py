"""The FRP kubectl-exec incident, as a test.

Through FRP's https2https plugin, ``kubectl exec`` hung right after ``101 Switching
Protocols``: a mux stream's read deadline error was not "temporary", so Go's TLS layer
made it sticky once net/http hijacked the connection. Here TLS runs *over a mux stream*;
reads on that TLS stream time out and are cancelled; then an HTTP/1.1 Upgrade completes
over it and data flows both ways, byte-exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

import pytest

from tests.aio.conftest import MuxPair
from tests.support.certs import LoopbackPKI

MiB = 1 << 20
UPGRADE_REQUEST = (
    b"POST /api/v1/namespaces/default/pods/demo/exec?command=sh HTTP/1.1\r\n"
    b"Host: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
)


async def server_tls(
    pair: MuxPair, pki: LoopbackPKI
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    stream = await pair.server.accept()  # the ClientHello waits in the stream, unread
    reader = asyncio.StreamReader(limit=MiB)
    protocol = asyncio.StreamReaderProtocol(reader)
    tls = await loop.start_tls(stream, protocol, pki.server_context(), server_side=True)
    assert tls is not None
    protocol.connection_made(tls)
    return reader, asyncio.StreamWriter(tls, protocol, reader, loop)


async def test_read_timeouts_on_tls_over_a_mux_stream_then_upgrade(
    pair: MuxPair, pki: LoopbackPKI
) -> None:
    reader, writer = await pair.client.open_connection()
    server_side = asyncio.create_task(server_tls(pair, pki))
    await writer.start_tls(pki.client_context(), server_hostname="localhost")
    s_reader, s_writer = await server_side
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"

    # Nothing to read yet: per-read timeouts and a cancellation, as an idle exec would see.
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.05)
    pending = asyncio.create_task(reader.readexactly(5))
    await asyncio.sleep(0.02)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending

    # The upgrade: request, 101 with bytes glued right after its head.
    writer.write(UPGRADE_REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(s_reader.readuntil(b"\r\n\r\n"), 5)
    assert head == UPGRADE_REQUEST
    s_writer.write(SWITCHING + b"\x80\x03\x00\x04first-frame")
    await s_writer.drain()
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == SWITCHING
    assert await reader.readexactly(15) == b"\x80\x03\x00\x04first-frame"

    # Another idle spell after the upgrade, then bulk data both ways.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.05)
    up = os.urandom(2 * MiB)
    down = os.urandom(3 * MiB)

    async def client_send() -> None:
        for i in range(0, len(up), 100_000):
            writer.write(up[i : i + 100_000])
            await writer.drain()

    async def server_echo_and_send() -> bytes:
        got = await s_reader.readexactly(len(up))
        for i in range(0, len(down), 100_000):
            s_writer.write(down[i : i + 100_000])
            await s_writer.drain()
        return got

    send = asyncio.create_task(client_send())
    serve = asyncio.create_task(server_echo_and_send())
    received = bytearray()
    while len(received) < len(down):
        try:
            received += await asyncio.wait_for(reader.read(MiB), 0.5)
        except TimeoutError:
            continue
    await send
    assert hashlib.sha256(await serve).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(received).digest() == hashlib.sha256(down).digest()
    assert pair.client.session.terminated is None

    writer.close()
    s_writer.close()
    for w in (writer, s_writer):
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(w.wait_closed(), 5)
