"""Immutable statistics snapshots of a session and its streams.

Snapshots are plain tuples (NamedTuple) so that taking one ten times a second with
thousands of streams stays cheap; the counters behind them are updated in place.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class StreamState(enum.Enum):
    OPEN = "open"
    LOCAL_CLOSED = "local-closed"  # we sent FIN, the peer may still send
    REMOTE_CLOSED = "remote-closed"  # the peer sent FIN, we may still send
    CLOSED = "closed"
    RESET = "reset"

    # Members are singletons compared by identity: hash them so too, in C (``Enum``'s own
    # ``__hash__`` is a Python call, made on every state-table lookup).
    __hash__ = object.__hash__


class StreamSnapshot(NamedTuple):
    stream_id: int
    outbound: bool
    state: StreamState
    acked: bool
    bytes_sent: int
    bytes_received: int
    opened_at: float
    last_activity: float
    send_window: int
    recv_window: int
    buffered: int
    outbox: int


class SessionSnapshot(NamedTuple):
    is_client: bool
    started_at: float
    streams_open: int
    streams_opened: int
    streams_refused: int
    bytes_sent: int
    bytes_received: int
    rtt: float | None
    rtt_smoothed: float | None
    pings_sent: int
    goaway_sent: int | None
    goaway_received: int | None
    session_buffer: int
    terminated: str | None
    streams: tuple[StreamSnapshot, ...]
