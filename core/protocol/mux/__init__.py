"""Sans-I/O yamux multiplexer: frames, the session state machine, its events and stats."""

from core.protocol.mux.config import INITIAL_WINDOW, MuxConfig
from core.protocol.mux.frames import Flag, Frame, FrameDecoder, FrameType, GoAwayCode
from core.protocol.mux.session import MuxSession
from core.protocol.mux.stats import SessionSnapshot, StreamSnapshot, StreamState

__all__ = [
    "INITIAL_WINDOW",
    "Flag",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAwayCode",
    "MuxConfig",
    "MuxSession",
    "SessionSnapshot",
    "StreamSnapshot",
    "StreamState",
]
