"""Tunnel streams: the preamble exchange, then splicing, with per-stream statistics.

Every data stream opened through the relay starts with a request (cluster, endpoint
kind, client address) and is answered with a status (docs/control.md). These helpers
are shared by the local endpoint (``wicket connect``), the relay (client streams and
public endpoints) and the agent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from core.aio.mux import MuxConnection, MuxStream
from core.aio.splice import Splice, splice_transports
from core.aio.stream_info import StreamInfo as StreamInfo  # noqa: PLC0414 (re-exported)
from core.errors import LimitExceeded, MuxError, RemoteProtocolError, UpstreamUnavailable
from core.protocol.preamble import (
    EndpointKind,
    RequestDecoder,
    Status,
    StatusDecoder,
    StreamRequest,
    StreamStatus,
)
from core.protocol.tls_hello import HelloPeek

log = logging.getLogger("wicket.tunnel")
PREAMBLE_TIMEOUT = 10.0
#: How long a refused client may take to send its first bytes (they choose the answer).
REFUSE_WAIT = 2.0
#: A fatal TLS ``internal_error`` alert: how a passthrough endpoint, which cannot speak
#: HTTP inside kubectl's end-to-end TLS, says "no" (a closed connection would make
#: client-go retry a GET for ~10 s and then print a bare EOF).
TLS_INTERNAL_ERROR_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50])
_ids = itertools.count(1)
_ENDPOINT_NAMES = {kind: kind.name.lower() for kind in EndpointKind}
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class StreamRecord:
    """Live counters of one tunnelled connection (``info()`` freezes them)."""

    __slots__ = (
        "alpn",
        "client",
        "close_reason",
        "closed_at",
        "cluster",
        "down",
        "endpoint",
        "id",
        "on_close",
        "opened_at",
        "pre_up",
        "sni",
        "splice",
        "state",
        "up",
        "up_is_a",
    )

    def __init__(self, cluster: str, endpoint: str, client: str | None) -> None:
        self.id = next(_ids)
        self.cluster = cluster
        self.endpoint = endpoint
        self.client = client
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.state = "connecting"
        self.close_reason: str | None = None
        self.splice: Splice | None = None
        self.pre_up = 0  # bytes sent up before the splice took over (pipelined)
        self.up_is_a = True  # bytes a→b are "up" (towards the apiserver)
        self.up = self.down = 0  # the splice's counts, kept here once it is done
        #: Called once when the connection is over, however it ended (a quota's release).
        self.on_close: Callable[[], None] | None = None
        self.sni: str | None = None
        self.alpn: str | None = None

    @classmethod
    def of(cls, request: StreamRequest) -> StreamRecord:
        """The record of a stream carrying ``request`` (relay, agent and dialer alike)."""
        return cls(request.cluster, _ENDPOINT_NAMES[request.endpoint], request.client or None)

    def info(self) -> StreamInfo:
        splice = self.splice
        up, down = self.up, self.down
        if splice is not None:
            a, b = splice.bytes_a_to_b, splice.bytes_b_to_a
            up, down = (a, b) if self.up_is_a else (b, a)
        up += self.pre_up
        return StreamInfo(
            self.id,
            self.cluster,
            self.endpoint,
            self.client,
            self.opened_at,
            self.closed_at,
            up,
            down,
            self.state,
            self.close_reason,
            sni=self.sni,
            alpn=self.alpn,
        )

    def hello_seen(self, peek: HelloPeek) -> None:
        """Keep what the client's ClientHello said (nothing if it was not one). No ALPN
        offer means HTTP/1.1 (client-go's upgrade dialers send none), so it is kept as
        ``http/1.1``."""
        if peek.hello is not None:
            self.sni = peek.hello.sni
            self.alpn = ",".join(peek.hello.alpn) or "http/1.1"

    def finish(self, reason: str) -> None:
        if self.closed_at is None:
            self.closed_at = time.time()
            self.state = "closed" if reason == "eof" else "failed"
            self.close_reason = reason
            if self.on_close is not None:
                self.on_close()
                self.on_close = None


class StreamBook:
    """Open streams plus a bounded history of closed ones."""

    def __init__(self, history: int = 200) -> None:
        self.open: dict[int, StreamRecord] = {}
        # Closed records, frozen: their ``StreamInfo`` is built when a snapshot asks, not
        # once per connection on the hot path.
        self.closed: deque[StreamRecord] = deque(maxlen=history)
        self.total = 0

    def add(self, record: StreamRecord) -> StreamRecord:
        self.open[record.id] = record
        self.total += 1
        return record

    def done(self, record: StreamRecord, reason: str) -> None:
        record.finish(reason)
        if self.open.pop(record.id, None) is not None:
            splice = record.splice
            if splice is not None:  # keep the counts, not the transports
                a, b = splice.bytes_a_to_b, splice.bytes_b_to_a
                record.up, record.down = (a, b) if record.up_is_a else (b, a)
                record.splice = None
            self.closed.append(record)

    def snapshot(self) -> list[StreamInfo]:
        return [r.info() for r in self.open.values()] + [r.info() for r in self.closed]


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "eof"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"error: {exc}"


def spliced(
    book: StreamBook,
    record: StreamRecord,
    a: asyncio.Transport,
    b: asyncio.Transport,
    *,
    first_to_b: bytes = b"",
    first_to_a: bytes = b"",
) -> Splice:
    """Splice ``a`` (client side) with ``b`` (apiserver side) and keep the record."""

    def done(_up: int, _down: int, exc: Exception | None) -> None:
        book.done(record, describe(exc))

    record.state = "open"
    record.splice = splice_transports(a, b, done, first_to_b, first_to_a)
    return record.splice


class _Decoder(Protocol[T_co]):
    def receive_data(self, data: bytes) -> tuple[T_co, bytes] | None: ...


class PreambleProtocol(asyncio.Protocol, Generic[T]):
    """Decodes the one preamble at the start of a mux stream (a request, or the status
    answering it), then reads no more: later bytes belong to whoever takes the stream.

    Subclasses say what the preamble, or an undecodable one, means to them.
    """

    def __init__(self, decoder: _Decoder[T]) -> None:
        self._decoder = decoder
        self.done = False

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            result = self._decoder.receive_data(data)
        except RemoteProtocolError as exc:
            self._finish()
            self.preamble_invalid(exc)
            return
        if result is not None:
            self._finish()
            self.preamble_received(*result)

    def _finish(self) -> None:
        self.done = True

    def preamble_received(self, preamble: T, rest: bytes) -> None:
        raise NotImplementedError

    def preamble_invalid(self, exc: RemoteProtocolError) -> None:
        raise NotImplementedError


class PreambleReader(PreambleProtocol[StreamRequest]):
    """Reads a stream request from an inbound mux stream, then hands the stream on."""

    def __init__(
        self,
        stream: MuxStream,
        on_request: Callable[[MuxStream, StreamRequest, bytes], None],
        timeout: float = PREAMBLE_TIMEOUT,
    ) -> None:
        super().__init__(RequestDecoder())
        self._stream = stream
        self._on_request = on_request
        self._timer: asyncio.TimerHandle | None = None
        stream.attach(self)
        if not self.done:  # the request is not in the opening frame: wait for it, bounded
            self._timer = stream.loop.call_later(timeout, self._timeout)

    def preamble_received(self, preamble: StreamRequest, rest: bytes) -> None:
        self._stream.pause_reading()
        self._on_request(self._stream, preamble, rest)

    def preamble_invalid(self, exc: RemoteProtocolError) -> None:
        reply(self._stream, _status_of(exc.code), str(exc))

    def eof_received(self) -> bool:
        self._finish()
        self._stream.abort()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _timeout(self) -> None:
        if not self.done:
            self._finish()
            self._stream.abort()

    def _finish(self) -> None:
        super()._finish()
        if self._timer is not None:
            self._timer.cancel()


def _status_of(code: int) -> Status:
    try:
        return Status(code)
    except ValueError:
        return Status.BAD_REQUEST


def reply(stream: MuxStream, status: Status, message: str = "") -> None:
    """Answer a stream request with an error status and close the stream."""
    stream.write(StreamStatus(status, message[:200]).encode())
    stream.close()


class TunnelDialer(asyncio.Protocol):
    """Bridges an accepted TCP connection into the tunnel.

    It opens a mux stream carrying the request (and any bytes the client sends at once:
    no extra round trip), waits for the status, then splices. A refused status, or no
    session at all, ends the TCP connection at once, so the client fails fast: a TLS
    client (first byte 0x16) gets a fatal TLS alert first, which client-go does not
    retry; any other client is just disconnected.
    """

    def __init__(
        self,
        conn_for: Callable[[], MuxConnection | None],
        request: Callable[[asyncio.Transport], StreamRequest],
        book: StreamBook,
        on_refused: Callable[[StreamStatus], None] | None = None,
    ) -> None:
        self._conn_for = conn_for
        self._request = request
        self._book = book
        self._on_refused = on_refused
        self._tcp: asyncio.Transport | None = None
        self._stream: MuxStream | None = None
        self._record: StreamRecord | None = None
        self._eof = False
        self._first = b""  # the client's first bytes (TLS or not)
        self._refusing: asyncio.TimerHandle | None = None
        self._hello = HelloPeek()

    # -- the TCP side until the splice takes over --------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._tcp = transport
        conn = self._conn_for()
        request = self._request(transport)
        self._record = self._book.add(StreamRecord.of(request))
        if conn is None or conn.closed:
            self._fail("no session to the relay")
            return
        try:
            self._stream = conn.open_stream(request.encode())
        except (MuxError, LimitExceeded) as exc:
            self._fail(str(exc))
            return
        self._stream.attach(_StatusProtocol(self))

    def data_received(self, data: bytes) -> None:
        if not self._first:
            self._first = data
        if self._refusing is not None:
            self._reject()
            return
        if self._stream is not None and self._record is not None:
            self._record.pre_up += len(data)
            self._stream.write(data)  # pipelined behind the request
            _peek(self._hello, data, self._record)

    def eof_received(self) -> bool:
        self._eof = True
        if self._refusing is not None:
            return False
        if self._stream is not None:
            self._stream.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refusing is not None:
            self._refusing.cancel()
        if self._record is not None and self._record.splice is None:
            if self._stream is not None:
                self._stream.abort()
            self._book.done(self._record, describe(exc) if exc else "client closed")

    def _fail(self, reason: str) -> None:
        assert self._tcp is not None
        if self._record is not None:
            self._book.done(self._record, reason)
        if self._tcp.is_closing() or self._refusing is not None:
            return
        loop = asyncio.get_running_loop()
        self._refusing = loop.call_later(REFUSE_WAIT, self._tcp.abort)
        if self._first:
            self._reject()

    def _reject(self) -> None:
        """Answer a refused client once its first bytes tell how, then close."""
        assert self._tcp is not None and self._refusing is not None
        self._refusing.cancel()
        if self._tcp.is_closing():
            return
        if self._first[:1] == b"\x16":  # a TLS handshake record: tell it in TLS
            self._tcp.write(TLS_INTERNAL_ERROR_ALERT)
            self._tcp.close()  # FIN once the alert is out
        else:
            self._tcp.abort()

    # -- the stream side ---------------------------------------------------------------

    def status_received(self, status: StreamStatus, rest: bytes) -> None:
        if not status.ok:
            self.refused(status)
            return
        assert self._tcp is not None and self._stream is not None and self._record is not None
        splice = spliced(self._book, self._record, self._tcp, self._stream, first_to_a=rest)
        if self._eof:
            splice.a.eof = True
        if not self._hello.done:  # the ClientHello is still on its way: look as it passes
            self._tcp.set_protocol(_HelloTap(self._tcp, self._hello, self._record))

    def stream_ended(self, exc: Exception | None) -> None:
        if self._record is not None and self._record.splice is None:
            self._fail(describe(exc) if exc else "relay closed the stream")

    def refused(self, status: StreamStatus) -> None:
        log.info("stream refused: %s %s", status.status.name.lower(), status.message)
        if self._stream is not None:
            self._stream.abort()
        if self._on_refused is not None:
            self._on_refused(status)
        self._fail(f"refused: {status.status.name.lower()}: {status.message}".rstrip(": "))


class StatusReader(PreambleProtocol[StreamStatus]):
    """Reads the status answering a stream request: the one reader behind
    ``TunnelDialer`` and the inspect endpoint's ``tunnel_connector``; subclasses also say
    what the stream's end means before a status came."""

    def __init__(self) -> None:
        super().__init__(StatusDecoder())

    def eof_received(self) -> bool:
        self.stream_ended(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream_ended(exc)

    def stream_ended(self, exc: Exception | None) -> None:
        raise NotImplementedError


class StatusWaiter(StatusReader):
    """The status as a future (the inspect endpoint's connector awaits it)."""

    def __init__(self) -> None:
        super().__init__()
        self.result: asyncio.Future[tuple[StreamStatus, bytes]] = (
            asyncio.get_running_loop().create_future()
        )

    def preamble_received(self, preamble: StreamStatus, rest: bytes) -> None:
        self.result.set_result((preamble, rest))

    def preamble_invalid(self, exc: RemoteProtocolError) -> None:
        self.result.set_exception(exc)

    def stream_ended(self, exc: Exception | None) -> None:
        if not self.result.done():
            self.result.set_exception(
                UpstreamUnavailable("the relay closed the tunnel stream before answering")
            )


class _StatusProtocol(StatusReader):
    def __init__(self, dialer: TunnelDialer) -> None:
        super().__init__()
        self._dialer = dialer

    def preamble_received(self, preamble: StreamStatus, rest: bytes) -> None:
        self._dialer.status_received(preamble, rest)

    def preamble_invalid(self, exc: RemoteProtocolError) -> None:
        self._dialer.refused(StreamStatus(Status.BAD_REQUEST, str(exc)))

    def stream_ended(self, exc: Exception | None) -> None:
        self._dialer.stream_ended(exc)


def _peek(hello: HelloPeek, data: bytes, record: StreamRecord) -> None:
    if not hello.done and hello.receive_data(data):
        record.hello_seen(hello)


class _HelloTap(asyncio.Protocol):
    """Sits in front of the splice's client-side protocol until the ClientHello is
    read, then steps aside; every byte reaches the splice first, unchanged."""

    def __init__(self, tcp: asyncio.Transport, hello: HelloPeek, record: StreamRecord) -> None:
        self._tcp = tcp
        self._inner = cast(asyncio.Protocol, tcp.get_protocol())
        self._hello = hello
        self._record = record

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)
        _peek(self._hello, data, self._record)
        if self._hello.done and self._tcp.get_protocol() is self:
            self._tcp.set_protocol(self._inner)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
