"""The yamux session state machine, sans I/O.

Bytes in (``receive_data``), events out (``events_received``), bytes out
(``data_to_send``); every call that depends on time takes ``now`` (seconds, monotonic),
and ``get_timer()`` tells the adapter when to call ``handle_timer``. The wire
contract is docs/mux.md.
"""

from __future__ import annotations

import heapq
import secrets
from collections import deque

from core import errors
from core.protocol.mux import events as ev
from core.protocol.mux.config import INITIAL_WINDOW, MuxConfig
from core.protocol.mux.frames import (
    ACK,
    DATA,
    FIN,
    GO_AWAY,
    MAX_UINT32,
    PING,
    RST,
    SYN,
    WINDOW_UPDATE,
    GoAwayCode,
    MuxFrameDecoder,
    RawFrame,
    encode_header,
)
from core.protocol.mux.stats import SessionSnapshot, StreamSnapshot, StreamState
from core.protocol.mux.transitions import next_state

_S = StreamState


def _earlier(at: float | None, other: float) -> float:
    """The earlier of two deadlines (``min()`` over a list costs more, called per open)."""
    return other if at is None or other < at else at


class _Stream:
    """Per-stream state; only the session touches it."""

    __slots__ = (
        "accepted",
        "ack_owed",
        "acked",
        "blocked_since",
        "buffered",
        "bytes_received",
        "bytes_sent",
        "close_deadline",
        "fin_queued",
        "in_ready",
        "last_activity",
        "last_update_at",
        "open_deadline",
        "opened_at",
        "outbound",
        "outbox",
        "outbox_size",
        "read_closed",
        "recv_size",
        "recv_window",
        "send_window",
        "state",
        "stream_id",
        "write_paused",
    )

    def __init__(self, stream_id: int, outbound: bool, now: float) -> None:
        self.stream_id = stream_id
        self.outbound = outbound
        self.state = _S.OPEN
        self.acked = not outbound
        self.accepted = outbound
        self.ack_owed = False  # accepted, ACK to ride on the first frame we send
        self.send_window = INITIAL_WINDOW
        self.recv_window = INITIAL_WINDOW
        self.recv_size = INITIAL_WINDOW
        self.buffered = 0
        self.outbox: deque[bytes | memoryview] | tuple[()] = ()  # a deque while bytes wait
        self.outbox_size = 0
        self.fin_queued = False
        self.in_ready = False  # its id is in the session's ready list
        self.read_closed = False
        self.write_paused = False
        self.blocked_since: float | None = None
        self.open_deadline: float | None = None
        self.close_deadline: float | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.opened_at = now
        self.last_activity = now
        self.last_update_at = now

    def deadline(self, write_timeout: float) -> float | None:
        at = self.open_deadline
        close = self.close_deadline
        if close is not None and (at is None or close < at):
            at = close
        if self.blocked_since is not None:
            blocked = self.blocked_since + write_timeout
            if at is None or blocked < at:
                at = blocked
        return at


class MuxSession:
    """One end of a yamux session. ``is_client`` picks odd (client) or even stream ids."""

    # A relay holds thousands of idle sessions: with more than 30 attributes the instance
    # dict stopped sharing its keys and cost 1.6 KB each (slots: 0.3 KB). A new attribute
    # must be named here.
    __slots__ = (
        "_backlog", "_bytes_received", "_bytes_sent", "_control", "_control_size", "_deadlines",
        "_decoder", "_events", "_goaway_received", "_goaway_sent", "_last_peer_id",
        "_next_id", "_next_ping_at", "_peer_ping_at", "_pending_opens", "_ping_id",
        "_ping_sent_at", "_pings_sent", "_ready", "_reserved", "_rtt", "_rtt_smoothed",
        "_started_at", "_streams", "_streams_opened", "_streams_refused", "_terminated",
        "_timed", "_write_blocked_since", "config", "is_client", "timers_changed",
    )  # fmt: skip

    def __init__(self, is_client: bool, now: float, config: MuxConfig | None = None) -> None:
        self.config = config or MuxConfig()
        self.is_client = is_client
        self._decoder = MuxFrameDecoder(self.config.max_window)
        self._streams: dict[int, _Stream] = {}
        # Lists: served from the front as streams come (``accept_stream``), and an empty
        # deque would cost 760 bytes in each of the thousands of idle sessions of a relay.
        # The ready list is round-robin: ``data_to_send`` walks it by index, appends
        # what stays ready and cuts the served head once per call. Membership is the
        # stream's ``in_ready`` flag (an empty set is 216 bytes more per session).
        self._backlog: list[int] = []
        self._ready: list[int] = []
        self._timed: set[int] = set()
        self._deadlines: list[tuple[float, int]] = []  # heap over _timed; stale entries skipped
        self._control: list[bytes] = []
        self._control_size = 0
        self._events: list[ev.Event] = []
        self._next_id = 1 if is_client else 2
        self._last_peer_id = 0
        self._pending_opens = 0
        self._reserved = 0  # sum of recv_size over live streams (the buffer budget)
        self._started_at = now
        self._terminated: errors.MuxError | errors.ProtocolError | None = None
        self._goaway_sent: int | None = None
        self._goaway_received: int | None = None
        self._ping_id = 0
        self._ping_sent_at: float | None = None
        self._peer_ping_at: float | None = None  # the last PING SYN received
        self._write_blocked_since: float | None = None
        self._next_ping_at: float | None = now if self.config.keepalive_interval else None
        #: Set whenever ``get_timer()`` may have changed; a driver that re-reads it
        #: clears the flag, and may skip the read while it stays clear.
        self.timers_changed = True
        self._rtt: float | None = None
        self._rtt_smoothed: float | None = None
        self._pings_sent = 0
        self._streams_opened = 0
        self._streams_refused = 0
        self._bytes_sent = 0
        self._bytes_received = 0

    # -- state -------------------------------------------------------------------------

    @property
    def terminated(self) -> errors.MuxError | errors.ProtocolError | None:
        return self._terminated

    @property
    def rtt(self) -> float | None:
        return self._rtt

    @property
    def bytes_received_total(self) -> int:
        return self._bytes_received

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    @property
    def session_buffer(self) -> int:
        """Bytes received and not yet consumed, over all streams."""
        return sum(s.buffered for s in self._streams.values())

    @property
    def reserved(self) -> int:
        """Receive credit granted over all streams (bounded by ``max_session_buffer``)."""
        return self._reserved

    @property
    def going_away(self) -> bool:
        return self._goaway_sent is not None or self._goaway_received is not None

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def outbox_size(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.outbox_size if stream else 0

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview, now: float) -> None:
        """Feed bytes read from the transport (nothing refers to ``data`` afterwards)."""
        if self._terminated is not None:
            return
        self._bytes_received += len(data)
        limit = self.config.max_received
        if limit is not None and self._bytes_received > limit:
            self._fail(errors.RemoteProtocolError(f"peer sent more than its {limit} bytes"))
            return
        for frame in self._decoder.feed_raw(data):
            try:
                ftype = frame[0]
                if ftype == PING:
                    self._handle_ping(frame[1], frame[3], now)
                elif ftype == GO_AWAY:
                    self._handle_go_away(frame[3])
                else:
                    self._handle_stream_frame(frame, now)
            except errors.RemoteProtocolError as exc:
                self._fail(exc)
                return
            if not self._alive():
                return
        if self._decoder.error is not None:
            self._fail(self._decoder.error)

    def _alive(self) -> bool:
        return self._terminated is None

    def connection_lost(self, reason: str = "connection lost") -> None:
        """The transport is gone: end the session without sending anything."""
        if self._terminated is None:
            self._terminate(errors.SessionClosed(reason))

    def events_received(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    def _handle_ping(self, flags: int, opaque: int, now: float) -> None:
        if flags == SYN:
            self._peer_ping_at = now  # our own next ping may be skipped (handle_timer)
            if self._control_size < self.config.max_control_backlog:
                self._queue_control(encode_header(PING, ACK, 0, opaque))
        elif opaque == self._ping_id and self._ping_sent_at is not None:
            rtt = max(0.0, now - self._ping_sent_at)
            self._rtt = rtt
            prev = self._rtt_smoothed
            self._rtt_smoothed = rtt if prev is None else 0.875 * prev + 0.125 * rtt
            self._ping_sent_at = None
            interval = self.config.keepalive_interval
            self._next_ping_at = None if interval is None else now + interval
            self.timers_changed = True
            self._events.append(ev.PongReceived(rtt))

    def _handle_go_away(self, code: int) -> None:
        self._goaway_received = code
        self._events.append(ev.GoAwayReceived(code))
        if code != GoAwayCode.NORMAL:
            name = {1: "protocol error", 2: "internal error"}.get(code, "unknown code")
            self._terminate(errors.SessionGoneAway(f"peer went away with code {code} ({name})"))

    def _is_peer_id(self, stream_id: int) -> bool:
        return (stream_id % 2 == 0) if self.is_client else (stream_id % 2 == 1)

    def _was_used(self, stream_id: int) -> bool:
        if self._is_peer_id(stream_id):
            return stream_id <= self._last_peer_id
        return stream_id < self._next_id

    def _handle_stream_frame(self, frame: RawFrame, now: float) -> None:
        ftype, flags, sid, length, payload = frame
        if flags & SYN:
            stream = self._open_incoming(sid, now)
            if stream is None:
                return
        else:
            found = self._streams.get(sid)
            if found is None:
                if self._was_used(sid):
                    return  # late frame for a stream that is gone: discard
                raise errors.RemoteProtocolError(f"frame for unknown stream {sid}")
            stream = found
        stream.last_activity = now
        if flags & RST:
            refused = not stream.acked
            final = self._abort(stream, remote=True)
            error: errors.StreamError = (
                errors.StreamRefused(f"stream {sid} refused by peer")
                if refused
                else errors.StreamReset(f"stream {sid} reset by peer")
            )
            self._events.append(ev.StreamWasReset(sid, error, final))
            return
        if flags & ACK and not stream.acked:
            stream.acked = True
            stream.open_deadline = None
            self._pending_opens -= 1
            self._retime(stream)
            self._events.append(ev.StreamAcked(sid))
        if ftype == DATA:
            if length and not self._receive_payload(stream, payload, now):
                return
        elif length:
            self._grow_send_window(stream, length)
        if flags & FIN:
            self._receive_fin(stream)

    def _open_incoming(self, sid: int, now: float) -> _Stream | None:
        if not self._is_peer_id(sid):
            raise errors.RemoteProtocolError(f"peer opened stream {sid} with our id parity")
        if sid <= self._last_peer_id:
            raise errors.RemoteProtocolError(f"peer reused stream id {sid}")
        self._last_peer_id = sid
        cfg = self.config
        if (
            self._goaway_sent is not None
            or len(self._backlog) >= cfg.accept_backlog
            or len(self._streams) >= cfg.max_streams
            or self._reserved + INITIAL_WINDOW > cfg.max_session_buffer
        ):
            self._streams_refused += 1
            self._queue_control(encode_header(WINDOW_UPDATE, RST, sid, 0))
            return None
        stream = _Stream(sid, outbound=False, now=now)
        self._streams[sid] = stream
        self._reserved += INITIAL_WINDOW
        self._streams_opened += 1
        self._backlog.append(sid)
        self._events.append(ev.StreamIncoming(sid))
        return stream

    def _receive_payload(self, stream: _Stream, payload: bytes, now: float) -> bool:
        n = len(payload)
        sid = stream.stream_id
        if n > stream.recv_window:
            self._reset_with(
                stream, errors.StreamReset(f"peer sent {n} bytes beyond the window on {sid}")
            )
            return False
        try:
            next_state(stream.state, "recv_data", remote=True, stream_id=sid)
        except errors.RemoteProtocolError:
            self._reset_with(stream, errors.StreamReset(f"peer sent data after FIN on {sid}"))
            return False
        stream.recv_window -= n
        stream.bytes_received += n
        if stream.read_closed:
            self._replenish(stream, now)
            return True
        stream.buffered += n
        self._events.append(ev.DataReceived(sid, payload))
        return True

    def _grow_send_window(self, stream: _Stream, delta: int) -> None:
        if stream.send_window + delta > MAX_UINT32:
            self._reset_with(
                stream, errors.StreamReset(f"window overflow on stream {stream.stream_id}")
            )
            return
        was_blocked = stream.send_window == 0
        stream.send_window += delta
        if stream.outbox_size and was_blocked:
            stream.blocked_since = None
            self._retime(stream)
            self._mark_ready(stream)

    def _receive_fin(self, stream: _Stream) -> None:
        sid = stream.stream_id
        try:
            nxt = next_state(stream.state, "recv_fin", remote=True, stream_id=sid)
        except errors.RemoteProtocolError:
            self._reset_with(stream, errors.StreamReset(f"unexpected FIN on stream {sid}"))
            return
        stream.state = nxt
        self._events.append(ev.StreamEnded(sid))
        if nxt == _S.CLOSED:
            final = self._remove(stream)
            self._events.append(ev.StreamFinished(stream.stream_id, final))

    # -- application actions -----------------------------------------------------------

    def open_stream(self, now: float, data: bytes = b"", fin: bool = False) -> int:
        """Open a stream; ``data`` rides along with the SYN (no round trip)."""
        self._check_usable()
        cfg = self.config
        if self.going_away:
            raise errors.SessionGoneAway("session is going away: no new streams")
        if len(self._streams) >= cfg.max_streams:
            raise errors.LimitExceeded(f"stream limit reached ({cfg.max_streams})")
        if self._pending_opens >= cfg.max_pending_opens:
            raise errors.LimitExceeded(f"too many unacknowledged opens ({self._pending_opens})")
        if self._reserved + INITIAL_WINDOW > cfg.max_session_buffer:
            raise errors.LimitExceeded("session buffer budget spent")
        sid = self._next_id
        if sid > MAX_UINT32:
            raise errors.StreamIdsExhausted(f"stream ids exhausted (next would be {sid})")
        self._next_id += 2
        stream = _Stream(sid, outbound=True, now=now)
        stream.open_deadline = now + cfg.open_timeout
        self._streams[sid] = stream
        self._reserved += INITIAL_WINDOW
        self._pending_opens += 1
        self._streams_opened += 1
        self._retime(stream)
        # The SYN goes through the control queue so that opens reach the wire in id
        # order; the first data rides in it.
        first = data[: min(cfg.max_frame, INITIAL_WINDOW)]
        rest = data[len(first) :]
        ftype = DATA if first else WINDOW_UPDATE
        self._queue_control(encode_header(ftype, SYN, sid, len(first)))
        if first:
            self._queue_control(first)
            stream.send_window -= len(first)
            stream.bytes_sent += len(first)
        if rest:
            self._enqueue(stream, rest, now)
        if fin:
            self.send_eof(sid)
        return sid

    def accept_stream(self, now: float, stream_id: int | None = None) -> int | None:
        """Take a stream from the accept backlog and acknowledge it: ``stream_id`` if
        given (None if it is not waiting), else the oldest."""
        backlog = self._backlog
        if stream_id is not None:
            if stream_id not in self._streams or stream_id not in backlog:
                return None
            backlog.remove(stream_id)  # at the front when streams are served as they come
            self._acknowledge(self._streams[stream_id], now)
            return stream_id
        while backlog:
            sid = backlog.pop(0)
            stream = self._streams.get(sid)
            if stream is None:
                continue  # reset by the peer while it waited
            self._acknowledge(stream, now)
            return sid
        return None

    def _acknowledge(self, stream: _Stream, now: float) -> None:
        stream.accepted = True
        stream.last_activity = now
        if self.config.defer_ack:
            stream.ack_owed = True
        else:
            header = encode_header(WINDOW_UPDATE, ACK, stream.stream_id, 0)
            self._queue_control(header)

    def _ack(self, stream: _Stream) -> int:
        """The ACK flag if this stream still owes one (it is then paid)."""
        if stream.ack_owed:
            stream.ack_owed = False
            return ACK
        return 0

    def send_data(self, stream_id: int, data: bytes | memoryview, now: float) -> bool:
        """Queue bytes on a stream; returns True when the writer should pause."""
        stream = self._writable(stream_id)
        if data:
            self._enqueue(stream, data, now)
        if stream.outbox_size > self.config.outbox_high_water:
            stream.write_paused = True
        return stream.write_paused

    def send_eof(self, stream_id: int) -> None:
        """Half-close: FIN after everything queued so far."""
        stream = self._writable(stream_id)
        stream.fin_queued = True
        if not stream.outbox_size:
            self._send_fin(stream)

    def close_stream(self, stream_id: int, now: float) -> None:
        """Close both directions: FIN, drop unread data, reset if the peer lingers."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not stream.read_closed:
            stream.read_closed = True
            stream.buffered = 0
            self._replenish(stream, now)
        if not stream.fin_queued:
            self.send_eof(stream_id)
        if stream_id in self._streams and stream.state != _S.CLOSED:
            stream.close_deadline = now + self.config.close_timeout
            self._retime(stream)

    def reset_stream(self, stream_id: int) -> None:
        """Abort a stream at once (RST); anything queued is dropped."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._queue_control(encode_header(WINDOW_UPDATE, RST, stream_id, 0))
            self._abort(stream, remote=False)

    def consumed(self, stream_id: int, n: int, now: float) -> None:
        """The application took ``n`` received bytes: window credit may go back."""
        stream = self._streams.get(stream_id)
        if stream is None or n <= 0 or stream.read_closed:
            return
        if n > stream.buffered:
            raise errors.LocalProtocolError(
                f"consumed {n} bytes but only {stream.buffered} are buffered"
            )
        stream.buffered -= n
        self._replenish(stream, now)

    def ping(self, now: float) -> bool:
        """Send a ping now unless one is outstanding; returns whether one was sent.

        The opaque value is random: a peer that reads nothing cannot answer a ping it
        never saw, so keepalive proves that the peer reads (docs/mux.md).
        """
        if self._terminated is not None or self._ping_sent_at is not None:
            return False
        self._ping_id = secrets.randbits(32)
        self._ping_sent_at = now
        self.timers_changed = True
        self._pings_sent += 1
        self._queue_control(encode_header(PING, SYN, 0, self._ping_id))
        return True

    def reconfigure(self, config: MuxConfig, now: float) -> None:
        """Swap the limits of a live session (docs/mux.md, "Changing limits").

        The relay starts every session with tiny pre-authentication limits and raises
        them once the peer proved who it is. New limits apply to what comes next: the
        largest Data frame accepted, new streams, window growth, timers. Streams that
        exist keep their windows, so nothing granted to the peer is taken back.
        """
        self.config = config
        self._decoder.max_payload = config.max_window
        if config.keepalive_interval is None:
            self._next_ping_at = None
        elif self._next_ping_at is None and self._ping_sent_at is None:
            self._next_ping_at = now
        self.timers_changed = True

    def write_blocked(self, now: float) -> None:
        """The transport stopped taking bytes: ``drain_timeout`` ends the session."""
        if self._write_blocked_since is None:
            self._write_blocked_since = now
            self.timers_changed = True

    def write_unblocked(self) -> None:
        """The transport takes bytes again."""
        if self._write_blocked_since is not None:
            self._write_blocked_since = None
            self.timers_changed = True

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        """Tell the peer: no new streams (existing ones drain)."""
        if self._goaway_sent is None and self._terminated is None:
            self._goaway_sent = int(code)
            self._queue_control(encode_header(GO_AWAY, 0, 0, int(code)))

    # -- time --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next (None: nothing is timed)."""
        if self._terminated is not None:
            return None
        at: float | None = None
        if self._ping_sent_at is not None:
            at = self._ping_sent_at + self.config.keepalive_timeout
        elif self._next_ping_at is not None:
            at = self._next_ping_at
        if self._write_blocked_since is not None:
            at = _earlier(at, self._write_blocked_since + self.config.drain_timeout)
        stream_deadline = self._stream_deadline()
        if stream_deadline is not None:
            at = _earlier(at, stream_deadline)
        return at

    def _stream_deadline(self) -> float | None:
        """The earliest stream deadline, from the heap: O(log n), not a scan per call."""
        heap = self._deadlines
        wt = self.config.write_timeout
        while heap:
            at, sid = heap[0]
            stream = self._streams.get(sid) if sid in self._timed else None
            current = None if stream is None else stream.deadline(wt)
            if current == at:
                return at
            if current is None:
                heapq.heappop(heap)
            else:  # moved since it was pushed
                heapq.heapreplace(heap, (current, sid))
        return None

    def handle_timer(self, now: float) -> None:
        self.timers_changed = True  # whatever fired, the next deadline is read anew
        if self._terminated is not None:
            return
        cfg = self.config
        blocked = self._write_blocked_since
        if blocked is not None and now >= blocked + cfg.drain_timeout:
            self._terminate(
                errors.DrainTimeout(f"the peer read nothing for {cfg.drain_timeout:g} s")
            )
            return
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + cfg.keepalive_timeout:
                self._terminate(
                    errors.KeepaliveTimeout(
                        f"no keepalive reply within {cfg.keepalive_timeout:g} s"
                    )
                )
                return
        elif self._next_ping_at is not None and now >= self._next_ping_at:
            heard, interval = self._peer_ping_at, cfg.keepalive_interval
            if heard is not None and interval is not None and now - heard < interval:
                # The peer pinged within our interval: it is alive, and it reads (it
                # ends the session when our reply is late). Skip ours (docs/mux.md).
                self._next_ping_at = heard + interval
            else:
                self.ping(now)
        for sid in list(self._timed):
            stream = self._streams[sid]
            error: errors.StreamError | None = None
            if stream.open_deadline is not None and now >= stream.open_deadline:
                error = errors.OpenTimeout(f"stream {sid} not acknowledged in time")
            elif stream.close_deadline is not None and now >= stream.close_deadline:
                error = errors.CloseTimeout(f"stream {sid}: peer did not close in time")
            elif (
                stream.blocked_since is not None and now >= stream.blocked_since + cfg.write_timeout
            ):
                error = errors.WriteTimeout(f"stream {sid}: no window for {cfg.write_timeout:g} s")
            if error is not None:
                self._reset_with(stream, error)

    # -- output ------------------------------------------------------------------------

    def data_to_send(self, now: float, max_bytes: int | None = None) -> bytes:
        """Bytes for the transport: control frames first, then data, round-robin."""
        out: list[bytes | memoryview] = list(self._control)
        size = self._control_size
        self._control = []
        self._control_size = 0
        budget = max_bytes if max_bytes is not None else 1 << 62
        max_frame = self.config.max_frame
        ready = self._ready
        served = 0
        while served < len(ready) and size < budget:
            sid = ready[served]
            served += 1
            stream = self._streams.get(sid)
            if stream is None:
                continue
            if not stream.outbox_size or not stream.send_window:
                stream.in_ready = False
                continue
            n = min(max_frame, stream.send_window, stream.outbox_size)
            payload = self._take(stream, n)
            if not stream.outbox_size:
                stream.outbox = ()
            stream.send_window -= n
            stream.bytes_sent += n
            stream.last_activity = now
            out.append(encode_header(DATA, self._ack(stream), sid, n))
            out.append(payload)
            size += 12 + n
            if not stream.outbox_size and stream.fin_queued:
                # FIN in a frame of its own, as hashicorp/yamux sends it: some peers
                # (@libp2p/yamux 8) drop the payload of a Data frame that carries FIN.
                out.append(encode_header(WINDOW_UPDATE, FIN | self._ack(stream), sid, 0))
                size += 12
                self._advance_fin(stream)
            if stream.outbox_size and stream.send_window:
                ready.append(sid)
            else:
                stream.in_ready = False
                if stream.outbox_size:
                    stream.blocked_since = now
                    self._retime(stream)
            if stream.write_paused and stream.outbox_size <= self.config.outbox_high_water // 2:
                stream.write_paused = False
                self._events.append(ev.WriteReady(sid))
        del ready[:served]
        self._bytes_sent += size
        return b"".join(out)

    @property
    def wants_write(self) -> bool:
        return bool(self._control) or bool(self._ready)

    # -- statistics --------------------------------------------------------------------

    def snapshot(self) -> SessionSnapshot:
        term = self._terminated
        return SessionSnapshot(
            self.is_client,
            self._started_at,
            len(self._streams),
            self._streams_opened,
            self._streams_refused,
            self._bytes_sent,
            self._bytes_received,
            self._rtt,
            self._rtt_smoothed,
            self._pings_sent,
            self._goaway_sent,
            self._goaway_received,
            self.session_buffer,
            None if term is None else str(term),
            tuple(self._stream_snapshot(s) for s in self._streams.values()),
        )

    def stream_snapshot(self, stream_id: int) -> StreamSnapshot | None:
        stream = self._streams.get(stream_id)
        return None if stream is None else self._stream_snapshot(stream)

    @staticmethod
    def _stream_snapshot(s: _Stream) -> StreamSnapshot:
        # tuple.__new__, not StreamSnapshot(...): the NamedTuple's own __new__ is a Python
        # function, which the compiled build would call for every finished stream.
        return tuple.__new__(
            StreamSnapshot,
            (
                s.stream_id,
                s.outbound,
                s.state,
                s.acked,
                s.bytes_sent,
                s.bytes_received,
                s.opened_at,
                s.last_activity,
                s.send_window,
                s.recv_window,
                s.buffered,
                s.outbox_size,
            ),
        )

    # -- internals ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._terminated is not None:
            if isinstance(self._terminated, errors.SessionClosed):
                raise self._terminated
            raise errors.SessionClosed(str(self._terminated))

    def _writable(self, stream_id: int) -> _Stream:
        self._check_usable()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise errors.StreamClosed(f"stream {stream_id} is gone")
        if stream.fin_queued:
            raise errors.StreamClosed(f"stream {stream_id} is closed for writing")
        return stream

    def _enqueue(self, stream: _Stream, data: bytes | memoryview, now: float) -> None:
        box = stream.outbox
        if not isinstance(box, deque):
            box = stream.outbox = deque()
        box.append(data)
        stream.outbox_size += len(data)
        stream.last_activity = now
        if stream.send_window:
            self._mark_ready(stream)
        elif stream.blocked_since is None:
            stream.blocked_since = now
            self._retime(stream)

    def _mark_ready(self, stream: _Stream) -> None:
        if not stream.in_ready:
            stream.in_ready = True
            self._ready.append(stream.stream_id)

    @staticmethod
    def _take(stream: _Stream, n: int) -> bytes | memoryview:
        box = stream.outbox
        assert isinstance(box, deque)
        first = box[0]
        if len(first) == n:
            box.popleft()
            stream.outbox_size -= n
            return first
        if len(first) > n:
            view = first if isinstance(first, memoryview) else memoryview(first)
            box[0] = view[n:]
            stream.outbox_size -= n
            return view[:n]
        parts: list[bytes | memoryview] = []
        need = n
        while need:
            chunk = box[0]
            if len(chunk) <= need:
                box.popleft()
                parts.append(chunk)
                need -= len(chunk)
            else:
                view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                parts.append(view[:need])
                box[0] = view[need:]
                need = 0
        stream.outbox_size -= n
        return b"".join(parts)

    def _send_fin(self, stream: _Stream) -> None:
        flags = FIN | self._ack(stream)
        self._queue_control(encode_header(WINDOW_UPDATE, flags, stream.stream_id, 0))
        self._advance_fin(stream)

    def _advance_fin(self, stream: _Stream) -> None:
        nxt = next_state(stream.state, "send_fin", remote=False, stream_id=stream.stream_id)
        stream.state = nxt
        if nxt == _S.CLOSED:
            final = self._remove(stream)
            self._events.append(ev.StreamFinished(stream.stream_id, final))

    def _replenish(self, stream: _Stream, now: float) -> None:
        """Send a window update once half the window is free again.

        The window doubles (up to ``max_window``, within the session budget) when half of
        it was consumed in less than two round trips while the reader kept up: the window,
        not the reader, is what limits the stream (the auto-tuning of QUIC stacks).
        """
        size = stream.recv_size
        room = size - stream.recv_window - stream.buffered
        if room < size // 2 or stream.state in (_S.REMOTE_CLOSED, _S.CLOSED):
            return
        cfg = self.config
        rtt = self._rtt_smoothed if self._rtt_smoothed is not None else cfg.initial_rtt
        elapsed = now - stream.last_update_at
        stream.last_update_at = now
        if (
            elapsed < 2 * rtt
            and stream.buffered < size // 4
            and size < cfg.max_window
            and not stream.read_closed
        ):
            grown = min(size * 2, cfg.max_window)
            if self._reserved + grown - size <= cfg.max_session_buffer:
                self._reserved += grown - size
                stream.recv_size = grown
                room += grown - size
        stream.recv_window += room
        flags = self._ack(stream)
        self._queue_control(encode_header(WINDOW_UPDATE, flags, stream.stream_id, room))

    def _queue_control(self, frame: bytes) -> None:
        self._control.append(frame)
        self._control_size += len(frame)

    def _retime(self, stream: _Stream) -> None:
        self.timers_changed = True
        deadline = stream.deadline(self.config.write_timeout)
        if deadline is None:
            self._timed.discard(stream.stream_id)
        else:
            self._timed.add(stream.stream_id)
            heapq.heappush(self._deadlines, (deadline, stream.stream_id))
            if len(self._deadlines) > 2 * len(self._timed) + 64:
                self._rebuild_deadlines()

    def _rebuild_deadlines(self) -> None:
        wt = self.config.write_timeout
        entries = [(self._streams[sid].deadline(wt), sid) for sid in self._timed]
        self._deadlines = [(at, sid) for at, sid in entries if at is not None]
        heapq.heapify(self._deadlines)

    def _reset_with(self, stream: _Stream, error: errors.StreamError) -> None:
        self._queue_control(encode_header(WINDOW_UPDATE, RST, stream.stream_id, 0))
        final = self._abort(stream, remote=False)
        self._events.append(ev.StreamWasReset(stream.stream_id, error, final))

    def _abort(self, stream: _Stream, *, remote: bool) -> StreamSnapshot:
        """Reset ``stream`` (``remote``: by the peer's RST) and take it out of the session."""
        stream.state = next_state(stream.state, "rst", remote=remote, stream_id=stream.stream_id)
        return self._remove(stream)

    def _remove(self, stream: _Stream) -> StreamSnapshot:
        """Free a stream that reached ``CLOSED`` or ``RESET``; its final counters."""
        sid = stream.stream_id
        del self._streams[sid]  # the table let a live stream only get here
        self._reserved -= stream.recv_size
        if not stream.acked:
            self._pending_opens -= 1
        self._timed.discard(sid)
        stream.in_ready = False
        stream.outbox = ()
        stream.outbox_size = 0
        stream.buffered = 0
        return self._stream_snapshot(stream)

    def _fail(self, exc: errors.RemoteProtocolError) -> None:
        self.go_away(GoAwayCode.PROTOCOL_ERROR)
        self._terminate(exc)

    def _terminate(self, error: errors.MuxError | errors.ProtocolError) -> None:
        self._terminated = error
        self.timers_changed = True
        for stream in list(self._streams.values()):
            self._abort(stream, remote=False)
        self._backlog.clear()
        self._ready.clear()
        self._events.append(ev.SessionTerminated(error))
