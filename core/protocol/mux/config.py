"""Multiplexer limits and timeouts: one frozen value per session."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError

#: Both sides start every stream with this receive window (fixed by the yamux spec).
INITIAL_WINDOW = 256 * 1024
KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class MuxConfig:
    """Limits, windows and timeouts of one session (seconds for times).

    Defaults follow hashicorp/yamux where it is sound and tighten it where it is not: a
    per-stream window that grows to ``max_window`` (FRP's lesson: 256 KiB throttles long
    links), a session-wide buffer budget, a write timeout that resets its stream.
    """

    max_window: int = 16 * MiB
    max_frame: int = 64 * KiB
    accept_backlog: int = 256
    max_streams: int = 4096
    max_pending_opens: int = 1024
    max_session_buffer: int = 1024 * MiB
    outbox_high_water: int = 256 * KiB
    keepalive_interval: float | None = 30.0
    keepalive_timeout: float = 10.0
    open_timeout: float = 30.0
    close_timeout: float = 60.0
    write_timeout: float = 30.0
    max_control_backlog: int = 1 * MiB
    #: A transport that takes no bytes for this long (the peer stopped reading) ends
    #: the session; so does a closed one that does not drain in this time.
    drain_timeout: float = 15.0
    #: Bytes the session may receive in all (None: no bound): the relay's budget for a
    #: peer that has not authenticated yet (docs/mux.md, "Changing limits").
    max_received: int | None = None
    initial_rtt: float = 0.1  # assumed until the first keepalive reply measures it
    #: Acknowledge an accepted inbound stream with the first frame sent on it (data,
    #: window update or FIN; any yamux frame may carry ACK) instead of a bare window
    #: update at once: one frame, TLS record and peer wake-up less per stream. The
    #: application must then send something (or close or reset the stream) within the
    #: opener's ``open_timeout``.
    defer_ack: bool = False

    def __post_init__(self) -> None:
        if not INITIAL_WINDOW <= self.max_window < 2**31:
            raise ConfigError(f"max_window must be in [{INITIAL_WINDOW}, 2**31)")
        if not 1 <= self.max_frame <= self.max_window:
            raise ConfigError("max_frame must be in [1, max_window]")
        if self.max_session_buffer < INITIAL_WINDOW:
            raise ConfigError("max_session_buffer must hold at least one stream window")
        for name in ("accept_backlog", "max_streams", "max_pending_opens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        timeouts = ("keepalive_timeout", "open_timeout", "close_timeout", "write_timeout")
        for name in (*timeouts, "drain_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_received is not None and self.max_received < 1:
            raise ConfigError("max_received must be at least 1, or None")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise ConfigError("keepalive_interval must be positive or None")
