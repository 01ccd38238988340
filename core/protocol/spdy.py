"""SPDY/3.1 framing as kubectl's library speaks it, without I/O.

Three layers, each usable on its own:

* frames (``DataFrame``, ``SynStream`` ...) and the header-block codec: one zlib stream
  per direction per connection, primed with the SPDY/3 dictionary, SYNC_FLUSH after
  every block;
* ``SpdyFrameDecoder`` / ``SpdyFrameEncoder``: bytes in, frames out (and back). A
  passive inspector runs one ``SpdyFrameDecoder`` per direction of a connection and
  sees every frame, in either direction, without taking part;
* ``SpdyConnection``: one endpoint's state (stream ids, replies, PING echo) on top of the
  codec: ``receive_data()``, ``events_received()``, ``data_to_send()``.

Flow control (WINDOW_UPDATE, SETTINGS) is parsed but never acted on, as in kubectl's
library. Invalid input raises ``RemoteProtocolError``; misuse raises ``LocalProtocolError``.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from core.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DICTIONARY_SHA256",
    "MAX_HEADER_BLOCK",
    "ControlType",
    "DataFrame",
    "Frame",
    "GoAway",
    "GoAwayReceived",
    "HeaderCompressor",
    "HeaderDecompressor",
    "Headers",
    "HeadersFrame",
    "Ping",
    "PingAcked",
    "PingReceived",
    "RstStatus",
    "RstStream",
    "RstStreamReceived",
    "Settings",
    "SpdyConnection",
    "SpdyEvent",
    "SpdyFrameDecoder",
    "SpdyFrameEncoder",
    "StreamDataReceived",
    "StreamEnded",
    "StreamOpened",
    "StreamReplied",
    "SynReply",
    "SynStream",
    "UnknownControlFrame",
    "WindowUpdate",
    "decode_header_block",
    "encode_header_block",
    "header_dictionary",
]

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = 0xFFFFFF
MAX_HEADER_BLOCK = 256 * 1024
"""Largest decompressed header block accepted (decompression-bomb bound)."""
DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")


class ControlType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


_dictionary: bytes | None = None


def header_dictionary() -> bytes:
    """The SPDY/3 zlib dictionary (1423 bytes), loaded once from package data."""
    global _dictionary  # noqa: PLW0603
    if _dictionary is None:
        data = resources.files("core.protocol").joinpath("data/spdy3-dictionary.bin").read_bytes()
        if hashlib.sha256(data).hexdigest() != DICTIONARY_SHA256:
            raise LocalProtocolError("the packaged SPDY/3 dictionary is corrupt")
        _dictionary = data
    return _dictionary


# -- header blocks -------------------------------------------------------------------

Headers = dict[str, list[str]]
"""Header names (lowercase) to their values, as Go's ``http.Header``."""


def encode_header_block(headers: Mapping[str, Sequence[str]]) -> bytes:
    """Uncompressed SPDY/3 name/value block; values of one name are joined by NUL."""
    parts = [_U32.pack(len(headers))]
    for name, values in headers.items():
        raw_name = name.lower().encode("latin-1")
        if not raw_name:
            raise LocalProtocolError("empty header name")
        raw_value = b"\0".join(v.encode("latin-1") for v in values)
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; structural errors are the peer's."""
    view = memoryview(block)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise RemoteProtocolError("truncated SPDY header block")
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    (count,) = _U32.unpack(take(4))
    if count * 8 > len(view) - 4:
        raise RemoteProtocolError("SPDY header block counts more pairs than it holds")
    headers: Headers = {}
    for _ in range(count):
        (name_len,) = _U32.unpack(take(4))
        name = take(name_len).decode("latin-1").lower()
        (value_len,) = _U32.unpack(take(4))
        value = take(value_len).decode("latin-1")
        if not name:
            raise RemoteProtocolError("empty SPDY header name")
        if name in headers:
            raise RemoteProtocolError(f"duplicate SPDY header {name!r}")
        headers[name] = value.split("\0")
    if pos != len(view):
        raise RemoteProtocolError("trailing bytes after SPDY header block")
    return headers


class HeaderCompressor:
    """One direction's header zlib stream (compressing side)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zdict=header_dictionary())

    def compress(self, headers: Mapping[str, Sequence[str]]) -> bytes:
        block = encode_header_block(headers)
        return self._zlib.compress(block) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """One direction's header zlib stream (decompressing side)."""

    def __init__(self, max_block: int = MAX_HEADER_BLOCK) -> None:
        self._zlib = zlib.decompressobj(zdict=header_dictionary())
        self._max_block = max_block

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._zlib.decompress(data, self._max_block)
        except zlib.error as exc:
            raise RemoteProtocolError(f"bad SPDY header compression: {exc}") from exc
        if self._zlib.unconsumed_tail:
            raise RemoteProtocolError("SPDY header block too large")
        if self._zlib.eof:
            raise RemoteProtocolError("SPDY header zlib stream ended")
        return decode_header_block(block)


# -- frames --------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    fin: bool = False
    unidirectional: bool = False
    associated_stream_id: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()
    """(flags, id, value) triples."""
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControlFrame:
    """A control frame of a type SPDY/3.1 says to ignore (e.g. CREDENTIAL)."""

    type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame
    | SynStream
    | SynReply
    | RstStream
    | Settings
    | Ping
    | GoAway
    | HeadersFrame
    | WindowUpdate
    | UnknownControlFrame
)


def _u31(value: int, what: str) -> int:
    if not 0 <= value < 2**31:
        raise LocalProtocolError(f"{what} {value} out of range")
    return value


def _control(ctype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise LocalProtocolError("SPDY frame payload too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ctype, (flags << 24) | len(payload)) + payload


class SpdyFrameEncoder:
    """Serialises frames of one direction (owns that direction's header compressor)."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case DataFrame(stream_id, data, fin):
                if len(data) > MAX_LENGTH:
                    raise LocalProtocolError("SPDY data frame too large")
                head = struct.pack(">II", _u31(stream_id, "stream id"), (fin << 24) | len(data))
                return head + data
            case SynStream():
                flags = (FLAG_FIN if frame.fin else 0) | (
                    FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
                )
                if not 0 <= frame.priority < 8 or not 0 <= frame.slot < 256:
                    raise LocalProtocolError("SPDY priority or slot out of range")
                payload = (
                    _TWO_U32.pack(
                        _u31(frame.stream_id, "stream id"),
                        _u31(frame.associated_stream_id, "associated stream id"),
                    )
                    + bytes([frame.priority << 5, frame.slot])
                    + self._headers.compress(frame.headers)
                )
                return _control(ControlType.SYN_STREAM, flags, payload)
            case SynReply(stream_id, headers, fin) | HeadersFrame(stream_id, headers, fin):
                reply = isinstance(frame, SynReply)
                ctype = ControlType.SYN_REPLY if reply else ControlType.HEADERS
                payload = _U32.pack(_u31(stream_id, "stream id")) + self._headers.compress(headers)
                return _control(ctype, FLAG_FIN if fin else 0, payload)
            case RstStream(stream_id, status):
                payload = _TWO_U32.pack(_u31(stream_id, "stream id"), status)
                return _control(ControlType.RST_STREAM, 0, payload)
            case Settings(entries, clear):
                payload = _U32.pack(len(entries)) + b"".join(
                    _TWO_U32.pack((flags << 24) | ident, value) for flags, ident, value in entries
                )
                return _control(ControlType.SETTINGS, 1 if clear else 0, payload)
            case Ping(ping_id):
                return _control(ControlType.PING, 0, _U32.pack(ping_id))
            case GoAway(last, status):
                return _control(
                    ControlType.GOAWAY, 0, _TWO_U32.pack(_u31(last, "stream id"), status)
                )
            case WindowUpdate(stream_id, delta):
                payload = _TWO_U32.pack(_u31(stream_id, "stream id"), _u31(delta, "delta"))
                return _control(ControlType.WINDOW_UPDATE, 0, payload)
            case UnknownControlFrame(ctype, flags, payload):
                return _control(ctype, flags, payload)
        raise LocalProtocolError(f"not a SPDY frame: {frame!r}")  # pragma: no cover


class SpdyFrameDecoder:
    """Turns one direction's byte stream into frames, fed in chunks of any size.

    Header blocks are decompressed in arrival order through this direction's zlib
    context, so every frame carrying one must pass through the same decoder.
    After a ``RemoteProtocolError`` the decoder is unusable (the stream is lost).

    API: ``receive_data()`` buffers, ``next_frame()`` pulls one frame at a time and
    *raises* on the first invalid one, so a reader handles every frame before it.
    (``MuxFrameDecoder`` is the yamux one: ``feed()`` returns a list and keeps the
    error, because the session answers errors with a GoAway, not an exception.)
    """

    def __init__(self, max_data_length: int = MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._headers = HeaderDecompressor()
        self._max_data_length = max_data_length
        self._broken: RemoteProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        if self._broken is not None:
            raise self._broken
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next_frame()
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def frames_received(self) -> list[Frame]:
        frames = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    def _next_frame(self) -> Frame | None:
        buf = self._buffer
        if len(buf) < 8:
            return None
        word0, word1 = _TWO_U32.unpack_from(buf)
        flags, length = word1 >> 24, word1 & MAX_LENGTH
        control = bool(word0 & 0x80000000)
        if not control and length > self._max_data_length:
            raise RemoteProtocolError(f"SPDY data frame of {length} bytes is too large")
        if len(buf) < 8 + length:
            return None
        payload = bytes(buf[8 : 8 + length])
        del buf[: 8 + length]
        if not control:
            if flags & ~FLAG_FIN:
                raise RemoteProtocolError(f"unsupported SPDY data frame flags {flags:#x}")
            if word0 == 0:
                raise RemoteProtocolError("SPDY data frame on stream 0")
            return DataFrame(word0, payload, bool(flags & FLAG_FIN))
        version, ctype = (word0 >> 16) & 0x7FFF, word0 & 0xFFFF
        if version != VERSION:
            raise RemoteProtocolError(f"unsupported SPDY version {version}")
        return self._control(ctype, flags, payload)

    def _stream_id(self, payload: bytes) -> int:
        stream_id: int = _U32.unpack_from(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            raise RemoteProtocolError("SPDY frame on stream 0")
        return stream_id

    def _control(self, ctype: int, flags: int, payload: bytes) -> Frame:
        def need(size: int, exact: bool = True) -> None:
            if len(payload) < size or (exact and len(payload) != size):
                raise RemoteProtocolError(f"bad length {len(payload)} for SPDY frame {ctype}")

        fin = bool(flags & FLAG_FIN)
        if ctype == ControlType.SYN_STREAM:
            need(10, exact=False)
            stream_id = self._stream_id(payload)
            assoc = _U32.unpack_from(payload, 4)[0] & 0x7FFFFFFF
            headers = self._headers.decompress(payload[10:])
            return SynStream(
                stream_id,
                headers,
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
                assoc,
                payload[8] >> 5,
                payload[9],
            )
        if ctype in (ControlType.SYN_REPLY, ControlType.HEADERS):
            need(4, exact=False)
            stream_id = self._stream_id(payload)
            headers = self._headers.decompress(payload[4:])
            if ctype == ControlType.SYN_REPLY:
                return SynReply(stream_id, headers, fin)
            return HeadersFrame(stream_id, headers, fin)
        if ctype == ControlType.RST_STREAM:
            need(8)
            return RstStream(self._stream_id(payload), _U32.unpack_from(payload, 4)[0])
        if ctype == ControlType.SETTINGS:
            need(4, exact=False)
            (count,) = _U32.unpack_from(payload)
            need(4 + 8 * count)
            entries = []
            for i in range(count):
                word, value = _TWO_U32.unpack_from(payload, 4 + 8 * i)
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(tuple(entries), bool(flags & 1))
        if ctype == ControlType.PING:
            need(4)
            return Ping(_U32.unpack(payload)[0])
        if ctype == ControlType.GOAWAY:
            need(8)
            last, status = _TWO_U32.unpack(payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if ctype == ControlType.WINDOW_UPDATE:
            need(8)
            stream_id, delta = _TWO_U32.unpack(payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return UnknownControlFrame(ctype, flags, payload)


# -- connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOpened:
    """The peer opened a stream (SYN_STREAM); the application must ``reply()``."""

    stream_id: int
    headers: Headers
    ended: bool = False


@dataclass(frozen=True)
class StreamReplied:
    stream_id: int
    headers: Headers


@dataclass(frozen=True)
class StreamDataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamEnded:
    """The peer will send no more on this stream (FIN)."""

    stream_id: int


@dataclass(frozen=True)
class RstStreamReceived:
    """The peer reset the stream (RST_STREAM); ``status`` is an ``RstStatus`` value."""

    stream_id: int
    status: int


@dataclass(frozen=True)
class PingReceived:
    """A peer PING; the echo is already queued in ``data_to_send()``."""

    ping_id: int


@dataclass(frozen=True)
class PingAcked:
    ping_id: int


@dataclass(frozen=True)
class GoAwayReceived:
    last_good_stream_id: int
    status: int


SpdyEvent = (
    StreamOpened
    | StreamReplied
    | StreamDataReceived
    | StreamEnded
    | RstStreamReceived
    | PingReceived
    | PingAcked
    | GoAwayReceived
)


@dataclass
class _Stream:
    local_open: bool = True
    remote_open: bool = True
    replied: bool = False


@dataclass
class SpdyConnection:
    """One SPDY/3.1 endpoint (client: odd stream ids; server: even).

    Frames for streams that are already gone are dropped (they race a reset); a
    SYN_STREAM with the wrong parity or a non-increasing id is a session error.
    """

    client_side: bool = False
    _decoder: SpdyFrameDecoder = field(default_factory=SpdyFrameDecoder)
    _encoder: SpdyFrameEncoder = field(default_factory=SpdyFrameEncoder)
    _out: bytearray = field(default_factory=bytearray)
    _events: list[SpdyEvent] = field(default_factory=list)
    _streams: dict[int, _Stream] = field(default_factory=dict)
    _last_remote_id: int = 0
    _next_local_id: int = 0
    _next_ping_id: int = 0

    def __post_init__(self) -> None:
        self._next_local_id = 1 if self.client_side else 2
        self._next_ping_id = self._next_local_id

    # input

    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)
        while (frame := self._decoder.next_frame()) is not None:
            self._handle(frame)

    def events_received(self) -> list[SpdyEvent]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # output

    def open_stream(self, headers: Mapping[str, Sequence[str]], *, fin: bool = False) -> int:
        stream_id = self._next_local_id
        self._next_local_id += 2
        self._streams[stream_id] = _Stream(local_open=not fin, replied=True)
        self._send(SynStream(stream_id, dict(_lists(headers)), fin))
        return stream_id

    def reply(
        self,
        stream_id: int,
        headers: Mapping[str, Sequence[str]] | None = None,
        *,
        fin: bool = False,
    ) -> None:
        stream = self._local_stream(stream_id)
        if stream.replied:
            raise LocalProtocolError(f"stream {stream_id} already replied")
        stream.replied = True
        self._send(SynReply(stream_id, dict(_lists(headers or {})), fin))
        if fin:
            self._local_end(stream_id, stream)

    def send_data(self, stream_id: int, data: bytes, *, fin: bool = False) -> None:
        stream = self._local_stream(stream_id)
        if not stream.local_open:
            raise LocalProtocolError(f"stream {stream_id} is closed for sending")
        view = memoryview(data)
        while len(view) > MAX_LENGTH:
            self._send(DataFrame(stream_id, bytes(view[:MAX_LENGTH])))
            view = view[MAX_LENGTH:]
        self._send(DataFrame(stream_id, bytes(view), fin))
        if fin:
            self._local_end(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", fin=True)

    def reset_stream(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._send(RstStream(stream_id, status))

    def ping(self) -> int:
        ping_id = self._next_ping_id
        self._next_ping_id = (self._next_ping_id + 2) & 0xFFFFFFFF
        self._send(Ping(ping_id))
        return ping_id

    def go_away(self, status: int = 0) -> None:
        self._send(GoAway(self._last_remote_id, status))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # internals

    def _send(self, frame: Frame) -> None:
        self._out += self._encoder.encode(frame)

    def _local_stream(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open")
        return stream

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            del self._streams[stream_id]

    def _remote_end(self, stream_id: int, stream: _Stream) -> None:
        stream.remote_open = False
        self._events.append(StreamEnded(stream_id))
        if not stream.local_open:
            del self._streams[stream_id]

    def _is_remote_id(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) != self.client_side

    def _handle(self, frame: Frame) -> None:
        match frame:
            case SynStream(stream_id, headers, fin):
                self._syn_stream(stream_id, headers, fin)
            case SynReply(stream_id, headers, fin):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    self._events.append(StreamReplied(stream_id, headers))
                    if fin:
                        self._remote_end(stream_id, stream)
            case DataFrame() | HeadersFrame():
                self._stream_frame(frame)
            case RstStream(stream_id, status):
                if self._streams.pop(stream_id, None) is not None:
                    self._events.append(RstStreamReceived(stream_id, status))
            case Ping(ping_id):
                if (ping_id % 2 == 1) != self.client_side:
                    self._send(frame)
                    self._events.append(PingReceived(ping_id))
                else:
                    self._events.append(PingAcked(ping_id))
            case GoAway(last, status):
                self._events.append(GoAwayReceived(last, status))
            case _:
                pass  # SETTINGS, WINDOW_UPDATE and unknown types: no flow control here

    def _syn_stream(self, stream_id: int, headers: Headers, fin: bool) -> None:
        if not self._is_remote_id(stream_id) or stream_id <= self._last_remote_id:
            raise RemoteProtocolError(f"SPDY SYN_STREAM with bad stream id {stream_id}")
        self._last_remote_id = stream_id
        self._streams[stream_id] = _Stream()
        self._events.append(StreamOpened(stream_id, headers, fin))
        if fin:
            self._remote_end(stream_id, self._streams[stream_id])

    def _stream_frame(self, frame: DataFrame | HeadersFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None or not stream.remote_open:
            return
        if isinstance(frame, DataFrame) and frame.data:
            self._events.append(StreamDataReceived(frame.stream_id, frame.data))
        if frame.fin:
            self._remote_end(frame.stream_id, stream)


def _lists(headers: Mapping[str, Sequence[str]]) -> Iterable[tuple[str, list[str]]]:
    for name, values in headers.items():
        yield name.lower(), [values] if isinstance(values, str) else list(values)
