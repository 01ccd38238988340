"""yamux frame header: constants, encoding, and the incremental frame decoder.

The decoder checks every header field before a payload byte is buffered, so a declared
4 GiB length costs nothing (GHSA-26gq-p25f-99cp crashed frps with five bytes).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from core.errors import RemoteProtocolError

HEADER = struct.Struct(">BBHII")
HEADER_SIZE: Final = 12
VERSION: Final = 0


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


ALL_FLAGS: Final = 0xF  # a plain int: ~ on an IntFlag stays within its members
MAX_UINT32: Final = 0xFFFFFFFF
#: ``FrameType`` and ``Flag`` values as plain constants, for the hot path (an enum member
#: is an attribute lookup and a rich comparison each time it is used; ``Final`` lets the
#: compiled build inline them). tests/protocol/test_mux_frames.py checks they agree.
DATA: Final = 0
WINDOW_UPDATE: Final = 1
PING: Final = 2
GO_AWAY: Final = 3
SYN: Final = 0x1
ACK: Final = 0x2
FIN: Final = 0x4
RST: Final = 0x8

RawFrame = tuple[int, int, int, int, bytes]
"""``(type, flags, stream_id, length, payload)`` as plain ints: what the session reads.
``Frame`` is the same frame as a value with enum fields, for everyone else."""


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
    if ftype > GO_AWAY:
        raise RemoteProtocolError(f"unknown frame type {ftype}")
    if flags & ~ALL_FLAGS:
        raise RemoteProtocolError(f"unknown flags 0x{flags:04x} on {FrameType(ftype).name}")
    if (flags & (SYN | ACK)) == SYN | ACK:
        raise RemoteProtocolError("SYN and ACK on one frame")
    if ftype >= PING:
        if stream_id != 0:
            raise RemoteProtocolError(f"{FrameType(ftype).name} on stream {stream_id}")
    elif stream_id == 0:
        raise RemoteProtocolError(f"{FrameType(ftype).name} on stream 0")
    if ftype == PING and flags not in (SYN, ACK):
        raise RemoteProtocolError(f"ping with flags 0x{flags:x} (want SYN or ACK)")
    if ftype == GO_AWAY and flags:
        raise RemoteProtocolError(f"go-away with flags 0x{flags:x}")


#: Enum members by wire value, for headers that passed ``_check_header``.
_TYPES = tuple(FrameType)
_FLAGS = tuple(Flag(bits) for bits in range(ALL_FLAGS + 1))


class MuxFrameDecoder:
    """Turns a byte stream into frames, one header check at a time.

    ``max_payload`` bounds a Data frame's declared length; a longer one is a protocol
    error before any of its payload is kept. After an error the decoder keeps it in
    ``error`` and decodes nothing more.

    Whole frames are parsed straight from the bytes fed (payloads are sliced out once);
    only a frame cut by the end of a chunk is kept, in ``_buf``, until it is complete.

    API: ``feed()`` returns the frames at once and never raises: the session handles
    them, then turns ``error`` into a GoAway. ``feed_raw()`` is the same as tuples of
    ints, without a ``Frame`` object per frame (the session's path: one per frame costs
    more than the rest of the decoding). (``core.protocol.spdy.SpdyFrameDecoder`` is the
    SPDY one: ``receive_data()`` then ``next_frame()``, which raises.)
    """

    __slots__ = ("_buf", "error", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self._buf = bytearray()
        self.error: RemoteProtocolError | None = None
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        """Add bytes; return every complete frame before the first invalid header.

        The first invalid header sets ``error``; what follows it is never decoded, so
        feeding byte by byte and feeding at once give the same frames and error.
        """
        return [
            Frame(_TYPES[ftype], _FLAGS[flags], sid, length, payload)
            for ftype, flags, sid, length, payload in self.feed_raw(data)
        ]

    def feed_raw(self, data: bytes | memoryview) -> list[RawFrame]:
        """``feed()``, each frame as ``(type, flags, stream_id, length, payload)``."""
        if self.error is not None:
            return []
        frames: list[RawFrame] = []
        view = memoryview(data)
        try:
            pos = self._complete(view, frames) if self._buf else 0
            if pos >= 0:
                self._parse(view, pos, frames)
        except RemoteProtocolError as exc:
            self.error = exc
            self._buf.clear()
        return frames

    def _check_length(self, ftype: int, stream_id: int, length: int) -> None:
        if ftype == DATA and length > self.max_payload:
            raise RemoteProtocolError(
                f"data frame of {length} bytes on stream {stream_id} "
                f"exceeds the largest window ({self.max_payload})"
            )

    def _complete(self, view: memoryview, frames: list[RawFrame]) -> int:
        """Finish the frame kept from earlier chunks; return where ``view`` goes on.

        -1: all of ``view`` was kept, the frame is still incomplete.
        """
        buf = self._buf
        pos = 0
        if len(buf) < HEADER_SIZE:
            pos = HEADER_SIZE - len(buf)
            buf += view[:pos]
            if len(buf) < HEADER_SIZE:
                return -1
        version, ftype, flags, stream_id, length = HEADER.unpack_from(buf)
        if pos:  # the header is complete only now
            _check_header(version, ftype, flags, stream_id)
            self._check_length(ftype, stream_id, length)
        need = (length if ftype == DATA else 0) - (len(buf) - HEADER_SIZE)
        if len(view) - pos < need:
            buf += view[pos:]
            return -1
        payload = b""
        if ftype == DATA and length:
            with memoryview(buf) as held:
                payload = b"".join((held[HEADER_SIZE:], view[pos : pos + need]))
        buf.clear()
        frames.append((ftype, flags, stream_id, length, payload))
        return pos + need

    def _parse(self, view: memoryview, pos: int, frames: list[RawFrame]) -> None:
        end = len(view)
        unpack = HEADER.unpack_from
        append = frames.append
        max_payload = self.max_payload
        while end - pos >= HEADER_SIZE:
            version, ftype, flags, stream_id, length = unpack(view, pos)
            _check_header(version, ftype, flags, stream_id)
            start = pos + HEADER_SIZE
            if ftype == DATA:
                if length > max_payload:
                    self._check_length(ftype, stream_id, length)
                stop = start + length
                if stop > end:
                    break
                append((ftype, flags, stream_id, length, view[start:stop].tobytes()))
                pos = stop
            else:
                append((ftype, flags, stream_id, length, b""))
                pos = start
        if pos < end:
            self._buf += view[pos:]
