"""Passive decoders for inspect mode: they read copies of the bytes, never alter or delay them.

The proxy forwards every byte first and then hands a copy here, so a decoder can only
learn less, never break a session: on malformed input it records ``detail.error`` and
stops. What they extract (``SessionDetail``):

* exec/attach over SPDY (``v4.channel.k8s.io``): the command (from the request query),
  the channels opened (``streamtype``), the bytes per channel, the terminal sizes sent on
  the resize stream, the exit code from the error stream's Status;
* port-forward over SPDY (``portforward.k8s.io``) and inside WebSocket
  (``SPDY/3.1+portforward.k8s.io``): ports, and bytes per forwarded connection;
* exec/attach over WebSocket ``v5.channel.k8s.io``: channels seen, the bytes per
  channel, the sizes on channel 4, the exit code from the channel-3 Status, the Close code;
* watches (``?watch=true``): events per type from the JSON lines; ``log?follow``: lines.

The WebSocket reader is a small streaming frame parser (headers only are buffered; a
payload is unmasked only where its bytes are needed), and SPDY is skimmed: frame heads
and control frames are read, data payloads only counted (kept only for an error
stream's Status). Inside WebSocket the SPDY skimmer tells the frame reader which bytes
it may skip, so a port-forward's data is neither unmasked nor copied: inspect mode's
cost per byte stays near a splice's: bytes are counted per frame (a length), never looked
at one by one. Bounds: an error-stream Status of at most ``MAX_STATUS`` bytes, a watch
line prefix of ``MAX_LINE_PREFIX`` bytes, a resize line of ``MAX_RESIZE_LINE`` bytes and
the last ``KEEP_SIZES`` sizes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from core.errors import RemoteProtocolError
from core.protocol import spdy
from core.protocol.k8s_channels import (
    CLOSE_CHANNEL,
    PORTFORWARD_WEBSOCKET_PROTOCOL,
    STREAM_TYPE_BY_NAME,
    Channel,
    TerminalSize,
    exit_code_from_status,
    parse_resize,
)

__all__ = [
    "KEEP_SIZES",
    "MAX_RESIZE_LINE",
    "MAX_STATUS",
    "PassiveDecoder",
    "PortConnection",
    "ResizeReader",
    "SessionDetail",
    "SpdyInspector",
    "StreamLineCounter",
    "WebSocketFrameReader",
    "WebSocketInspector",
    "decoder_for",
]

MAX_STATUS = 64 * 1024
MAX_LINE_PREFIX = 256
MAX_RESIZE_LINE = 256
"""A resize line longer than this is not a size (counted in ``bad_resizes``, not kept)."""
KEEP_SIZES = 8
"""Terminal sizes kept per session (the last ones); all are counted."""
_SESSIONS = frozenset({"exec", "attach"})
_WATCH_TYPE = re.compile(rb'"type"\s*:\s*"([A-Za-z]{1,32})"')


@dataclass
class PortConnection:
    """One forwarded connection (a SPDY ``data``/``error`` stream pair by ``requestid``)."""

    request_id: str
    port: int | None
    bytes_up: int = 0
    bytes_down: int = 0
    error: str | None = None
    closed: bool = False


@dataclass
class SessionDetail:
    """What passive decoding learned about one exchange."""

    kind: str = ""
    """``exec``, ``attach``, ``portforward``, ``watch``, ``log`` or empty."""
    command: tuple[str, ...] = ()
    channels: set[str] = field(default_factory=set)
    channel_bytes: dict[str, int] = field(default_factory=dict)
    """Exec/attach: payload bytes per channel name (``stdin``, ``stdout``, ``stderr``,
    ``error``, ``resize``), counted per frame as they pass."""
    resizes: int = 0
    """Terminal sizes read from the resize channel."""
    sizes: list[TerminalSize] = field(default_factory=list)
    """The last ``KEEP_SIZES`` of them, oldest first."""
    bad_resizes: int = 0
    """Resize lines that were no size (not JSON, not ``{"Width":W,"Height":H}``, too long)."""
    exit_code: int | None = None
    status_message: str | None = None
    ports: list[int] = field(default_factory=list)
    connections: list[PortConnection] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    close_code: int | None = None
    error: str | None = None
    """Why decoding stopped early (the session itself is unaffected)."""


class PassiveDecoder(Protocol):
    def client_data(self, data: bytes) -> None: ...
    def server_data(self, data: bytes) -> None: ...
    def finish(self) -> None: ...


class _BothSides:
    """A passive decoder of both directions that stops at the first protocol error."""

    def __init__(self, detail: SessionDetail, protocol: str) -> None:
        self.detail = detail
        self._protocol = protocol
        self._stopped = False

    def client_data(self, data: bytes) -> None:
        self._feed(0, data)

    def server_data(self, data: bytes) -> None:
        self._feed(1, data)

    def finish(self) -> None:
        self._stopped = True

    def _feed(self, side: int, data: bytes) -> None:
        if self._stopped:
            return
        try:
            self._receive(side, data)
        except RemoteProtocolError as exc:
            self.detail.error = f"{self._protocol}: {exc}"
            self._stopped = True

    def _receive(self, side: int, data: bytes) -> None:
        raise NotImplementedError


def _status(detail: SessionDetail, raw: bytes) -> None:
    if not raw.strip():
        detail.exit_code = 0
        return
    try:
        detail.exit_code = exit_code_from_status(raw)
    except RemoteProtocolError as exc:
        detail.error = str(exc)
        return
    if detail.exit_code is None:
        detail.status_message = raw[:512].decode("utf-8", "replace")


class ResizeReader:
    """A resize channel read passively: newline-separated ``{"Width":W,"Height":H}`` lines.

    Each size is counted and the last ``KEEP_SIZES`` kept; a line that is no size is
    counted in ``bad_resizes`` and never raises (the session decides what it means).
    ``end()`` closes a pending line: a v5 message or a SPDY stream ended. Work is per line
    (kubectl sends one per resize), never per byte.
    """

    def __init__(self, detail: SessionDetail) -> None:
        self.detail = detail
        self._line = bytearray()
        self._overlong = False

    def receive(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._add(data[start:end])
            self.end()
            start = end + 1
        self._add(data[start:])

    def end(self) -> None:
        line, overlong = bytes(self._line).strip(), self._overlong
        self._line.clear()
        self._overlong = False
        if overlong:
            self.detail.bad_resizes += 1
        elif line:
            self._size(line)

    def _add(self, part: bytes) -> None:
        if self._overlong or not part:
            return
        if len(self._line) + len(part) > MAX_RESIZE_LINE:
            self._overlong = True
            self._line.clear()
            return
        self._line += part

    def _size(self, line: bytes) -> None:
        detail = self.detail
        try:
            size = parse_resize(line)
        except RemoteProtocolError:
            detail.bad_resizes += 1
            return
        detail.resizes += 1
        detail.sizes.append(size)
        if len(detail.sizes) > KEEP_SIZES:
            del detail.sizes[0]


def _count(detail: SessionDetail, channel: str, n: int) -> None:
    counts = detail.channel_bytes
    counts[channel] = counts.get(channel, 0) + n


# -- SPDY ----------------------------------------------------------------------------


@dataclass
class _SpdyStream:
    kind: str
    connection: PortConnection | None = None
    buffer: bytearray = field(default_factory=bytearray)
    counted: bool = False
    """An exec/attach channel: its bytes are counted under ``kind``."""


ALL = 1 << 62
"""A payload demand with no end: every byte is wanted (or, negated, skipped)."""


class _SpdySide:
    """One direction of a SPDY connection, skimmed frame by frame.

    Frame heads are parsed here; control frames go whole through this direction's
    ``SpdyFrameDecoder`` (its zlib context needs every header block in order); a data
    frame's payload is only counted, unless it is an error stream's answer or a resize
    the inspector records. ``demand()`` says what the next bytes are for, so a carrier
    (WebSocket) can skip, without unmasking, what is only counted.
    """

    def __init__(self, inspector: SpdyInspector, side: int) -> None:
        self._inspector = inspector
        self._side = side
        self._decoder = spdy.SpdyFrameDecoder()
        self._head = bytearray()
        self._remaining = 0
        self._control: bytearray | None = None
        self._stream: _SpdyStream | None = None
        self._keep: bytearray | None = None
        self._resize = False
        self._recorded = False
        self._fin = False

    def demand(self) -> int:
        """How many of the next bytes are needed (positive) or only counted (negative)."""
        if not self._remaining:
            return 8 - len(self._head)
        if self._control is None and self._keep is None and not self._resize:
            return -self._remaining
        return self._remaining

    def skip(self, n: int) -> None:
        """``n`` data payload bytes went by (``n`` at most ``-demand()``)."""
        self._remaining -= n
        stream = self._stream
        if stream is not None:
            if stream.counted:
                _count(self._inspector.detail, stream.kind, n)
            elif stream.kind == "data" and stream.connection is not None:
                if self._side == 0:
                    stream.connection.bytes_up += n
                else:
                    stream.connection.bytes_down += n
        if not self._remaining:
            self._data_end()

    def receive_data(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            demand = self.demand()
            if demand < 0:
                n = min(-demand, len(view))
                self.skip(n)
                view = view[n:]
                continue
            n = min(demand, len(view))
            part = view[:n]
            view = view[n:]
            if not self._remaining:
                self._head += part
                if len(self._head) == 8:
                    self._frame_head()
            elif self._control is not None:
                self._control += part
                self._remaining -= n
                if not self._remaining:
                    self._control_end()
            elif self._resize:
                self._inspector.resize.receive(bytes(part))
                self.skip(n)
            else:
                assert self._keep is not None
                self._keep += part
                self.skip(n)

    def _frame_head(self) -> None:
        head = bytes(self._head)
        self._head = bytearray()
        word0 = int.from_bytes(head[:4], "big")
        flags, length = head[4], int.from_bytes(head[5:8], "big")
        if word0 & 0x80000000:
            self._control = bytearray(head)
            self._remaining = length
            if not length:
                self._control_end()
            return
        if flags & ~spdy.FLAG_FIN:
            raise RemoteProtocolError(f"unsupported SPDY data frame flags {flags:#x}")
        if word0 == 0:
            raise RemoteProtocolError("SPDY data frame on stream 0")
        self._stream = stream = self._inspector.stream(word0)
        self._fin = bool(flags & spdy.FLAG_FIN)
        # An error stream's answer is recorded; a frame too large for a Status is not
        # kept, though its end still counts.
        self._recorded = stream is not None and stream.kind == "error" and self._side == 1
        self._keep = bytearray() if self._recorded and length <= MAX_STATUS else None
        self._resize = stream is not None and stream.kind == "resize" and self._side == 0
        self._remaining = length
        if not length:
            self._data_end()

    def _control_end(self) -> None:
        assert self._control is not None
        self._decoder.receive_data(bytes(self._control))
        self._control = None
        frame = self._decoder.next_frame()
        assert frame is not None  # the whole frame was fed
        self._inspector.control_frame(self._side, frame)

    def _data_end(self) -> None:
        stream, keep = self._stream, self._keep
        if keep is None and self._recorded:
            keep = bytearray()
        self._stream = self._keep = None
        self._recorded = self._resize = False
        if stream is not None:
            self._inspector.data_end(self._side, stream, keep, self._fin)


class SpdyInspector(_BothSides):
    """Both directions of one SPDY/3.1 connection, each skimmed by a ``_SpdySide``."""

    def __init__(self, detail: SessionDetail) -> None:
        super().__init__(detail, "SPDY")
        self._sides = (_SpdySide(self, 0), _SpdySide(self, 1))
        self._streams: dict[int, _SpdyStream] = {}
        self._by_request: dict[str, PortConnection] = {}
        self.resize = ResizeReader(detail)

    def _receive(self, side: int, data: bytes) -> None:
        self._sides[side].receive_data(data)

    def demand(self, side: int) -> int:
        return -ALL if self._stopped else self._sides[side].demand()

    def skip(self, side: int, n: int) -> None:
        if not self._stopped:
            self._sides[side].skip(n)

    def stream(self, stream_id: int) -> _SpdyStream | None:
        return self._streams.get(stream_id)

    def control_frame(self, side: int, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream) and side == 0:
            self._opened(frame)
        elif isinstance(frame, spdy.RstStream):
            stream = self._streams.get(frame.stream_id)
            if stream is not None and stream.connection is not None:
                stream.connection.closed = True

    def _opened(self, frame: spdy.SynStream) -> None:
        kind = (frame.headers.get("streamtype") or [""])[0]
        counted = self.detail.kind in _SESSIONS and kind in STREAM_TYPE_BY_NAME
        stream = _SpdyStream(kind, counted=counted)
        self._streams[frame.stream_id] = stream
        self.detail.channels.add(kind)
        request_id = (frame.headers.get("requestid") or [""])[0]
        port_text = (frame.headers.get("port") or [""])[0]
        if not request_id and not port_text:
            return
        port = int(port_text) if port_text.isdigit() else None
        connection = self._by_request.get(request_id)
        if connection is None:
            connection = PortConnection(request_id, port)
            self._by_request[request_id] = connection
            self.detail.connections.append(connection)
            if port is not None and port not in self.detail.ports:
                self.detail.ports.append(port)
        stream.connection = connection

    def data_end(self, side: int, stream: _SpdyStream, kept: bytearray | None, fin: bool) -> None:
        """A data frame ended (its bytes were counted as they passed)."""
        if stream.kind == "resize":
            if fin and side == 0:
                self.resize.end()
            return
        connection = stream.connection
        if stream.kind == "data" and connection is not None:
            if fin and side == 1:
                connection.closed = True
            return
        if kept is None:
            return
        if len(stream.buffer) + len(kept) <= MAX_STATUS:
            stream.buffer += kept
        if not fin:
            return
        if connection is not None:
            if stream.buffer:
                connection.error = stream.buffer.decode("utf-8", "replace")
        else:
            _status(self.detail, bytes(stream.buffer))


# -- WebSocket -----------------------------------------------------------------------


def _unmask(data: bytes, mask: bytes, offset: int) -> bytes:
    if not data:
        return data
    rotated = mask[offset % 4 :] + mask[: offset % 4]
    key = (rotated * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")


class WebSocketFrameReader:
    """A streaming RFC 6455 frame reader for one direction; never buffers a payload.

    Calls ``on_frame(opcode, fin)`` at each frame start, then asks ``demand()`` what the
    next payload bytes are for: a positive count is unmasked and handed to
    ``on_payload(chunk)``, a negative one is skipped unread (``on_skip(n)``; nothing is
    unmasked or copied), and ``on_frame_end()``. Raises ``RemoteProtocolError`` on
    nonsense: reserved bits or opcodes, oversized or fragmented control frames, masking
    in the wrong direction.
    """

    def __init__(
        self,
        *,
        masked: bool,
        on_frame: Callable[[int, bool], None],
        on_payload: Callable[[bytes], None],
        on_skip: Callable[[int], None],
        on_frame_end: Callable[[], None],
        demand: Callable[[], int],
    ) -> None:
        self._masked = masked
        self._on_frame = on_frame
        self._on_payload = on_payload
        self._on_skip = on_skip
        self._on_frame_end = on_frame_end
        self._demand = demand
        self._head = bytearray()
        self._remaining = 0
        self._offset = 0
        self._mask = b""
        self.frames = 0

    def receive_data(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._remaining:
                n = min(self._remaining, len(view))
                demand = self._demand()
                if demand < 0:
                    n = min(n, -demand)
                    self._on_skip(n)
                else:
                    n = min(n, demand)
                    chunk = bytes(view[:n])
                    if self._mask:
                        chunk = _unmask(chunk, self._mask, self._offset)
                    self._on_payload(chunk)
                view = view[n:]
                self._offset += n
                self._remaining -= n
                if not self._remaining:
                    self._on_frame_end()
                continue
            taken = self._head_size() - len(self._head)
            self._head += view[:taken]
            view = view[taken:]
            self._parse_head()

    def _head_size(self) -> int:
        """The frame head's full size, as far as its first two bytes tell."""
        head = self._head
        if len(head) < 2:
            return 2
        size = head[1] & 0x7F
        return 2 + (2 if size == 126 else 8 if size == 127 else 0) + (4 if head[1] & 0x80 else 0)

    def _parse_head(self) -> None:
        head = self._head
        need = self._head_size()
        if len(head) < need:
            return
        b0, b1 = head[0], head[1]
        masked, size = bool(b1 & 0x80), b1 & 0x7F
        opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
        if b0 & 0x70:
            raise RemoteProtocolError("WebSocket frame with reserved bits set")
        if 3 <= opcode <= 7 or opcode > 10:
            raise RemoteProtocolError(f"reserved WebSocket opcode {opcode}")
        if masked != self._masked:
            raise RemoteProtocolError("WebSocket frame masking in the wrong direction")
        if size == 126:
            size = int.from_bytes(head[2:4], "big")
        elif size == 127:
            size = int.from_bytes(head[2:10], "big")
            if size >> 63:
                raise RemoteProtocolError("WebSocket frame length out of range")
        if opcode >= 8 and (size > 125 or not fin):
            raise RemoteProtocolError("bad WebSocket control frame")
        self._mask = bytes(head[need - 4 : need]) if masked else b""
        self._head = bytearray()
        self._remaining = size
        self._offset = 0
        self.frames += 1
        self._on_frame(opcode, fin)
        if size == 0:
            self._on_frame_end()


class _WsDirection:
    """Message assembly for one direction of a WebSocket session."""

    def __init__(self, inspector: WebSocketInspector, side: int) -> None:
        self.inspector = inspector
        self.side = side
        self.control_frame = False
        self.opcode = 0
        self.fin = False
        self.in_message = False
        self.channel: int | None = None
        self.name: str | None = None
        """The message's channel name (None before its first byte and for a close)."""
        self.close_target = False
        self.buffer = bytearray()
        self.reader = WebSocketFrameReader(
            masked=side == 0,
            on_frame=self.frame,
            on_payload=self.payload,
            on_skip=self.skip,
            on_frame_end=self.frame_end,
            demand=self.demand,
        )

    def frame(self, opcode: int, fin: bool) -> None:
        self.opcode, self.fin = opcode, fin
        self.control_frame = opcode >= 8
        if self.control_frame:
            self.buffer = bytearray()
            return
        if opcode == 0 and not self.in_message:
            raise RemoteProtocolError("WebSocket continuation without a message")
        if opcode != 0:
            if self.in_message:
                raise RemoteProtocolError("new WebSocket message inside a fragmented one")
            self.in_message = True
            self.channel = self.name = None
            self.close_target = False
            self.buffer = bytearray()

    def demand(self) -> int:
        return ALL if self.control_frame else self.inspector.demand(self)

    def skip(self, n: int) -> None:
        if not self.control_frame:
            self.inspector.skipped(self, n)

    def payload(self, chunk: bytes) -> None:
        if self.control_frame:
            self.buffer += chunk
        else:
            self.inspector.message_bytes(self, chunk)

    def frame_end(self) -> None:
        if self.control_frame:
            if self.opcode == 8:
                self.inspector.closed(self.side, bytes(self.buffer))
            return
        if self.fin:
            self.in_message = False
            self.inspector.message_end(self)


class WebSocketInspector(_BothSides):
    """Both directions of a WebSocket session after its 101: v5 channels, or a SPDY tunnel."""

    def __init__(self, detail: SessionDetail, subprotocol: str | None) -> None:
        super().__init__(detail, "WebSocket")
        self._tunnel: SpdyInspector | None = None
        if subprotocol == PORTFORWARD_WEBSOCKET_PROTOCOL:
            self._tunnel = SpdyInspector(detail)
        self._sides = (_WsDirection(self, 0), _WsDirection(self, 1))
        self._resize = ResizeReader(detail)

    def _receive(self, side: int, data: bytes) -> None:
        self._sides[side].reader.receive_data(data)

    def demand(self, direction: _WsDirection) -> int:
        """What the next message bytes are for: a port-forward tunnel's SPDY skimmer
        decides; on v5 channels, only a message's first bytes, the error channel and the
        resize channel are read (the rest is counted)."""
        if self._tunnel is not None:
            return self._tunnel.demand(direction.side)
        if direction.channel is None or direction.close_target:
            return 1
        return ALL if _read(direction.side, direction.channel) else -ALL

    def skipped(self, direction: _WsDirection, n: int) -> None:
        if self._tunnel is not None:
            self._tunnel.skip(direction.side, n)
        elif direction.name is not None:
            _count(self.detail, direction.name, n)

    def message_bytes(self, direction: _WsDirection, chunk: bytes) -> None:
        if self._tunnel is not None:
            if direction.side == 0:
                self._tunnel.client_data(chunk)
            else:
                self._tunnel.server_data(chunk)
            return
        if chunk and direction.channel is None:
            direction.channel = chunk[0]
            chunk = chunk[1:]
            if direction.channel == CLOSE_CHANNEL:
                direction.close_target = True
            else:
                direction.name = _channel_name(direction.channel)
                self.detail.channels.add(direction.name)
        if not chunk:
            return
        if direction.close_target:
            direction.close_target = False
            self.detail.channels.add(_channel_name(chunk[0]))
            return
        if direction.name is None:
            return
        _count(self.detail, direction.name, len(chunk))
        if direction.side == 0:  # only the resize channel is read from the client
            self._resize.receive(chunk)
        elif len(direction.buffer) + len(chunk) <= MAX_STATUS:  # the error channel
            direction.buffer += chunk

    def message_end(self, direction: _WsDirection) -> None:
        channel = direction.channel
        if self._tunnel is None and channel is not None and _read(direction.side, channel):
            if direction.side == 1:
                _status(self.detail, bytes(direction.buffer))
            else:
                self._resize.end()
        direction.buffer = bytearray()

    def closed(self, side: int, payload: bytes) -> None:
        if side == 1 and len(payload) >= 2:
            self.detail.close_code = int.from_bytes(payload[:2], "big")


def _read(side: int, channel: int) -> bool:
    """The v5 channels whose bytes are read, not only counted: the error channel from the
    apiserver, the resize channel from kubectl."""
    return channel == (Channel.ERROR if side == 1 else Channel.RESIZE)


def _channel_name(channel: int) -> str:
    try:
        return Channel(channel).name.lower()
    except ValueError:
        return str(channel)


# -- watch and follow ----------------------------------------------------------------


class StreamLineCounter:
    """Counts newline-terminated lines of a response body; for watches, events by type."""

    def __init__(self, detail: SessionDetail, *, watch: bool) -> None:
        self.detail = detail
        self._watch = watch
        self._prefix = bytearray()

    def client_data(self, data: bytes) -> None:
        return

    def server_data(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line(data[start:end])
            start = end + 1
        self._keep(data[start:])

    def finish(self) -> None:
        if self._prefix.strip():
            self._line(b"")

    def _keep(self, part: bytes) -> None:
        room = MAX_LINE_PREFIX - len(self._prefix)
        if room > 0:
            self._prefix += part[:room]

    def _line(self, tail: bytes) -> None:
        self._keep(tail)
        line = bytes(self._prefix)
        self._prefix = bytearray()
        self.detail.lines += 1
        if self._watch and (match := _WATCH_TYPE.search(line)):
            kind = match.group(1).decode("ascii")
            self.detail.events[kind] = self.detail.events.get(kind, 0) + 1


# -- choice --------------------------------------------------------------------------


def decoder_for(
    method: str,
    target: str,
    upgrade: str | None,
    subprotocol: str | None,
    detail: SessionDetail,
) -> PassiveDecoder | None:
    """The decoder for an exchange (after its response head or its 101), or None."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.split("/") if s]
    last = segments[-1] if segments else ""

    def flag(name: str) -> bool:
        return (query.get(name) or [""])[0].lower() in ("true", "1")

    if upgrade is not None:
        if last in ("exec", "attach"):
            detail.kind = last
            detail.command = tuple(query.get("command", []))
        elif last == "portforward":
            detail.kind = "portforward"
            detail.ports = [int(p) for p in query.get("ports", []) if p.isdigit()]
        else:
            return None
        if upgrade.lower() == "websocket":
            return WebSocketInspector(detail, subprotocol)
        if upgrade.lower().startswith("spdy/3.1"):
            return SpdyInspector(detail)
        return None
    if method != "GET":
        return None
    if flag("watch") or "watch" in segments[:3]:
        detail.kind = "watch"
        return StreamLineCounter(detail, watch=True)
    if last == "log" and flag("follow"):
        detail.kind = "log"
        return StreamLineCounter(detail, watch=False)
    return None
