"""Events the session state machine reports to its adapter."""

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
class StreamClosed:
    """Both directions finished cleanly; the stream is gone from the session."""

    stream_id: int
    final: StreamSnapshot


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was aborted (by the peer, or by a local timeout); it is gone."""

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
    | StreamClosed
    | StreamReset
    | WriteReady
    | PongReceived
    | GoAwayReceived
    | SessionTerminated
)
