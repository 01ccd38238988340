"""The inspect-mode HTTP/1.1 proxy core, without I/O (spec: docs/inspect.md).

One ``HttpProxy`` serves one kubectl connection: an h11 server connection faces kubectl,
an h11 client connection faces the apiserver. Requests are checked (endpoint credential,
``Host``, no browser ``Origin``, origin-form target, no CL+TE, no bare LF or obs-fold),
their headers filtered (hop-by-hop and ``Connection``-nominated names, identity headers,
``Authorization`` replaced by the stored upstream credential, ``Upgrade: h2c``) and
re-serialised canonically by h11. ``Impersonate-*`` is refused with a 403 ``Status``
unless the injected credential is the caller's own: dropping it silently would run
``kubectl --as`` as the endpoint's identity. Responses are filtered the same way and streamed as
they arrive.

An upgrade (a ``Connection`` token ``upgrade`` plus one ``Upgrade`` protocol) switches
to raw bytes **only** on a 101 whose ``Upgrade`` matches the request; until then the
client's early bytes stay in h11's buffer. Any other answer is relayed and the
connection then closed (CVE-2018-1002105); redirects are relayed, never followed. An
upstream failure is answered with a ``Status`` JSON (502/503), never a bare close.

Inputs: ``client_data_received`` / ``upstream_data_received`` (``b""`` is EOF),
``upstream_connected``, ``upstream_failed``, ``handle_timer``. Outputs:
``client_data_to_send`` / ``upstream_data_to_send``, ``wants_upstream``, the
``*_eof_to_send`` flags and ``state``. Each request becomes an ``Exchange`` record,
updated in place (and handed to ``on_exchange`` when it starts). It keeps the request's
headers as kubectl sent them and the response's as the apiserver sent them (or ours, for
a ``Status`` answered here), credentials redacted and bounded
(``core.protocol.redaction``): work once per head, never per byte.
"""

from __future__ import annotations

import enum
import hmac
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import h11
from h11._state import MIGHT_SWITCH_PROTOCOL  # public in h11, missing from __all__

from core.protocol.inspect_decoders import PassiveDecoder, SessionDetail, decoder_for
from core.protocol.k8s_channels import status_failure
from core.protocol.redaction import NO_HEADERS, RecordedHeaders, record_headers

__all__ = [
    "HOP_BY_HOP",
    "Exchange",
    "HttpProxy",
    "ProxyPolicy",
    "ProxyState",
    "UpgradeState",
    "connection_tokens",
    "filter_hop_by_hop",
    "is_identity_header",
]

MAX_HEAD = 32 * 1024
"""Largest request or response head accepted (h11 answers 431 above it)."""
HEAD_TIMEOUT = 10.0
"""Seconds a new connection may take to send its first request head."""
IDLE_TIMEOUT = 300.0
"""Seconds a kept-alive connection may sit idle between requests."""
MAX_HELD = 256 * 1024
"""Client bytes held while a response is awaited before reading is paused."""

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    }
)
_NEVER_NOMINATED = ("sec-websocket-", "x-stream-protocol-version")
"""End-to-end headers a ``Connection`` header cannot make us drop (kubectl needs them)."""
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_HEAD_END = re.compile(rb"\n\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_OBS_FOLD = re.compile(rb"\n[ \t]")
_TARGET = re.compile(rb"/(?!/)[\x21-\x7e]*")
_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"})
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ids = itertools.count(1)
IMPERSONATION_REFUSED = (
    "impersonation is not allowed through this Wicket endpoint: it authenticates to the "
    "apiserver as its own upstream identity, so the request would not run as the user you "
    "asked for. If the credential Wicket injects is your own, allow impersonation with "
    "`wicket connect --credential-is-callers-own`; otherwise drop --as/--as-group"
)
"""The 403 ``Status`` message for ``Impersonate-*`` headers (kubectl ``--as``)."""
_GATEWAY_REASONS = {503: "ServiceUnavailable", 504: "Timeout"}
"""Kubernetes ``Status`` reasons for upstream failures (kubectl names them)."""


class ProxyState(enum.Enum):
    HTTP = "http"
    """Requests and responses are parsed and re-serialised."""
    UPGRADED = "upgraded"
    """After a matching 101: bytes pass untouched (and are decoded passively)."""
    CLOSED = "closed"
    """Flush what is pending, then close both sides."""


class UpgradeState(enum.Enum):
    NONE = "none"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True)
class ProxyPolicy:
    """What one inspect endpoint accepts and what it sends upstream.

    ``endpoint_token`` is the bearer credential kubectl must present;
    ``upstream_authorization`` (e.g. ``"Bearer …"``) replaces it upstream (None sends
    none). ``credential_is_callers_own`` lets the caller's ``Impersonate-*`` through.
    ``allowed_hosts`` are the ``Host`` values accepted (lowercase, with port).
    """

    endpoint_token: str
    allowed_hosts: frozenset[str]
    upstream_host: str
    upstream_authorization: str | None = None
    credential_is_callers_own: bool = False


@dataclass
class Exchange:
    """One request through the endpoint, as the stream view shows it (updated in place)."""

    id: int
    started: float
    method: str = ""
    target: str = ""
    status: int | None = None
    kubectl_command: str | None = None
    upgrade: str | None = None
    """The protocol kubectl asked to switch to (``websocket``, ``SPDY/3.1``)."""
    offered: tuple[str, ...] = ()
    """Subprotocols offered (``Sec-WebSocket-Protocol`` / ``X-Stream-Protocol-Version``)."""
    upgrade_state: UpgradeState = UpgradeState.NONE
    subprotocol: str | None = None
    """The subprotocol the 101 chose."""
    bytes_up: int = 0
    bytes_down: int = 0
    ended: float | None = None
    error: str | None = None
    detail: SessionDetail = field(default_factory=SessionDetail)
    request_headers: RecordedHeaders = NO_HEADERS
    """The request head's headers as kubectl sent them (redacted, bounded)."""
    response_headers: RecordedHeaders = NO_HEADERS
    """The final (or 101) response's headers as the apiserver sent them, or as this proxy
    answered (redacted, bounded)."""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


class _Reject(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every token of every ``Connection`` header, lowercased, empty elements dropped."""
    tokens = []
    for name, value in headers:
        if name.lower() == b"connection":
            for token in value.decode("latin-1").split(","):
                if token := token.strip().lower():
                    tokens.append(token)
    return tokens


def filter_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Drop the fixed hop-by-hop set and every name a ``Connection`` header lists.

    Order and repeated lines are kept. ``Sec-WebSocket-*`` and
    ``X-Stream-Protocol-Version`` survive a nomination (kubectl's handshake needs them).
    """
    listed = list(headers)
    nominated = {t for t in connection_tokens(listed) if not t.startswith(_NEVER_NOMINATED)}
    drop = HOP_BY_HOP | nominated
    return [(n, v) for n, v in listed if n.decode("latin-1").lower() not in drop]


def is_identity_header(name: str, *, callers_own: bool) -> bool:
    """Headers that claim an identity the apiserver would trust from an authenticated proxy.

    ``X-Remote-*`` and every underscore spelling always count; ``Impersonate-*`` counts
    unless the injected credential is the caller's own (kubectl ``--as``).
    """
    lowered = name.lower()
    normal = lowered.replace("_", "-")
    if normal.startswith("x-remote-"):
        return True
    if normal.startswith("impersonate-"):
        return "_" in lowered or not callers_own
    return False


def _impersonates(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True if an ``Impersonate-*`` header (any spelling) survives hop-by-hop filtering:
    refused rather than dropped, or kubectl ``--as`` would run as the endpoint's identity."""
    return any(
        name.decode("latin-1").lower().replace("_", "-").startswith("impersonate-")
        for name, _ in filter_hop_by_hop(headers)
    )


def _joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for n, v in headers if n == name]


def _offered(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> tuple[str, ...]:
    return tuple(
        p.strip() for value in _values(headers, name) for p in value.split(",") if p.strip()
    )


class HttpProxy:
    """One kubectl connection's proxy state machine (see the module docstring)."""

    def __init__(
        self,
        policy: ProxyPolicy,
        *,
        now: float = 0.0,
        on_exchange: Callable[[Exchange], None] | None = None,
        max_head: int = MAX_HEAD,
        head_timeout: float = HEAD_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._policy = policy
        self._client = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self._on_exchange = on_exchange
        self._max_head = max_head
        # Outgoing bytes as the chunks they came in (an upgraded chunk is passed on
        # without a copy when it is the only one waiting).
        self._to_client: list[bytes] = []
        self._to_upstream: list[bytes] = []
        self.state = ProxyState.HTTP
        self.exchanges: list[Exchange] = []
        self._current: Exchange | None = None
        self._upgrade: str | None = None
        self._decoder: PassiveDecoder | None = None
        self._response_started = False
        self._close_after_response = False
        self._upstream_wanted = False
        self._upstream_ready = False
        self._held = 0
        self._idle_timeout = idle_timeout
        self._deadline: float | None = now + head_timeout
        self.client_eof_to_send = False
        """Upgraded: the apiserver ended its side; end the client's side after flushing."""
        self.upstream_eof_to_send = False
        """Upgraded: kubectl ended its side; end the apiserver's side after flushing."""
        self.close_reason: str | None = None

    # -- outputs -------------------------------------------------------------------

    def client_data_to_send(self) -> bytes:
        data = _joined(self._to_client)
        self._to_client.clear()
        return data

    def upstream_data_to_send(self) -> bytes:
        if not self._upstream_ready:
            return b""
        data = _joined(self._to_upstream)
        self._to_upstream.clear()
        return data

    @property
    def wants_upstream(self) -> bool:
        """True once a request needs the apiserver and no connection was made yet."""
        ready = self._upstream_ready or self.state is ProxyState.CLOSED
        return self._upstream_wanted and not ready

    @property
    def wants_client_data(self) -> bool:
        """False while too many client bytes wait for a response (pause reading)."""
        return self.state is ProxyState.UPGRADED or self._held < MAX_HELD

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next: only while waiting for a request head."""
        return self._deadline if self.state is ProxyState.HTTP else None

    # -- inputs --------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline or self.state is not ProxyState.HTTP:
            return
        self._deadline = None
        if self._client.trailing_data[0]:
            self._respond_locally(now, 408, "request head not received in time", "Timeout")
        else:
            self._close(now, "idle")

    def upstream_connected(self) -> None:
        self._upstream_ready = True

    def upstream_failed(self, now: float, message: str, *, code: int = 503) -> None:
        """The apiserver could not be reached: answer a Status (502/503/504), then close."""
        self._upstream_ready = False
        self._to_upstream.clear()
        self._bad_gateway(now, message, code)

    def client_data_received(self, data: bytes, now: float) -> None:
        if self.state is ProxyState.CLOSED:
            return
        if self.state is ProxyState.UPGRADED:
            self._raw(data, now, from_client=True)
            return
        if self._current is not None and self._client.their_state is not h11.SEND_BODY:
            self._held += len(data)
        self._client.receive_data(data)
        self._pump_client(now)

    def upstream_data_received(self, data: bytes, now: float) -> None:
        if self.state is ProxyState.CLOSED:
            return
        if self.state is ProxyState.UPGRADED:
            self._raw(data, now, from_client=False)
            return
        self._upstream.receive_data(data)
        self._pump_upstream(now)

    def connection_lost(self, now: float, reason: str | None = None) -> None:
        """A transport is gone: finish every open record."""
        self._close(now, reason or "closed")

    # -- client side (HTTP) --------------------------------------------------------

    def _pump_client(self, now: float) -> None:
        while self.state is ProxyState.HTTP:
            try:
                if self._client.their_state is h11.IDLE:
                    self._check_head(self._client.trailing_data[0])
                event = self._client.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self._deadline = None
                    self._request(event, now)
                elif isinstance(event, h11.Data):
                    self._send_upstream(h11.Data(data=bytes(event.data)))
                elif isinstance(event, h11.EndOfMessage):
                    self._send_upstream(h11.EndOfMessage())
                else:  # ConnectionClosed
                    self._close(now, "client closed")
            except h11.RemoteProtocolError as exc:
                self._respond_locally(now, exc.error_status_hint, str(exc), "BadRequest")
            except _Reject as exc:
                self._respond_locally(now, exc.code, exc.message, exc.reason)

    def _check_head(self, buffered: bytes) -> None:
        """Bare LF, obs-fold and oversize heads (h11 only bounds *incomplete* heads) are
        refused before h11 parses."""
        end = _HEAD_END.search(buffered)
        head = buffered if end is None else buffered[: end.end()]
        if len(head) > self._max_head:
            raise _Reject(431, "request head too large", "RequestHeaderFieldsTooLarge")
        if _BARE_LF.search(head):
            raise _Reject(400, "bare LF in request head")
        if _OBS_FOLD.search(head):
            raise _Reject(400, "obsolete line folding in request head")

    def _request(self, event: h11.Request, now: float) -> None:
        exchange = Exchange(next(_ids), now)
        exchange.method = event.method.decode("latin-1")
        exchange.target = event.target.decode("latin-1")
        headers = list(event.headers)
        exchange.request_headers = record_headers(event.headers.raw_items())
        command = _values(headers, b"kubectl-command")
        exchange.kubectl_command = command[0] if command else None
        self._current = exchange
        self._held = 0
        self._response_started = False
        self.exchanges.append(exchange)
        if self._on_exchange is not None:
            self._on_exchange(exchange)
        self._upgrade = None
        self._check_request(event, headers)
        self._upgrade = self._upgrade_of(headers)
        if self._upgrade is not None:
            exchange.upgrade = self._upgrade
            exchange.upgrade_state = UpgradeState.REQUESTED
            exchange.offered = _offered(headers, b"sec-websocket-protocol") or _offered(
                headers, b"x-stream-protocol-version"
            )
        upstream = h11.Request(
            method=event.method, target=event.target, headers=self._upstream_headers(headers)
        )
        self._upstream_wanted = True
        self._send_upstream(upstream)

    def _check_request(self, event: h11.Request, headers: list[tuple[bytes, bytes]]) -> None:
        policy = self._policy
        if event.http_version != b"1.1":
            raise _Reject(505, "only HTTP/1.1 is spoken here")
        if event.method not in _METHODS:
            raise _Reject(405, "method not supported", "MethodNotAllowed")
        if not _TARGET.fullmatch(event.target):
            raise _Reject(400, "only origin-form request targets are accepted")
        if any(_CTL.search(value) for _, value in headers):
            raise _Reject(400, "control character in a header value")
        names = {n for n, _ in headers}
        if {b"content-length", b"transfer-encoding"} <= names:
            raise _Reject(400, "both Content-Length and Transfer-Encoding")
        if _FRAMING & set(connection_tokens(headers)):
            raise _Reject(400, "Connection nominates a framing header")
        host = _values(headers, b"host")
        if len(host) != 1 or host[0].lower() not in policy.allowed_hosts:
            raise _Reject(403, "unexpected Host header", "Forbidden")
        if b"origin" in names:
            raise _Reject(403, "browser requests are not accepted", "Forbidden")
        auth = _values(headers, b"authorization")
        scheme, _, token = (auth[0] if len(auth) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("latin-1"), policy.endpoint_token.encode()
        ):
            raise _Reject(401, "Unauthorized", "Unauthorized")
        if not policy.credential_is_callers_own and _impersonates(headers):
            raise _Reject(403, IMPERSONATION_REFUSED, "Forbidden")

    def _upgrade_of(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        if "upgrade" not in connection_tokens(headers):
            return None
        protocols = [p for p in _offered(headers, b"upgrade") if p.lower() != "h2c"]
        if len(protocols) > 1:
            raise _Reject(400, "more than one Upgrade protocol")
        return protocols[0] if protocols else None

    def _upstream_headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        policy = self._policy
        chunked = bool(_values(headers, b"transfer-encoding"))
        out = [
            (name, value)
            for name, value in filter_hop_by_hop(headers)
            if name not in (b"host", b"authorization")
            and not is_identity_header(
                name.decode("latin-1"), callers_own=policy.credential_is_callers_own
            )
        ]
        out.insert(0, (b"host", policy.upstream_host.encode("latin-1")))
        if policy.upstream_authorization is not None:
            out.append((b"authorization", policy.upstream_authorization.encode("latin-1")))
        if self._upgrade is not None:
            out += [(b"connection", b"Upgrade"), (b"upgrade", self._upgrade.encode("latin-1"))]
        if chunked:
            out.append((b"transfer-encoding", b"chunked"))
        return out

    def _send_upstream(self, event: h11.Event) -> None:
        self._to_upstream.append(self._upstream.send(event) or b"")

    # -- upstream side (HTTP) ------------------------------------------------------

    def _pump_upstream(self, now: float) -> None:
        while self.state is ProxyState.HTTP:
            try:
                event = self._upstream.next_event()
            except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
                self._bad_gateway(now, f"invalid response from the apiserver: {exc}", 502)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self._switch(event, now)
                else:
                    self._send_client(
                        h11.InformationalResponse(
                            status_code=event.status_code,
                            headers=filter_hop_by_hop(event.headers),
                            reason=event.reason,
                        )
                    )
            elif isinstance(event, h11.Response):
                self._response(event, now)
            elif isinstance(event, h11.Data):
                self._response_data(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._response_end(now)
            else:  # ConnectionClosed before any response
                self._bad_gateway(now, "the apiserver closed the connection", 502)

    def _response(self, event: h11.Response, now: float) -> None:
        exchange = self._current
        assert exchange is not None
        exchange.status = event.status_code
        headers = filter_hop_by_hop(event.headers)
        upstream_closes = "close" in connection_tokens(event.headers) or (
            event.http_version == b"1.0"
        )
        if self._upgrade is not None:
            exchange.upgrade_state = UpgradeState.REFUSED
            self._close_after_response = True
        if upstream_closes or self._close_after_response:
            self._close_after_response = True
            headers.append((b"connection", b"close"))
        self._response_started = True
        self._decoder = decoder_for(exchange.method, exchange.target, None, None, exchange.detail)
        exchange.response_headers = record_headers(event.headers.raw_items())
        self._send_client(
            h11.Response(status_code=event.status_code, headers=headers, reason=event.reason)
        )

    def _response_data(self, data: bytes) -> None:
        if self._current is not None:
            self._current.bytes_down += len(data)
        if self._decoder is not None:
            self._decoder.server_data(data)
        self._send_client(h11.Data(data=data))

    def _response_end(self, now: float) -> None:
        self._send_client(h11.EndOfMessage())
        if self._current is not None:
            self._finish(self._current, now)
        self._current = None
        self._decoder = None
        if (
            self._close_after_response
            or self._client.our_state is not h11.DONE
            or self._client.their_state is not h11.DONE
            or self._upstream.our_state is not h11.DONE
            or self._upstream.their_state is not h11.DONE
        ):
            self._close(now, "done")
            return
        self._client.start_next_cycle()
        self._upstream.start_next_cycle()
        self._held = 0
        self._deadline = now + self._idle_timeout
        self._pump_client(now)

    def _switch(self, event: h11.InformationalResponse, now: float) -> None:
        exchange = self._current
        assert exchange is not None
        exchange.status = 101
        got = _offered(event.headers, b"upgrade")
        if self._upgrade is None:
            self._bad_gateway(now, "the apiserver switched protocols unasked", 502)
            return
        if len(got) != 1 or got[0].lower() != self._upgrade.lower():
            self._bad_gateway(now, f"the apiserver switched to {got!r}, not {self._upgrade}", 502)
            return
        if "upgrade" not in connection_tokens(event.headers):
            self._bad_gateway(now, "101 without Connection: Upgrade", 502)
            return
        if self._client.their_state is not MIGHT_SWITCH_PROTOCOL:
            self._bad_gateway(now, "101 before the request was complete", 502)
            return
        headers = [
            *filter_hop_by_hop(event.headers),
            (b"connection", b"Upgrade"),
            (b"upgrade", got[0].encode("latin-1")),
        ]
        exchange.response_headers = record_headers(event.headers.raw_items())
        self._send_client(
            h11.InformationalResponse(status_code=101, headers=headers, reason=event.reason)
        )
        chosen = _values(event.headers, b"sec-websocket-protocol") or _values(
            event.headers, b"x-stream-protocol-version"
        )
        exchange.subprotocol = chosen[0].strip() if chosen else None
        exchange.upgrade_state = UpgradeState.ACCEPTED
        self._decoder = decoder_for(
            exchange.method, exchange.target, got[0], exchange.subprotocol, exchange.detail
        )
        early, client_closed = self._client.trailing_data
        late, upstream_closed = self._upstream.trailing_data
        self.state = ProxyState.UPGRADED
        self._held = 0
        if late:
            self._raw(late, now, from_client=False)
        if early:
            self._raw(early, now, from_client=True)
        if upstream_closed:
            self._raw(b"", now, from_client=False)
        if client_closed:
            self._raw(b"", now, from_client=True)

    # -- upgraded ------------------------------------------------------------------

    def _raw(self, data: bytes, now: float, *, from_client: bool) -> None:
        """Upgraded bytes from one side: counted, queued for the other side, and only
        then copied to the passive decoder; ``b""`` is that side's EOF."""
        exchange = self._current
        assert exchange is not None
        if not data:
            if from_client:
                self.upstream_eof_to_send = True
            else:
                self.client_eof_to_send = True
            self._maybe_done(now)
            return
        if from_client:
            exchange.bytes_up += len(data)
            self._to_upstream.append(data)
        else:
            exchange.bytes_down += len(data)
            self._to_client.append(data)
        if self._decoder is not None:
            (self._decoder.client_data if from_client else self._decoder.server_data)(data)

    def _maybe_done(self, now: float) -> None:
        if self.client_eof_to_send and self.upstream_eof_to_send:
            self._close(now, "done")

    # -- endings -------------------------------------------------------------------

    def _send_client(self, event: h11.Event) -> None:
        self._to_client.append(self._client.send(event) or b"")

    def _respond_locally(
        self, now: float, code: int, message: str, reason: str | None = None
    ) -> None:
        """Answer a Status ourselves and close (nothing of this request goes upstream)."""
        exchange = self._current or self._new_rejected(now)
        exchange.status = code
        exchange.error = message
        self._to_upstream.clear()
        if self._client.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
            body = status_failure(message, reason or phrase.replace(" ", ""), code)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-cache, private"),
                (b"connection", b"close"),
            ]
            exchange.response_headers = record_headers(headers)
            try:
                self._send_client(
                    h11.Response(status_code=code, headers=headers, reason=phrase.encode())
                )
                self._send_client(h11.Data(data=body))
                self._send_client(h11.EndOfMessage())
            except h11.LocalProtocolError:  # pragma: no cover - defensive
                pass
        self._close(now, message)

    def _new_rejected(self, now: float) -> Exchange:
        exchange = Exchange(next(_ids), now)
        self.exchanges.append(exchange)
        if self._on_exchange is not None:
            self._on_exchange(exchange)
        self._current = exchange
        return exchange

    def _bad_gateway(self, now: float, message: str, code: int) -> None:
        exchange = self._current
        if exchange is not None and self._upgrade is not None:
            exchange.upgrade_state = UpgradeState.REFUSED
        if self._response_started:
            if exchange is not None:
                exchange.error = message
            self._close(now, message)  # mid-body: nothing left to say but the close
            return
        self._respond_locally(now, code, message, _GATEWAY_REASONS.get(code))

    def _finish(self, exchange: Exchange, now: float) -> None:
        if exchange.ended is None:
            exchange.ended = now
            decoder = self._decoder if exchange is self._current else None
            if decoder is not None:
                decoder.finish()

    def _close(self, now: float, reason: str) -> None:
        if self.state is ProxyState.CLOSED:
            return
        self.state = ProxyState.CLOSED
        self.close_reason = reason
        self._deadline = None
        for exchange in self.exchanges:
            if exchange.ended is None:
                if reason not in ("done", "idle", "client closed") and exchange.error is None:
                    exchange.error = reason
                self._finish(exchange, now)
