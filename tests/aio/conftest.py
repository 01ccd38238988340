"""Loopback mux session pairs, plain TCP or TLS, with leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.aio.mux import MuxConnection, StreamHandler
from core.protocol.mux import MuxConfig
from tests.support.certs import LoopbackPKI, make_pki
from tests.support.leaks import no_leaks


@dataclass
class MuxPair:
    client: MuxConnection
    server: MuxConnection
    server_transport: asyncio.Transport
    close: Callable[[], object]


async def connect_pair(
    config: MuxConfig | None = None,
    server_config: MuxConfig | None = None,
    handler: StreamHandler | None = None,
    pki: LoopbackPKI | None = None,
) -> MuxPair:
    loop = asyncio.get_running_loop()
    made: asyncio.Future[MuxConnection] = loop.create_future()

    def factory() -> MuxConnection:
        conn = MuxConnection(False, server_config or config, stream_handler=handler)
        if not made.done():
            made.set_result(conn)
        return conn

    server = await loop.create_server(
        factory, "127.0.0.1", 0, ssl=pki.server_context() if pki else None
    )
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(
        lambda: MuxConnection(True, config),
        "127.0.0.1",
        port,
        ssl=pki.client_context() if pki else None,
        server_hostname="localhost" if pki else None,
    )
    server_conn = await made
    await server_conn.made
    assert server_conn._transport is not None

    def close() -> None:
        server.close()

    return MuxPair(client, server_conn, server_conn._transport, close)


@pytest.fixture
async def pair() -> AsyncIterator[MuxPair]:
    p = await connect_pair(MuxConfig(keepalive_interval=None))
    yield p
    await shutdown(p)


async def shutdown(p: MuxPair) -> None:
    p.client.abort()
    p.server.abort()
    await p.client.wait_closed()
    await p.server.wait_closed()
    p.close()
    await asyncio.sleep(0)


@pytest.fixture
def pki(tmp_path: Path) -> LoopbackPKI:
    return make_pki(tmp_path / "pki")


__all__ = ["no_leaks"]
