"""Events the session state machine reports to its adapter.

No event shares a name with an exception in ``core.errors``: a reset stream is the
``StreamWasReset`` event, whose ``error`` may be the ``StreamReset`` exception (or
``StreamRefused``, ``OpenTimeout`` ...). The field lists look alike on purpose (one
frozen dataclass per event, as h11 and h2 do); they share no logic to fold.

Each writes its own ``__init__`` (``init=False``): in the compiled build (``core.compiled``)
that one is C, where the one ``dataclass`` generates stays a Python function, called for
every event (the most-created objects on the data path, one or two per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import MuxError, ProtocolError, StreamError
from core.protocol.mux.stats import StreamSnapshot


@dataclass(frozen=True, slots=True, init=False)
class StreamIncoming:
    """The peer opened a stream; it waits in the accept backlog."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        object.__setattr__(self, "stream_id", stream_id)


@dataclass(frozen=True, slots=True, init=False)
class StreamAcked:
    """The peer acknowledged a stream we opened."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        object.__setattr__(self, "stream_id", stream_id)


@dataclass(frozen=True, slots=True, init=False)
class DataReceived:
    stream_id: int
    data: bytes

    def __init__(self, stream_id: int, data: bytes) -> None:
        object.__setattr__(self, "stream_id", stream_id)
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True, init=False)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        object.__setattr__(self, "stream_id", stream_id)


@dataclass(frozen=True, slots=True, init=False)
class StreamFinished:
    """Both directions finished cleanly (FIN each way); the stream is gone from the session."""

    stream_id: int
    final: StreamSnapshot

    def __init__(self, stream_id: int, final: StreamSnapshot) -> None:
        object.__setattr__(self, "stream_id", stream_id)
        object.__setattr__(self, "final", final)


@dataclass(frozen=True, slots=True, init=False)
class StreamWasReset:
    """The stream was aborted, by the peer's RST or by ours (a timeout, a bad frame).

    It is gone; ``error`` says why (the exception a reader or writer of it gets).
    """

    stream_id: int
    error: StreamError
    final: StreamSnapshot

    def __init__(self, stream_id: int, error: StreamError, final: StreamSnapshot) -> None:
        object.__setattr__(self, "stream_id", stream_id)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "final", final)


@dataclass(frozen=True, slots=True, init=False)
class WriteReady:
    """A stream's outbox drained below half the high-water mark: writers may go on."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        object.__setattr__(self, "stream_id", stream_id)


@dataclass(frozen=True, slots=True, init=False)
class PongReceived:
    rtt: float

    def __init__(self, rtt: float) -> None:
        object.__setattr__(self, "rtt", rtt)


@dataclass(frozen=True, slots=True, init=False)
class GoAwayReceived:
    code: int

    def __init__(self, code: int) -> None:
        object.__setattr__(self, "code", code)


@dataclass(frozen=True, slots=True, init=False)
class SessionTerminated:
    """The session is over; every stream still open is gone with it."""

    error: MuxError | ProtocolError

    def __init__(self, error: MuxError | ProtocolError) -> None:
        object.__setattr__(self, "error", error)


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
