"""The desktop side: a client session to the relay and local endpoints for kubectl.

Each local endpoint listens on loopback (a port conflict is an error, never a silent
move). It runs in one of two modes:

* ``passthrough`` (the default): every accepted connection becomes a tunnel stream,
  kubectl's TLS runs end to end to the apiserver. A connection accepted while the
  session to the relay is down while it was on a relay fleet member (it reconnects
  through the shared address and lands on another member within a second) waits for it
  up to ``SESSION_WAIT`` seconds, its first bytes kept (up to ``HELD_BYTES``; kubectl
  does not retry a refused connection). A relay on its own has no other member to take
  over: there, as with a session refused by the relay (a revoked identity) or the
  cluster's agent offline, the connection is ended at once instead of hanging.
* ``inspect``: an ``InspectEndpoint`` (``core.aio.inspect``, docs/inspect.md) ends
  kubectl's TLS with Wicket's CA and opens a new TLS connection to the apiserver over a
  tunnel stream per kubectl connection. Every request becomes an ``InspectedStream`` in
  the snapshot (method, path, status, upgrade and what was decoded). With the cluster
  unreachable kubectl gets a 502/503 ``Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypedDict

from core.aio.inspect import Connector, InspectEndpoint, tunnel_connector, upstream_context
from core.aio.inspected import InspectedStream, inspected_stream
from core.aio.mux import MuxConnection
from core.aio.peer import RelayPeer
from core.aio.tunnel import StreamBook, StreamInfo, TunnelDialer
from core.errors import ConfigError, UpstreamUnavailable
from core.format import host_port
from core.mode import Mode, mode_of
from core.pki.identity import Role
from core.protocol.preamble import INSPECT_CLIENT, EndpointKind, StreamRequest, StreamStatus

log = logging.getLogger("wicket.endpoint")

#: How long a new local connection waits for the relay session to come back.
SESSION_WAIT = 10.0
#: What a held connection may send before its reading is paused.
HELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClientSnapshot:
    name: str | None
    relay: str | None
    state: str
    last_error: str | None
    rtt: float | None
    connected_since: float | None
    reconnects: int
    #: The relay fleet member the session is on (None: offline, or a relay on its own).
    member: str | None = None


class RelayClient(RelayPeer):
    """A desktop client's session to the relay (shared by all its local endpoints)."""

    role: ClassVar[Role] = Role.CLIENT

    def snapshot(self) -> ClientSnapshot:
        creds = self.creds
        return ClientSnapshot(
            creds.identity.name if creds else None,
            creds.relay if creds else None,
            self.state,
            self.last_error,
            self.rtt,
            self.connected_since,
            self.reconnects,
            self.member,
        )


@dataclass(frozen=True)
class InspectSettings:
    """What an inspect endpoint needs besides its listener.

    ``state_dir`` keeps Wicket's CA and the endpoint's server pair (the CA goes into
    the kubeconfig); ``endpoint_token`` is the per-endpoint bearer credential kubectl
    presents; ``cluster_ca_pem`` and ``server_name`` verify the apiserver;
    ``upstream_authorization`` (``"Bearer …"``, or None for none) is what the apiserver
    gets instead. ``credential_is_callers_own`` lets kubectl's ``--as`` through.
    """

    state_dir: Path
    endpoint_token: str
    cluster_ca_pem: bytes
    server_name: str
    upstream_authorization: str | None
    credential_is_callers_own: bool = False

    def __repr__(self) -> str:  # never the credentials
        return (
            f"InspectSettings(state_dir={str(self.state_dir)!r}, server_name={self.server_name!r})"
        )


class EndpointOptions(TypedDict, total=False):
    """``LocalEndpoint``'s options, for callers that pass them through (the service)."""

    host: str
    port: int
    mode: Mode | str
    inspect: InspectSettings | None


@dataclass(frozen=True)
class EndpointSnapshot:
    cluster: str
    address: str
    mode: str
    session: str
    rtt: float | None
    last_refusal: str | None
    streams: list[StreamInfo]
    """Tunnel streams (passthrough), or one ``InspectedStream`` per request (inspect)."""
    #: The relay address its client session dials, and the fleet member it is on.
    relay: str | None = None
    member: str | None = None


class LocalEndpoint:
    """A loopback listener for one cluster, tunnelling through a ``RelayClient``.

    ``mode="inspect"`` needs ``inspect`` settings; ``url`` and ``ca_pem`` (Wicket's CA,
    after ``start()``) are then what a kubeconfig needs.
    """

    def __init__(
        self,
        client: RelayClient,
        cluster: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: Mode | str = Mode.PASSTHROUGH,
        inspect: InspectSettings | None = None,
    ) -> None:
        mode = mode_of(mode)
        if mode is Mode.INSPECT and inspect is None:
            raise ConfigError("an inspect endpoint needs its settings")
        self.client = client
        self.cluster = cluster
        self.host = host
        self.port = port
        self.mode = mode
        self.book = StreamBook()
        self.last_refusal: str | None = None
        self._server: asyncio.Server | None = None
        self.inspector: InspectEndpoint | None = None
        if mode is Mode.INSPECT:
            assert inspect is not None
            self.inspector = InspectEndpoint(
                cluster,
                inspect.state_dir,
                endpoint_token=inspect.endpoint_token,
                connector=self._inspect_connector(),
                upstream_tls=upstream_context(inspect.cluster_ca_pem),
                server_name=inspect.server_name,
                upstream_authorization=inspect.upstream_authorization,
                credential_is_callers_own=inspect.credential_is_callers_own,
                host=host,
                port=port,
            )
        self._frozen: dict[int, InspectedStream] = {}

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def ca_pem(self) -> bytes:
        """Wicket's CA for an inspect endpoint (empty in passthrough, or before start)."""
        return self.inspector.ca_pem if self.inspector is not None else b""

    async def start(self) -> None:
        if self.inspector is not None:
            try:
                await self.inspector.start()
            except UpstreamUnavailable as exc:  # the listener: a port conflict
                raise ConfigError(str(exc)) from exc
            self.port = self.inspector.port
            log.info("local inspect endpoint for %s on %s", self.cluster, self.address)
            return
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
        if self.inspector is not None:
            await self.inspector.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for record in list(self.book.open.values()):
            if record.splice is not None:
                record.splice.close()

    def snapshot(self) -> EndpointSnapshot:
        streams = self.book.snapshot() if self.inspector is None else self._inspected()
        return EndpointSnapshot(
            self.cluster,
            self.address,
            self.mode,
            self.client.state,
            self.client.rtt,
            self.last_refusal,
            streams,
            self.client.creds.relay if self.client.creds is not None else None,
            self.client.member,
        )

    def _inspected(self) -> list[StreamInfo]:
        """The inspector's records as frozen streams (finished ones are frozen once)."""
        assert self.inspector is not None
        exchanges = self.inspector.exchanges()
        offset = time.time() - time.monotonic()  # the event loop's clock is monotonic()
        frozen, kept = self._frozen, {}
        out: list[StreamInfo] = []
        for exchange in exchanges:
            info = frozen.get(exchange.id)
            if info is None:
                info = inspected_stream(exchange, self.cluster, offset)
                if exchange.ended is not None:
                    kept[exchange.id] = info
            else:
                kept[exchange.id] = info
            out.append(info)
        self._frozen = kept
        return out

    def _inspect_connector(self) -> Connector:
        """A tunnel stream per kubectl connection; a refusal is remembered like
        passthrough's (and answered with a 503 by the inspector)."""
        request = StreamRequest(self.cluster, EndpointKind.LOCAL, INSPECT_CLIENT)
        connect = tunnel_connector(self._conn, request)

        async def connector() -> asyncio.Transport:
            try:
                return await connect()
            except UpstreamUnavailable as exc:
                if self.client.state == "online":
                    self.last_refusal = str(exc)
                raise

        return connector

    def _conn(self) -> MuxConnection | None:
        return self.client.conn

    def _request(self, tcp: asyncio.Transport) -> StreamRequest:
        peer = tcp.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else ""
        return StreamRequest(self.cluster, EndpointKind.LOCAL, client)

    def _refused(self, status: StreamStatus) -> None:
        self.last_refusal = f"{status.status.name.lower()}: {status.message}"

    def _dialer(self) -> asyncio.Protocol:
        dialer = TunnelDialer(self._conn, self._request, self.book, self._refused)
        if self._conn() is not None or self.client.refused or not self.client.in_fleet:
            return dialer
        return _SessionWait(dialer, self.client.wait_online, SESSION_WAIT)


class _SessionWait(asyncio.Protocol):
    """Holds an accepted connection (and what it sends) until the relay session is up
    again, then hands it to its ``TunnelDialer`` as if it had just been accepted."""

    def __init__(
        self,
        dialer: TunnelDialer,
        wait_online: Callable[[float], Awaitable[None]],
        timeout: float,
    ) -> None:
        self._dialer = dialer
        self._wait_online = wait_online
        self._timeout = timeout
        self._data: list[bytes] = []
        self._eof = False
        self._lost = False
        self._held = 0
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._task = asyncio.get_running_loop().create_task(self._wait(transport))

    def data_received(self, data: bytes) -> None:
        self._data.append(data)
        self._held += len(data)
        if self._held >= HELD_BYTES and self._transport is not None:
            self._transport.pause_reading()  # bounded: the rest waits in the kernel

    def eof_received(self) -> bool:
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._task is not None:
            self._task.cancel()

    async def _wait(self, transport: asyncio.BaseTransport) -> None:
        with contextlib.suppress(TimeoutError):  # then the dialer ends it: still down
            await self._wait_online(self._timeout)
        if self._lost:
            return
        dialer = self._dialer
        transport.set_protocol(dialer)
        dialer.connection_made(transport)
        for data in self._data:
            dialer.data_received(data)
        if self._held >= HELD_BYTES and isinstance(transport, asyncio.Transport):
            transport.resume_reading()
        if self._eof and not dialer.eof_received():
            transport.close()
