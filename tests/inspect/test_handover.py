"""The FRP incident's failure, and upstream failures, through the inspect endpoint.

Through FRP's https2https plugin ``kubectl exec`` hung right after the 101: a read
deadline hit at the moment HTTP parsing stopped and raw splicing started, and the
error stuck to the connection. Here the same two protocol objects carry a connection
from its first head to its last upgraded byte, so timeouts and cancellations around
the hand-over cannot strand or reorder bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from pathlib import Path

import pytest

from core.aio.inspect import InspectEndpoint, tcp_connector, tunnel_connector, upstream_context
from core.protocol.http_proxy import UpgradeState
from core.protocol.mux import MuxConfig
from core.protocol.preamble import (
    EndpointKind,
    RequestDecoder,
    Status,
    StreamRequest,
    StreamStatus,
)
from tests.aio.conftest import connect_pair, shutdown
from tests.inspect.backend import Reply, StrictBackend
from tests.inspect.conftest import ENDPOINT_TOKEN, client_context, settle
from tests.support.certs import LoopbackPKI

UPGRADE = (
    b"POST /api/v1/namespaces/default/pods/web/exec?command=sh HTTP/1.1\r\n"
    b"Host: @HOST@\r\nAuthorization: Bearer " + ENDPOINT_TOKEN.encode() + b"\r\n"
    b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
)
GLUED = b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"  # a PING right after the head


async def open_client(
    endpoint: InspectEndpoint,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", endpoint.port, ssl=client_context(endpoint), server_hostname="127.0.0.1"
    )


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 3)


async def test_timeouts_and_cancellation_at_the_hand_over(
    endpoint: InspectEndpoint, backend: StrictBackend
) -> None:
    backend.reply_for = lambda _: Reply(SWITCH + GLUED, upgrade=True, delay=0.6)
    reader, writer = await open_client(endpoint)
    writer.write(UPGRADE.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()) + b"EARLY")
    for _ in range(3):  # kubectl-like read deadlines while the 101 is pending
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.05)
    pending = asyncio.create_task(reader.readexactly(5))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await asyncio.wait_for(reader.readexactly(len(GLUED)), 5) == GLUED
    with pytest.raises(TimeoutError):  # idle after the upgrade, then bulk data
        await asyncio.wait_for(reader.read(1), 0.05)
    bulk = os.urandom(1 << 20)
    for i in range(0, len(bulk), 65536):
        writer.write(bulk[i : i + 65536])
        await writer.drain()
    (conn,) = backend.conns
    async with asyncio.timeout(10):
        while len(conn.upgraded) < len(bulk) + 5:
            await asyncio.sleep(0.01)
    assert conn.early == b"", "client bytes reached the apiserver before its 101"
    assert conn.upgraded == b"EARLY" + bulk
    assert conn.desyncs == []
    (record,) = endpoint.exchanges()
    assert record.upgrade_state is UpgradeState.ACCEPTED
    assert record.bytes_up == len(bulk) + 5
    await close(writer)
    await settle(backend)


async def test_last_bytes_arrive_before_the_close(
    endpoint: InspectEndpoint, backend: StrictBackend
) -> None:
    """The apiserver sends its final bytes (the WebSocket Close frame) and hangs up at
    once: kubectl must still get every byte, then the end."""
    close_frame = b"\x88\x02\x03\xe8"
    tail = os.urandom(300_000) + close_frame
    backend.reply_for = lambda _: Reply(SWITCH + tail, hangup=True)
    reader, writer = await open_client(endpoint)
    writer.write(UPGRADE.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    received = await asyncio.wait_for(reader.read(), 10)  # until EOF, never a reset
    assert received == tail
    await close(writer)
    await settle(backend)


async def test_upstream_down_is_a_503_status(
    tmp_path: Path, backend_pki: LoopbackPKI, inspect_state: Path
) -> None:
    endpoint = InspectEndpoint(
        "down",
        inspect_state,
        endpoint_token=ENDPOINT_TOKEN,
        connector=tcp_connector("127.0.0.1", 1),  # nothing listens on port 1
        upstream_tls=upstream_context(backend_pki.ca_pem),
        server_name="localhost",
        upstream_authorization=None,
    )
    async with endpoint:
        reader, writer = await open_client(endpoint)
        writer.write(UPGRADE.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()))
        answer = await asyncio.wait_for(reader.read(), 10)
        await close(writer)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b'"kind": "Status"' in answer and b'"code": 503' in answer


async def test_wrong_server_name_is_refused(
    endpoint: InspectEndpoint, backend: StrictBackend, backend_pki: LoopbackPKI
) -> None:
    endpoint.server_name = "not-the-apiserver.example"
    reader, writer = await open_client(endpoint)
    writer.write(UPGRADE.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()))
    answer = await asyncio.wait_for(reader.read(), 10)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert b"certificate" in answer
    await settle(backend)
    assert all(c.requests == [] for c in backend.conns)


async def test_through_a_tunnel_stream(
    inspect_state: Path, backend: StrictBackend, backend_pki: LoopbackPKI
) -> None:
    """The production connector: a mux stream with the preamble, TLS over it, upgrade."""
    pair = await connect_pair(MuxConfig(keepalive_interval=None))
    relayed: list[asyncio.Task[None]] = []

    async def agent() -> None:
        stream = await pair.server.accept()
        reader, writer = pair.server.stream_pair(stream)
        decoder = RequestDecoder()
        result = None
        while result is None:
            result = decoder.receive_data(await reader.read(1))
        request, _ = result
        assert request.cluster == "demo"
        writer.write(StreamStatus(Status.OK).encode())
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    relayed.append(asyncio.create_task(agent()))
    endpoint = InspectEndpoint(
        "demo",
        inspect_state,
        endpoint_token=ENDPOINT_TOKEN,
        connector=tunnel_connector(
            lambda: pair.client, StreamRequest("demo", EndpointKind.LOCAL, "127.0.0.1:1")
        ),
        upstream_tls=upstream_context(backend_pki.ca_pem),
        server_name="localhost",
        upstream_authorization="Bearer upstream",
    )
    backend.reply_for = lambda _: Reply(SWITCH + GLUED, upgrade=True)
    try:
        async with endpoint:
            reader, writer = await open_client(endpoint)
            writer.write(UPGRADE.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()))
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert await asyncio.wait_for(reader.readexactly(len(GLUED)), 5) == GLUED
            writer.write(b"after the switch")
            await writer.drain()
            async with asyncio.timeout(5):
                while not backend.conns or backend.conns[0].upgraded != b"after the switch":
                    await asyncio.sleep(0.01)
            (seen,) = backend.conns[0].requests
            assert seen.values("authorization") == ["Bearer upstream"]
            await close(writer)
            await asyncio.wait_for(relayed[0], 5)
    finally:
        for task in relayed:
            task.cancel()
        await asyncio.gather(*relayed, return_exceptions=True)
        await shutdown(pair)
