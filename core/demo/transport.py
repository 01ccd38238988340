"""Byte and message links over an upgraded connection: raw (SPDY) and WebSocket.

After a 101 the apiserver hands the connection to a session through one of these. A
``ByteLink`` carries a byte stream: the raw socket for SPDY, or the payloads of binary
WebSocket messages for the port-forward tunnel (``SPDY/3.1+portforward.k8s.io``), where
messages may be cut anywhere, even empty.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

from core.errors import RemoteProtocolError
from core.protocol.spdy import SpdyConnection, SpdyEvent

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READ_SIZE = 256 * 1024
CLOSE_GRACE = 2.0
"""Seconds to wait for the peer's answer to our WebSocket Close before closing TCP."""


def websocket_accept(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()  # noqa: S324


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_GRACE)


class ByteLink(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" at end of stream."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...


class RawLink:
    """The plain socket after a SPDY upgrade (with bytes read past the 101 request)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes = b""
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._initial = initial

    async def read(self) -> bytes:
        if self._initial:
            data, self._initial = self._initial, b""
            return data
        try:
            return await self._reader.read(READ_SIZE)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(OSError):
            await self._writer.drain()

    async def close(self) -> None:
        await close_writer(self._writer)


class WebSocketLink:
    """A server-side WebSocket after the handshake, message by message (wsproto)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes = b""
    ) -> None:
        self._raw = RawLink(reader, writer, initial)
        self._ws = Connection(ConnectionType.SERVER)
        self._messages: deque[bytes] = deque()
        self._partial = bytearray()
        self._eof = False

    async def read_message(self) -> bytes | None:
        """The next complete binary message; None once the peer closed."""
        while not self._messages:
            if self._eof:
                return None
            data = await self._raw.read()
            self._ws.receive_data(data or None)
            if not data:
                self._eof = True
            self._process_events()
        return self._messages.popleft()

    def _process_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, BytesMessage | TextMessage):
                data = event.data
                chunk = data.encode() if isinstance(data, str) else bytes(data)
                self._partial += chunk
                if event.message_finished:
                    self._messages.append(bytes(self._partial))
                    self._partial.clear()
            elif isinstance(event, Ping):
                self._raw.write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._ws.state == ConnectionState.REMOTE_CLOSING:
                    self._raw.write(self._ws.send(event.response()))
                self._eof = True

    def send_message(self, data: bytes) -> None:
        if self._ws.state == ConnectionState.OPEN:
            self._raw.write(self._ws.send(Message(data=data)))

    async def drain(self) -> None:
        await self._raw.drain()

    async def close(self, code: int = 1000) -> None:
        """Send Close, give the peer a moment to answer, then close TCP."""
        if self._ws.state == ConnectionState.OPEN:
            self._raw.write(self._ws.send(CloseConnection(code=code)))
            await self._raw.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE):
                    while await self.read_message() is not None:
                        pass
        await self._raw.close()


class WebSocketByteLink:
    """The byte stream carried in binary WebSocket messages (port-forward tunnel)."""

    def __init__(self, ws: WebSocketLink) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        while (message := await self._ws.read_message()) is not None:
            if message:
                return message
        return b""

    def write(self, data: bytes) -> None:
        if data:
            self._ws.send_message(data)

    async def drain(self) -> None:
        await self._ws.drain()

    async def close(self) -> None:
        await self._ws.close()


async def pump_spdy(
    link: ByteLink, conn: SpdyConnection, handle: Callable[[SpdyEvent], Awaitable[None]]
) -> None:
    """Feed ``link`` to ``conn`` until EOF or a protocol error, flushing and handling events."""
    with contextlib.suppress(RemoteProtocolError):
        while data := await link.read():
            conn.receive_data(data)
            link.write(conn.data_to_send())
            for event in conn.events_received():
                await handle(event)
