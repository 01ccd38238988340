"""The relay's public endpoints: plain TCP to a cluster's apiserver, within limits.

A public endpoint forwards bytes; the apiserver behind it does the authentication
(docs/security.md). What the relay adds is the bound on what an anonymous peer can
hold: sources outside ``allow`` are closed at once, connections are limited per source
address and in total (below the agent session's stream limit, so a flood can never
take every stream of a cluster), and a connection that sends nothing within
``idle_timeout`` is closed. Listeners follow the registry: a cluster that is removed,
or loses or changes its public port, stops being served (``sync``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from core.aio.mux import MuxConnection
from core.aio.quota import QuietLog, Quota
from core.aio.tunnel import StreamBook, TunnelDialer
from core.format import host_port, peer_address
from core.protocol.preamble import EndpointKind, StreamRequest
from core.registry.store import ClusterRecord

log = logging.getLogger("wicket.relay")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PublicLimits:
    #: Source networks admitted (empty: every source).
    allow: tuple[Network, ...] = ()
    per_source: int = 64
    total: int = 1024
    #: A connection that has sent nothing after this many seconds is closed.
    idle_timeout: float = 10.0

    def allows(self, source: str) -> bool:
        if not self.allow:
            return True
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in network for network in self.allow)


class PublicEndpoints:
    """Every cluster's public listener, and the limits their connections share."""

    def __init__(
        self,
        host: str | None,
        limits: PublicLimits,
        *,
        conn_for: Callable[[str], MuxConnection | None],
        book: StreamBook,
        refused: Counter[str],
        quiet: QuietLog,
    ) -> None:
        self.host = host
        self.limits = limits
        self.quota = Quota(limits.per_source, limits.total)
        self._conn_for = conn_for
        self.book = book
        self._refused = refused
        self._quiet = quiet
        self._servers: dict[str, asyncio.Server] = {}

    def address(self, record: ClusterRecord | None) -> str | None:
        if record is None or record.public_port is None or self.host is None:
            return None
        return host_port(self.host, record.public_port)

    async def sync(self, clusters: dict[str, ClusterRecord]) -> None:
        """Listen for every cluster with a public port; close the listeners of the rest."""
        if self.host is None:
            return
        for name, server in list(self._servers.items()):
            record = clusters.get(name)
            if record is None or record.public_port != _port(server):
                del self._servers[name]
                server.close()
                log.info("public endpoint for %s closed (%s)", name, _why(record))
        for record in clusters.values():
            if record.public_port is not None and record.name not in self._servers:
                await self._listen(record.name, record.public_port)

    async def _listen(self, name: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._servers[name] = await loop.create_server(
                lambda: _PublicConnection(self, name), self.host, port, reuse_address=True
            )
        except OSError as exc:
            log.error("public endpoint %s:%s for %s: %s", self.host, port, name, exc)
            return
        log.info("public endpoint for %s on %s:%s", name, self.host, port)

    async def close(self) -> None:
        servers = list(self._servers.values())
        self._servers.clear()
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    def admit(self, source: str, cluster: str) -> bool:
        """Take a connection slot for ``source``; False (counted, logged quietly) if not."""
        if not self.limits.allows(source):
            self.refuse("public_not_allowed", source, cluster, "outside --public-allow")
            return False
        if not self.quota.take(source):
            own = self.quota.held(source) >= self.limits.per_source
            what = "public_source_quota" if own else "public_quota"
            limit = self.limits.per_source if own else self.limits.total
            self.refuse(what, source, cluster, f"already {limit} public connections")
            return False
        return True

    def refuse(self, what: str, source: str, cluster: str, why: str) -> None:
        """Count a refused connection; log it once per source per interval."""
        self._refused[what] += 1
        message = "refused public connection from %s to %s: %s"
        self._quiet.warning(what, source, time.monotonic(), message, source, cluster, why)

    def conn_for(self, cluster: str) -> MuxConnection | None:
        return self._conn_for(cluster)


class _PublicConnection(TunnelDialer):
    """One accepted public connection: admitted or closed at once, then tunnelled."""

    def __init__(self, endpoints: PublicEndpoints, cluster: str) -> None:
        super().__init__(self._session, self._stream_request, endpoints.book)
        self._endpoints = endpoints
        self._cluster = cluster
        self._peer: object = None
        self._idle: asyncio.TimerHandle | None = None

    def _session(self) -> MuxConnection | None:
        return self._endpoints.conn_for(self._cluster)

    def _stream_request(self, tcp: asyncio.Transport) -> StreamRequest:
        return StreamRequest(self._cluster, EndpointKind.PUBLIC, peer_address(self._peer))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)
        peer = self._peer = tcp.get_extra_info("peername")  # once: uvloop formats it anew
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._endpoints.admit(source, self._cluster):
            tcp.abort()
            return
        super().connection_made(tcp)
        record = self._record
        assert record is not None
        timeout = self._endpoints.limits.idle_timeout
        self._idle = asyncio.get_running_loop().call_later(timeout, self._check_idle, tcp, source)

        def closed() -> None:
            self._endpoints.quota.release(source)
            if self._idle is not None:
                self._idle.cancel()

        if record.closed_at is None:
            record.on_close = closed
        else:  # refused at once (no agent): the slot is free again
            closed()

    def _check_idle(self, tcp: asyncio.Transport, source: str) -> None:
        """Close the connection if it has sent nothing yet (a splice may hold it by now)."""
        self._idle = None
        record = self._record
        if record is not None and record.closed_at is None and not record.info().bytes_up:
            why = f"nothing sent in {self._endpoints.limits.idle_timeout:g} s"
            self._endpoints.refuse("public_idle", source, self._cluster, why)
            tcp.abort()


def _port(server: asyncio.Server) -> int | None:
    sockets = cast(Any, server).sockets  # a list on uvloop, a tuple on asyncio
    return int(sockets[0].getsockname()[1]) if sockets else None


def _why(record: ClusterRecord | None) -> str:
    if record is None:
        return "the cluster was removed"
    return "no public port" if record.public_port is None else "its public port changed"
