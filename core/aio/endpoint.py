"""The desktop side: a client session to the relay and local endpoints for kubectl.

Each local endpoint listens on loopback (a port conflict is an error, never a silent
move); every accepted connection becomes a tunnel stream. With no session to the relay,
or the cluster's agent offline, a new connection is ended at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from core.aio.mux import MuxConnection
from core.aio.peer import RelayPeer
from core.aio.tunnel import StreamBook, StreamInfo, TunnelDialer
from core.errors import ConfigError
from core.pki.identity import Role
from core.protocol.preamble import EndpointKind, StreamRequest, StreamStatus

log = logging.getLogger("wicket.endpoint")


class RelayClient(RelayPeer):
    """A desktop client's session to the relay (shared by all its local endpoints)."""

    role = Role.CLIENT


@dataclass(frozen=True)
class EndpointSnapshot:
    cluster: str
    address: str
    mode: str
    session: str
    rtt: float | None
    last_refusal: str | None
    streams: list[StreamInfo]


class LocalEndpoint:
    """A loopback listener for one cluster, tunnelling through a ``RelayClient``."""

    def __init__(self, client: RelayClient, cluster: str, host: str = "127.0.0.1", port: int = 0):
        self.client = client
        self.cluster = cluster
        self.host = host
        self.port = port
        self.book = StreamBook()
        self.last_refusal: str | None = None
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._dialer, self.host, self.port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.address}: {exc.strerror or exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("local endpoint for %s on %s", self.cluster, self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for record in list(self.book.open.values()):
            if record.splice is not None:
                record.splice.close()

    def snapshot(self) -> EndpointSnapshot:
        return EndpointSnapshot(
            self.cluster,
            self.address,
            "passthrough",
            self.client.state,
            self.client.rtt,
            self.last_refusal,
            self.book.snapshot(),
        )

    def _conn(self) -> MuxConnection | None:
        return self.client.conn

    def _request(self, tcp: asyncio.Transport) -> StreamRequest:
        peer = tcp.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else ""
        return StreamRequest(self.cluster, EndpointKind.LOCAL, client)

    def _refused(self, status: StreamStatus) -> None:
        self.last_refusal = f"{status.status.name.lower()}: {status.message}"

    def _dialer(self) -> TunnelDialer:
        return TunnelDialer(self._conn, self._request, self.book, self._refused)
