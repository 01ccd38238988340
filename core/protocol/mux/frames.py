"""yamux frame header: constants, encoding, and the incremental frame decoder.

The decoder checks every header field before a payload byte is buffered, so a declared
4 GiB length costs nothing (GHSA-26gq-p25f-99cp crashed frps with five bytes).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from core.errors import RemoteProtocolError

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size
VERSION = 0


class FrameType(enum.IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    NONE = 0
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


ALL_FLAGS = 0xF  # a plain int: ~ on an IntFlag stays within its members
MAX_UINT32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; ``payload`` is non-empty for Data frames only."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int
    payload: bytes = b""


def encode_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    return HEADER.pack(VERSION, ftype, flags, stream_id, length)


def encode_frame(frame: Frame) -> bytes:
    return encode_header(frame.type, frame.flags, frame.stream_id, frame.length) + frame.payload


def _check_header(version: int, ftype: int, flags: int, stream_id: int) -> None:
    if version != VERSION:
        raise RemoteProtocolError(f"unsupported yamux version {version}")
    if ftype > FrameType.GO_AWAY:
        raise RemoteProtocolError(f"unknown frame type {ftype}")
    if flags & ~ALL_FLAGS:
        raise RemoteProtocolError(f"unknown flags 0x{flags:04x} on {FrameType(ftype).name}")
    if flags & Flag.SYN and flags & Flag.ACK:
        raise RemoteProtocolError("SYN and ACK on one frame")
    if ftype in (FrameType.PING, FrameType.GO_AWAY):
        if stream_id != 0:
            raise RemoteProtocolError(f"{FrameType(ftype).name} on stream {stream_id}")
    elif stream_id == 0:
        raise RemoteProtocolError(f"{FrameType(ftype).name} on stream 0")
    if ftype == FrameType.PING and flags not in (Flag.SYN, Flag.ACK):
        raise RemoteProtocolError(f"ping with flags 0x{flags:x} (want SYN or ACK)")
    if ftype == FrameType.GO_AWAY and flags:
        raise RemoteProtocolError(f"go-away with flags 0x{flags:x}")


class FrameDecoder:
    """Turns a byte stream into frames, one header check at a time.

    ``max_payload`` bounds a Data frame's declared length; a longer one is a protocol
    error before any of its payload is kept. After an error the decoder keeps it in
    ``error`` and decodes nothing more.
    """

    __slots__ = ("_buf", "_pos", "error", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.error: RemoteProtocolError | None = None
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every complete frame before the first invalid header.

        The first invalid header sets ``error``; what follows it is never decoded, so
        feeding byte by byte and feeding at once give the same frames and error.
        """
        if self.error is not None:
            return []
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = self._pos
        end = len(buf)
        unpack = HEADER.unpack_from
        view = memoryview(buf)
        try:
            while end - pos >= HEADER_SIZE:
                version, ftype, flags, stream_id, length = unpack(buf, pos)
                _check_header(version, ftype, flags, stream_id)
                if ftype == FrameType.DATA:
                    if length > self.max_payload:
                        raise RemoteProtocolError(
                            f"data frame of {length} bytes on stream {stream_id} "
                            f"exceeds the largest window ({self.max_payload})"
                        )
                    if end - pos - HEADER_SIZE < length:
                        break
                    start = pos + HEADER_SIZE
                    payload = bytes(view[start : start + length])
                    pos = start + length
                else:
                    payload = b""
                    pos += HEADER_SIZE
                frames.append(Frame(FrameType(ftype), Flag(flags), stream_id, length, payload))
        except RemoteProtocolError as exc:
            view.release()
            self.error = exc
            buf.clear()
            self._pos = 0
            return frames
        view.release()
        if pos == end:
            buf.clear()
            self._pos = 0
        elif pos > 65536 and pos * 2 > end:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return frames
