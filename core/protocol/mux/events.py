"""Events the session state machine reports to its adapter.

No event shares a name with an exception in ``core.errors``: a reset stream is the
``StreamWasReset`` event, whose ``error`` may be the ``StreamReset`` exception (or
``StreamRefused``, ``OpenTimeout`` ...). The field lists look alike on purpose (one
frozen dataclass per event, as h11 and h2 do); they share no logic to fold.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import MuxError, ProtocolError, StreamError
from core.protocol.mux.stats import StreamSnapshot


@dataclass(frozen=True, slots=True)
class StreamIncoming:
    """The peer opened a stream; it waits in the accept backlog."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAcked:
    """The peer acknowledged a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamFinished:
    """Both directions finished cleanly (FIN each way); the stream is gone from the session."""

    stream_id: int
    final: StreamSnapshot


@dataclass(frozen=True, slots=True)
class StreamWasReset:
    """The stream was aborted, by the peer's RST or by ours (a timeout, a bad frame).

    It is gone; ``error`` says why (the exception a reader or writer of it gets).
    """

    stream_id: int
    error: StreamError
    final: StreamSnapshot


@dataclass(frozen=True, slots=True)
class WriteReady:
    """A stream's outbox drained below half the high-water mark: writers may go on."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: int


@dataclass(frozen=True, slots=True)
class SessionTerminated:
    """The session is over; every stream still open is gone with it."""

    error: MuxError | ProtocolError


Event = (
    StreamIncoming
    | StreamAcked
    | DataReceived
    | StreamEnded
    | StreamFinished
    | StreamWasReset
    | WriteReady
    | PongReceived
    | GoAwayReceived
    | SessionTerminated
)
