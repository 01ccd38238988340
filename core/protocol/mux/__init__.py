"""Sans-I/O yamux multiplexer: frames, the session state machine, its events and stats."""

from core.protocol.mux.config import INITIAL_WINDOW, MuxConfig
from core.protocol.mux.frames import Flag, Frame, FrameType, GoAwayCode, MuxFrameDecoder
from core.protocol.mux.session import MuxSession
from core.protocol.mux.stats import SessionSnapshot, StreamSnapshot, StreamState

__all__ = [
    "INITIAL_WINDOW",
    "Flag",
    "Frame",
    "FrameType",
    "GoAwayCode",
    "MuxConfig",
    "MuxFrameDecoder",
    "MuxSession",
    "SessionSnapshot",
    "StreamSnapshot",
    "StreamState",
]
