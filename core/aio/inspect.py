"""The inspect-mode local endpoint (L7): kubectl's TLS ends here, the apiserver's starts here.

Each accepted connection runs one sans-I/O ``HttpProxy`` between two transports: the
TLS connection from kubectl (certificate from Wicket's own CA in ``state_dir``) and a
TLS connection to the apiserver that this endpoint originates over whatever the
**connector** returns: a plain TCP connection (tests, ``tcp_connector``) or a tunnel
stream opened with the same mux + preamble as ``TunnelDialer`` (``tunnel_connector``).
Upstream TLS always verifies the cluster CA and server name and offers ALPN
``http/1.1`` only.

The same two protocol objects carry the connection from the first request head to the
last upgraded byte: there is no hand-over from a parser task to a splice, so nothing
(a timeout, a cancelled read) can strand bytes in between. Timeouts exist only for the
connect, the TLS handshakes and the wait for a request head; upgraded sessions, watches
and ``logs -f`` have none. Write buffers apply back-pressure both ways; an end on one
side is forwarded after every pending byte is written (``close()`` flushes, TLS cannot
half-close), so the final WebSocket Close frame always arrives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from core.aio.mux import MuxConnection
from core.aio.tunnel import StatusWaiter
from core.errors import MuxError, RemoteProtocolError, UpstreamUnavailable, WicketError
from core.format import host_port
from core.pki.ca import load_or_create_ca
from core.pki.certs import load_or_create_server_cert
from core.protocol.http_proxy import Exchange, HttpProxy, ProxyPolicy, ProxyState
from core.protocol.preamble import StreamRequest, os_error_words, refusal_words

log = logging.getLogger("wicket.inspect")

Connector = Callable[[], Awaitable[asyncio.Transport]]
"""Opens a raw byte transport to the apiserver (TLS is started over it here)."""

CONNECT_TIMEOUT = 15.0
HANDSHAKE_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


# -- connectors ----------------------------------------------------------------------


def tcp_connector(host: str, port: int) -> Connector:
    """A direct TCP connection to ``host:port`` (tests, or an apiserver reachable as is)."""

    async def connect() -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
        except OSError as exc:
            reason = os_error_words(str(exc))
            raise UpstreamUnavailable(
                f"could not reach the apiserver at {host_port(host, port)}: {reason}"
            ) from exc
        return transport

    return connect


def tunnel_connector(
    conn_for: Callable[[], MuxConnection | None],
    request: StreamRequest,
    timeout: float = CONNECT_TIMEOUT,
) -> Connector:
    """A tunnel stream to the cluster: the preamble request, then its status, as
    ``TunnelDialer`` does; a refusal becomes ``UpstreamUnavailable`` (a 503 for kubectl)."""

    async def connect() -> asyncio.Transport:
        conn = conn_for()
        if conn is None or conn.closed:
            raise UpstreamUnavailable("no session to the relay (is the relay reachable?)")
        try:
            stream = conn.open_stream(request.encode())
        except MuxError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        waiter = StatusWaiter()
        stream.attach(waiter)
        try:
            status, rest = await asyncio.wait_for(waiter.result, timeout)
            if not status.ok:
                raise UpstreamUnavailable(refusal_words(status))
            if rest:
                raise RemoteProtocolError("the agent sent bytes before the TLS handshake")
        except BaseException:
            stream.abort()
            raise
        stream.pause_reading()
        return stream

    return connect


# -- TLS -----------------------------------------------------------------------------


def upstream_context(
    cluster_ca_pem: bytes, *, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Verifies the cluster CA and (via ``server_hostname``) the name; ALPN http/1.1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=cluster_ca_pem.decode("ascii"))
    ctx.set_alpn_protocols(["http/1.1"])
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def endpoint_tls(state_dir: Path, now: dt.datetime) -> tuple[ssl.SSLContext, bytes]:
    """Server context and CA PEM for inspect endpoints (CA created once, key 0600).

    The CA is name-constrained to loopback, so having it in a kubeconfig vouches for
    nothing else.
    """
    ca = load_or_create_ca(state_dir, now, permitted_hosts=LOOPBACK_NAMES)
    chain, key = load_or_create_server_cert(state_dir, ca, list(LOOPBACK_NAMES), now)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(chain, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx, ca.cert_pem


# -- the endpoint --------------------------------------------------------------------


class InspectEndpoint:
    """A loopback listener terminating kubectl's TLS and proxying HTTP/1.1 to one cluster.

    ``exchanges()`` lists the inspection records, newest last (live ones update in place).
    """

    def __init__(
        self,
        cluster: str,
        state_dir: Path,
        *,
        endpoint_token: str,
        connector: Connector,
        upstream_tls: ssl.SSLContext,
        server_name: str,
        upstream_authorization: str | None,
        credential_is_callers_own: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 500,
        connect_timeout: float = CONNECT_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.cluster = cluster
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.connector = connector
        self.upstream_tls = upstream_tls
        self.server_name = server_name
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.ca_pem = b""
        self._token = endpoint_token
        self._upstream_authorization = upstream_authorization
        self._callers_own = credential_is_callers_own
        self._exchanges: deque[Exchange] = deque(maxlen=history)
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None
        self.policy: ProxyPolicy | None = None

    @property
    def url(self) -> str:
        return f"https://{host_port(self.host, self.port)}"

    async def start(self) -> None:
        now = dt.datetime.now(dt.UTC)
        context, self.ca_pem = await asyncio.to_thread(endpoint_tls, self.state_dir, now)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _ClientSide(self),
                self.host,
                self.port,
                ssl=context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                reuse_address=True,
            )
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        hosts = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost")}
        hosts |= {f"[::1]:{self.port}"}
        self.policy = ProxyPolicy(
            endpoint_token=self._token,
            allowed_hosts=frozenset(hosts),
            upstream_host=self.server_name,
            upstream_authorization=self._upstream_authorization,
            credential_is_callers_own=self._callers_own,
        )
        log.info("inspect endpoint for %s on %s", self.cluster, self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for _ in range(20):
            if not self._sessions:
                break
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> InspectEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def exchanges(self) -> list[Exchange]:
        return list(self._exchanges)

    def _recorded(self, exchange: Exchange) -> None:
        self._exchanges.append(exchange)


class _ClientSide(asyncio.Protocol):
    """kubectl's (TLS-terminated) connection."""

    def __init__(self, endpoint: InspectEndpoint) -> None:
        self.endpoint = endpoint
        self.session: _Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if len(self.endpoint._sessions) >= MAX_CONNECTIONS or self.endpoint.policy is None:
            transport.abort()
            return
        self.session = _Session(self.endpoint, transport)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.client_data(data)

    def eof_received(self) -> bool:
        if self.session is not None:
            self.session.client_data(b"")
        return False

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_upstream(True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.pause_upstream(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.lost("client", exc)


class _UpstreamSide(asyncio.Protocol):
    """The re-originated TLS connection to the apiserver."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session.upstream_data(data)

    def eof_received(self) -> bool:
        self.session.upstream_data(b"")
        return False

    def pause_writing(self) -> None:
        self.session.pause_client("upstream", True)

    def resume_writing(self) -> None:
        self.session.pause_client("upstream", False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.lost("upstream", exc)


class _Session:
    """Drives one ``HttpProxy`` between the client and the upstream transport."""

    def __init__(self, endpoint: InspectEndpoint, client: asyncio.Transport) -> None:
        assert endpoint.policy is not None
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.upstream: asyncio.Transport | None = None
        self.proxy = HttpProxy(
            endpoint.policy, now=self.loop.time(), on_exchange=endpoint._recorded
        )
        self._connecting: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused: set[str] = set()
        self._lost = {"client": False, "upstream": False}
        self._eof = {"client": False, "upstream": False}
        self._ended: set[str] = set()
        endpoint._sessions.add(self)
        self._step()

    # -- events --------------------------------------------------------------------

    def client_data(self, data: bytes) -> None:
        self.proxy.client_data_received(data, self.loop.time())
        self._step()

    def upstream_data(self, data: bytes) -> None:
        if not data:
            self._eof["upstream"] = True
        self.proxy.upstream_data_received(data, self.loop.time())
        self._step()

    def lost(self, side: str, exc: Exception | None) -> None:
        self._lost[side] = True
        if side == "upstream" and not self._eof["upstream"]:
            self.upstream_data(b"")  # an HTTP answer (502) if one is still owed
        reason = f"{side} lost: {exc}" if exc is not None else f"{side} closed"
        self.proxy.connection_lost(self.loop.time(), reason)
        self._step()

    def abort(self) -> None:
        self.proxy.connection_lost(self.loop.time(), "endpoint stopped")
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()
        self._cleanup()

    def pause_upstream(self, paused: bool) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            if paused:
                self.upstream.pause_reading()
            else:
                self.upstream.resume_reading()

    def pause_client(self, reason: str, paused: bool) -> None:
        if paused:
            self._paused.add(reason)
        else:
            self._paused.discard(reason)
        if self.client.is_closing():
            return
        if self._paused:
            self.client.pause_reading()
        else:
            self.client.resume_reading()

    # -- the one place that moves bytes --------------------------------------------

    def _step(self) -> None:
        proxy = self.proxy
        if proxy.wants_upstream and self._connecting is None:
            self._connecting = self.loop.create_task(self._connect())
        if out := proxy.client_data_to_send():
            _write(self.client, out)
        if self.upstream is not None and (out := proxy.upstream_data_to_send()):
            _write(self.upstream, out)
        if proxy.client_eof_to_send:
            self._end("client", self.client)
        if proxy.upstream_eof_to_send and self.upstream is not None:
            self._end("upstream", self.upstream)
        if proxy.state is ProxyState.CLOSED:
            self.client.close()  # close() writes what is buffered first
            if self.upstream is not None:
                self.upstream.close()
            if self._connecting is not None and not self._connecting.done():
                self._connecting.cancel()
            if self._lost["client"] and (self.upstream is None or self._lost["upstream"]):
                self._cleanup()
            return
        self.pause_client("backlog", not proxy.wants_client_data)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.proxy.get_timer()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self.loop.call_at(deadline, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        self.proxy.handle_timer(self.loop.time())
        self._step()

    def _end(self, side: str, transport: asyncio.Transport) -> None:
        """End our writing side after what is buffered: half-close if possible, else close."""
        if side in self._ended or transport.is_closing():
            return
        self._ended.add(side)
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.endpoint._sessions.discard(self)

    async def _connect(self) -> None:
        endpoint = self.endpoint
        side = _UpstreamSide(self)
        stage = "connect"
        started = self.loop.time()
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                raw = await endpoint.connector()
            stage, started = "tls", self.loop.time()
            try:
                tls = await self.loop.start_tls(
                    raw,
                    side,
                    endpoint.upstream_tls,
                    server_hostname=endpoint.server_name,
                    ssl_handshake_timeout=endpoint.handshake_timeout,
                )
            except BaseException:
                raw.abort()
                raise
            if tls is None:  # pragma: no cover - only for a transport closed meanwhile
                raise ConnectionAbortedError("the connection closed")
            alpn = tls.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn not in (None, "http/1.1"):
                tls.abort()
                raise RemoteProtocolError(f"the apiserver chose ALPN {alpn}, not http/1.1")
        except (OSError, TimeoutError, WicketError) as exc:
            elapsed = self.loop.time() - started
            code, message = upstream_failure(exc, stage, elapsed, endpoint)
            self._failed(message, code)
            return
        if self.proxy.state is ProxyState.CLOSED:
            tls.close()
            return
        self.upstream = tls
        side.connection_made(tls)
        self.proxy.upstream_connected()
        self._step()

    def _failed(self, message: str, code: int) -> None:
        log.info("inspect %s: %s", self.endpoint.cluster, message)
        self.proxy.upstream_failed(self.loop.time(), message, code=code)
        self._step()


def _write(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


# -- what a failed upstream connection tells the user ---------------------------------

_NOT_OUR_CA = "it is not signed by the CA you gave"
_VERIFY_WORDS = {
    2: _NOT_OUR_CA,
    7: _NOT_OUR_CA,  # a CA of the same name, another key
    10: "it has expired",
    18: "it is self-signed and not the CA you gave",
    19: _NOT_OUR_CA,
    20: _NOT_OUR_CA,
    21: _NOT_OUR_CA,
}
"""OpenSSL verify codes (``X509_V_ERR_*``) in words; the name mismatch is handled apart."""
_HOSTNAME_MISMATCH = 62


def upstream_failure(
    exc: BaseException, stage: str, elapsed: float, endpoint: InspectEndpoint
) -> tuple[int, str]:
    """The Status code and message for a failed upstream connection, in words a user can
    act on. ``stage`` is ``connect`` (the tunnel stream or TCP) or ``tls``; an abort of
    the TLS handshake after its whole budget is a timeout, whatever asyncio called it."""
    name = endpoint.server_name
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            why = f"it is not valid for the name {name}"
        else:
            why = _VERIFY_WORDS.get(exc.verify_code, exc.verify_message)
        return 502, f"the apiserver's certificate was rejected: {why}"
    if isinstance(exc, ssl.SSLError):
        return 502, f"the TLS handshake with the apiserver ({name}) failed: {exc.reason or exc}"
    if isinstance(exc, UpstreamUnavailable):
        return 503, str(exc)
    if stage == "connect":
        if isinstance(exc, TimeoutError):
            budget = endpoint.connect_timeout
            return 504, f"no connection to the apiserver within {budget:g} s (timeout)"
        return 502, f"the connection to the apiserver failed: {exc}"
    if isinstance(exc, TimeoutError) or elapsed >= endpoint.handshake_timeout:
        budget = endpoint.handshake_timeout
        return 504, f"the TLS handshake with the apiserver ({name}) timed out after {budget:g} s"
    if isinstance(exc, OSError):
        reason = os_error_words(str(exc)) or type(exc).__name__
        return 502, f"the apiserver's connection ended during the TLS handshake: {reason}"
    return 502, f"the apiserver's answer broke the protocol: {exc}"
