"""asyncio adapter for the sans-I/O multiplexer.

``MuxConnection`` is an ``asyncio.BufferedProtocol`` on a TCP or TLS transport: the
transport reads (and TLS decrypts) into the connection's buffer and ``buffer_updated``
feeds the session, so frame parsing never waits on a coroutine and no
per-stream timeout or cancellation can interrupt it mid-frame (the FRP kubectl-exec
lesson). Each ``MuxStream`` is an ``asyncio.Transport`` for one stream: any protocol can
run on it, including asyncio's TLS (``loop.start_tls``) and the stock
``StreamReader``/``StreamWriter`` pair (``open_connection``/``accept_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from core import errors
from core.protocol.mux import MuxConfig, MuxSession, SessionSnapshot, StreamSnapshot
from core.protocol.mux import events as ev
from core.protocol.mux.frames import GoAwayCode

log = logging.getLogger("wicket.mux")

#: StreamReader buffer limit for stream pairs (it pauses the stream at twice this).
READER_LIMIT = 256 * 1024
#: How much the session hands the transport per write call.
WRITE_CHUNK = 256 * 1024
#: The most a transport reads into a session's buffer at once.
READ_BUFFER = 256 * 1024

StreamHandler = Callable[["MuxStream"], None]


def read_size(config: MuxConfig) -> int:
    """The read buffer for a session: never more than it may receive in all (a relay
    holds many pre-authentication sessions, each with a tiny ``max_received``)."""
    limit = config.max_received
    return READ_BUFFER if limit is None else max(1, min(READ_BUFFER, limit))


_shared = threading.local()


def shared_read_buffer(size: int) -> memoryview:
    """``size`` bytes of the buffer every session of this thread's event loop reads into.

    A transport calls ``get_buffer``, fills it and calls ``buffer_updated`` with no other
    protocol's read in between, and ``MuxSession.receive_data`` copies what it keeps
    before it returns: so one buffer per thread serves every session, and an idle one
    (a relay holds thousands) costs no read buffer (256 KiB each when it had its own).
    """
    buf: memoryview | None = getattr(_shared, "read_buffer", None)
    if buf is None or len(buf) < size:
        buf = memoryview(bytearray(max(size, READ_BUFFER)))
        _shared.read_buffer = buf
    return buf[:size]


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buf = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buf), len(view))
            if not n:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        protocol.data_received(data)  # type: ignore[attr-defined]


class MuxStream(asyncio.Transport):
    """One multiplexed stream, as an asyncio transport."""

    _start_tls_compatible = True

    def __init__(self, conn: MuxConnection, stream_id: int, outbound: bool) -> None:
        # No super().__init__(): asyncio's only sets ``_extra``, which ``get_extra_info``
        # below replaces, and a compiled (mypyc) subclass would leak that slot's dict,
        # one per stream (it frees its own attributes, not a Python base's __slots__).
        self._conn = conn
        self.loop = conn.loop  # the loop the stream lives on (no get_running_loop() needed)
        self.stream_id = stream_id
        self.outbound = outbound
        self._protocol: asyncio.BaseProtocol | None = None
        self._pending: deque[bytes] | None = None  # created when needed: idle streams are many
        self._pending_eof = False
        self._paused = False
        self._closing = False
        self._lost = False
        self._ended = False
        self._lost_after_pending = False
        self.error: Exception | None = None
        self.final: StreamSnapshot | None = None

    # -- protocol attachment -----------------------------------------------------------

    def attach(self, protocol: asyncio.BaseProtocol) -> None:
        """Run ``protocol`` on this stream (for accepted streams; opened ones too)."""
        self._protocol = protocol
        protocol.connection_made(self)
        if self._lost:
            self._call_lost()
        else:
            self._deliver_pending()
            self._conn._run()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    # -- reading -----------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._deliver_pending()
            self._conn._run()

    def _data_received(self, data: bytes) -> None:
        if self._protocol is None or self._paused or self._pending:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(data)
            if self._protocol is not None and not self._paused:
                self._deliver_pending()
            return
        self._conn._consumed(self, len(data))
        _feed(self._protocol, data)

    def _deliver_pending(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        while self._pending and not self._paused and not self._lost:
            data = self._pending.popleft()
            self._conn._consumed(self, len(data))
            _feed(protocol, data)
        if self._pending or self._paused:
            return
        self._pending = None
        if self._pending_eof:
            self._pending_eof = False
            self._eof()
        if self._lost_after_pending:
            self._lost_after_pending = False
            self._lost_soon(None)

    def _eof_received(self) -> None:
        self._ended = True
        if self._protocol is None or self._pending or self._paused:
            self._pending_eof = True
            return
        self._eof()

    def _eof(self) -> None:
        assert self._protocol is not None
        keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        if not keep_open:
            self.close()

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return
        if isinstance(data, bytearray):
            data = bytes(data)
        self._conn._write(self, data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if self._closing or self._lost:
            return
        self._conn._write_eof(self)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._conn.session.outbox_size(self.stream_id)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        high = self._conn.session.config.outbox_high_water
        return high // 2, high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Limits are the session's (``MuxConfig.outbox_high_water``)."""

    # -- closing -----------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Close both directions (FIN after queued data); the peer has close_timeout."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._pending = None
        self._conn._close_stream(self)
        self._lost_soon(None)

    def abort(self) -> None:
        """Reset the stream now (RST)."""
        self._reset(None)

    def _force_close(self, exc: BaseException | None) -> None:
        """asyncio's SSL protocol calls this on a fatal TLS error when TLS runs over this
        stream (``start_tls``, the inspect endpoint's upstream): reset at once, and hand
        the error to ``connection_lost`` so ``start_tls`` raises it (a handshake timeout
        stays a timeout instead of a silent close)."""
        self._reset(exc if isinstance(exc, Exception) else None)

    def _reset(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._closing = True
        self._pending = None
        self._conn._reset_stream(self)
        self._lost_soon(exc)

    def _lost_soon(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self.error = exc
            self._conn.loop.call_soon(self._call_lost)

    def _connection_lost(self, exc: Exception | None) -> None:
        """The session ended this stream (FIN both ways, reset, or session gone)."""
        self._closing = True
        if self._lost:
            return
        if exc is None and (self._pending or self._pending_eof):
            # A clean end: the reader gets every byte and the EOF before the loss.
            self._lost_after_pending = True
            self._deliver_pending()
            return
        self._lost_soon(exc)

    def _call_lost(self) -> None:
        protocol = self._protocol
        if protocol is not None:
            self._protocol = None
            protocol.connection_lost(self.error)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "mux_stream_id":
            return self.stream_id
        if name == "mux_connection":
            return self._conn
        if name in ("peername", "sockname"):
            return self._conn.get_extra_info(name, default)
        # Never the session's TLS details: a stream is not itself a TLS transport
        # (asyncio's StreamReaderProtocol would treat a half-close as a full close).
        return default

    def snapshot(self) -> StreamSnapshot | None:
        """Live counters while the stream exists, then its final ones."""
        return self._conn.session.stream_snapshot(self.stream_id) or self.final

    def __repr__(self) -> str:
        return f"<MuxStream {self.stream_id} {'out' if self.outbound else 'in'}>"


class MuxConnection(asyncio.BufferedProtocol):
    """A mux session on an asyncio transport.

    ``stream_handler``, if given, is called synchronously with each accepted inbound
    stream (it should ``attach`` a protocol or start a task); without it, inbound streams
    wait in the backlog for ``accept()``.
    """

    def __init__(
        self,
        is_client: bool,
        config: MuxConfig | None = None,
        stream_handler: StreamHandler | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = MuxSession(is_client, self.loop.time(), config)
        self.stream_handler = stream_handler
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, MuxStream] = {}
        # Lists, not deques: short, and an idle session (a relay holds thousands) should
        # not pay 760 bytes for an empty deque.
        self._accept_waiters: list[asyncio.Future[MuxStream]] = []
        self._ping_waiters: list[asyncio.Future[float]] = []
        self._write_paused = False
        self._running = False
        self._flush_scheduled = False
        self._dirty = False
        self._credit: dict[int, int] = {}  # bytes delivered, not yet reported to the session
        # A view of the thread's shared buffer (``shared_read_buffer``), from
        # connection_made on.
        self._read_buffer = memoryview(b"")
        self._read_size = read_size(self.session.config)
        self._drained: asyncio.Future[None] | None = None  # close(): no stream left
        self._linger: asyncio.TimerHandle | None = None  # a closed transport's last call
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed: asyncio.Future[None] = self.loop.create_future()
        self.made: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.BufferedProtocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._transport = transport
        self._read_buffer = shared_read_buffer(self._read_size)
        transport.set_write_buffer_limits(high=4 * WRITE_CHUNK)
        if not self.made.done():
            self.made.set_result(None)
        self.session.handle_timer(self.loop.time())  # first keepalive: RTT at once
        self._run()

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._read_buffer) != self._read_size:  # reconfigured: from this read on
            self._read_buffer = shared_read_buffer(self._read_size)
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # The session copies out what it keeps: the buffer is free again on return.
        self.data_received(self._read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from the transport (``buffer_updated``, or a caller handing them over)."""
        self.session.receive_data(data, self.loop.time())
        self._run()

    def eof_received(self) -> bool:
        self.session.connection_lost("peer closed the connection")
        self._run()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "connection lost" if exc is None else f"connection lost: {exc}"
        self.session.connection_lost(reason)
        self._run()
        self._transport = None
        for timer in (self._timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._timer = self._linger = None
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        """The peer reads slower than we write: no writing (and no work) until it
        catches up, for at most ``drain_timeout`` (the session's deadline)."""
        self._write_paused = True
        self.session.write_blocked(self.loop.time())
        self._arm_timer()  # not _run(): this is called from inside transport.write()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.session.write_unblocked()
        self._run()

    # -- public API --------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    @property
    def closed(self) -> bool:
        return self.session.terminated is not None

    def open_stream(self, data: bytes = b"") -> MuxStream:
        """Open a stream now; ``data`` goes out with the SYN (no round trip)."""
        sid = self.session.open_stream(self.loop.time(), data)
        stream = MuxStream(self, sid, outbound=True)
        self._streams[sid] = stream
        self._run()
        return stream

    async def accept(self) -> MuxStream:
        """Wait for the next inbound stream."""
        self._check_alive()
        sid = self.session.accept_stream(self.loop.time())
        if sid is not None:
            self._run()
            return self._streams[sid]
        waiter: asyncio.Future[MuxStream] = self.loop.create_future()
        self._accept_waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().abort()  # accepted for a caller that left: reset it
            raise
        finally:
            if waiter in self._accept_waiters:
                self._accept_waiters.remove(waiter)

    async def open_connection(
        self, data: bytes = b"", limit: int = READER_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a stream as an asyncio reader/writer pair."""
        return self.stream_pair(self.open_stream(data), limit)

    async def accept_connection(
        self, limit: int = READER_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return self.stream_pair(await self.accept(), limit)

    def stream_pair(
        self, stream: MuxStream, limit: int = READER_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader = asyncio.StreamReader(limit=limit, loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
        stream.attach(protocol)
        writer = asyncio.StreamWriter(stream, protocol, reader, self.loop)
        return reader, writer

    async def ping(self) -> float:
        """Measure one round trip (waits for any ping already in flight)."""
        self._check_alive()
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._ping_waiters.append(waiter)
        self.session.ping(self.loop.time())
        self._run()
        return await waiter

    def snapshot(self) -> SessionSnapshot:
        return self.session.snapshot()

    def reconfigure(self, config: MuxConfig) -> None:
        """New limits for this session (``MuxSession.reconfigure``), e.g. after auth."""
        self.session.reconfigure(config, self.loop.time())
        self._read_size = read_size(config)
        self._run()

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Go away, let open streams finish for up to ``drain_timeout``, then close."""
        if self._transport is not None and self.session.terminated is None:
            self.session.go_away(GoAwayCode.NORMAL)
            self._run()
            if self.session.stream_count and not self.closed:
                self._drained = self.loop.create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), drain_timeout)
        self.abort()
        await self.wait_closed()

    def abort(self) -> None:
        if self._transport is not None:
            self._flush_transport_close()
        else:
            self.session.connection_lost("closed locally")
            self._run()
            if not self._closed.done():
                self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- stream hooks ------------------------------------------------------------------

    def _write(self, stream: MuxStream, data: bytes | memoryview) -> None:
        try:
            pause = self.session.send_data(stream.stream_id, data, self.loop.time())
        except (errors.StreamClosed, errors.SessionClosed):
            return  # asyncio transports drop writes after close; the error came already
        if pause and stream._protocol is not None:
            stream._protocol.pause_writing()
        self._run()

    def _write_eof(self, stream: MuxStream) -> None:
        with contextlib.suppress(errors.StreamClosed, errors.SessionClosed):
            self.session.send_eof(stream.stream_id)
        self._run()

    def _close_stream(self, stream: MuxStream) -> None:
        self.session.close_stream(stream.stream_id, self.loop.time())
        self._run()

    def _reset_stream(self, stream: MuxStream) -> None:
        stream.final = self.session.stream_snapshot(stream.stream_id) or stream.final
        self.session.reset_stream(stream.stream_id)
        self._streams.pop(stream.stream_id, None)
        self._run()

    def _consumed(self, stream: MuxStream, n: int) -> None:
        """Delivered bytes are credited once per engine pass (``_run``), not per frame.

        So the window decision sees what the reader left unread after the whole batch
        of frames one transport read brought, not the frames still being handed out.
        (No extra pass: ``_run`` reports credit after each dispatch, and a delivery
        outside ``_run`` is followed by one.)
        """
        credit = self._credit
        credit[stream.stream_id] = credit.get(stream.stream_id, 0) + n

    # -- the engine --------------------------------------------------------------------

    def _check_alive(self) -> None:
        term = self.session.terminated
        if term is not None:
            raise (
                term if isinstance(term, errors.SessionClosed) else errors.SessionClosed(str(term))
            )

    def _run(self) -> None:
        """Dispatch events until none is left, then schedule the write, the timer and
        the drain check once (they look at the state the whole pass left)."""
        if self._running:
            self._dirty = True
            return
        self._running = True
        session = self.session
        try:
            while True:
                self._dirty = False
                events = session.events_received()
                if events:
                    self._dispatch(events)
                if self._credit:
                    self._report_credit()
                if not self._dirty and not events:
                    break
        finally:
            self._running = False
        if not self._flush_scheduled and self._has_output():
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)  # once per loop pass: frames share a record
        if session.timers_changed:
            self._arm_timer()
        if self._drained is not None:
            self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and (not self.session.stream_count or self.closed):
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    def _has_output(self) -> bool:
        """Whether a flush would do anything: never while the transport is paused or
        closing, so a peer that stops reading costs no CPU (the transport's
        ``resume_writing`` or the session's drain deadline brings the next pass)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        if self.session.terminated is not None:
            return True  # the transport is to be closed
        return self.session.wants_write and not self._write_paused

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_out()
        self._run()  # dispatch what writing produced (WriteReady)

    def _report_credit(self) -> None:
        credit, self._credit = self._credit, {}
        now = self.loop.time()
        for sid, n in credit.items():
            self.session.consumed(sid, n, now)

    def _write_out(self) -> None:
        transport = self._transport
        if transport is None:
            return
        session = self.session
        while not self._write_paused and session.wants_write:
            data = session.data_to_send(self.loop.time(), WRITE_CHUNK)
            if not data:
                break
            transport.write(data)
        if session.terminated is not None and not transport.is_closing():
            self._close_transport(transport)

    def _dispatch(self, events: list[ev.Event]) -> None:
        for event in events:
            try:
                self._dispatch_one(event)
            except Exception:
                # A stream's protocol failed in a callback: that stream ends, never the
                # session and the other streams on it.
                sid = getattr(event, "stream_id", None)
                stream = self._streams.get(sid) if sid is not None else None
                if stream is None:
                    raise
                log.exception("stream %s: its protocol failed; resetting the stream", sid)
                stream.abort()

    def _dispatch_one(self, event: ev.Event) -> None:
        streams = self._streams
        if isinstance(event, ev.DataReceived):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream._data_received(event.data)
        elif isinstance(event, ev.StreamEnded):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream._eof_received()
        elif isinstance(event, ev.WriteReady):
            stream = streams.get(event.stream_id)
            if stream is not None and stream._protocol is not None:
                stream._protocol.resume_writing()
        elif isinstance(event, ev.StreamIncoming):
            self._incoming(event.stream_id)
        elif isinstance(event, ev.StreamFinished):
            self._gone(event.stream_id, None, event.final)
        elif isinstance(event, ev.StreamWasReset):
            self._gone(event.stream_id, event.error, event.final)
        elif isinstance(event, ev.PongReceived):
            self._pong_received(event.rtt)
        elif isinstance(event, ev.SessionTerminated):
            self._terminated(event.error)

    def _pong_received(self, rtt: float) -> None:
        waiters, self._ping_waiters = self._ping_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(rtt)

    def _incoming(self, sid: int) -> None:
        stream = MuxStream(self, sid, outbound=False)
        self._streams[sid] = stream
        if self.stream_handler is None and not self._accept_waiters:
            return
        if self.session.accept_stream(self.loop.time(), sid) is None:
            return  # reset while its event waited
        self._dirty = True
        if self.stream_handler is not None:
            self.stream_handler(stream)
            return
        while self._accept_waiters:
            waiter = self._accept_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(stream)
                return
        raise AssertionError("unreachable: an accept waiter was checked above")

    def _gone(self, sid: int, error: Exception | None, final: StreamSnapshot) -> None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            stream.final = final
            stream._connection_lost(error)

    def _terminated(self, error: errors.MuxError | errors.ProtocolError) -> None:
        lost = (
            error if isinstance(error, errors.SessionClosed) else errors.SessionClosed(str(error))
        )
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._connection_lost(lost)
        waiters: list[asyncio.Future[Any]] = [*self._accept_waiters, *self._ping_waiters]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(lost)
        self._accept_waiters.clear()
        self._ping_waiters = []

    def _flush_transport_close(self) -> None:
        self._write_out()  # what is queued (an error message, GoAway) still goes out
        self.session.connection_lost("closed locally")
        self._run()
        if self._transport is not None and not self._transport.is_closing():
            self._close_transport(self._transport)

    def _close_transport(self, transport: asyncio.Transport) -> None:
        """Close after what is queued, within ``drain_timeout``: a peer that reads
        nothing would otherwise hold the transport (and ``wait_closed``) forever."""
        if self._write_paused:
            transport.abort()  # what is queued would never leave
            return
        transport.close()
        self._linger = self.loop.call_later(
            self.session.config.drain_timeout, self._abort_transport
        )

    def _abort_transport(self) -> None:
        self._linger = None
        if self._transport is not None:
            self._transport.abort()

    def _arm_timer(self) -> None:
        session = self.session
        if not session.timers_changed:
            return  # the armed timer (or none) still stands
        session.timers_changed = False
        deadline = session.get_timer()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.session.handle_timer(self.loop.time())
        self._run()
