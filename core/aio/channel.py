"""A control channel: length-prefixed JSON messages on one mux stream."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from core.aio.mux import MuxConnection, MuxStream
from core.errors import RemoteProtocolError, SessionClosed
from core.protocol.control import ControlDecoder, Message, Sender, encode_message


class ControlChannel:
    """Send and receive control messages; ``recv`` waits with a deadline.

    ``local`` says who we are (peer or relay): what we send is checked against the
    message table for our direction, what we receive against the other one.
    """

    def __init__(self, conn: MuxConnection, stream: MuxStream, local: Sender) -> None:
        self.reader, self.writer = conn.stream_pair(stream)
        self._local = local
        remote = Sender.RELAY if local == Sender.PEER else Sender.PEER
        self._decoder = ControlDecoder(remote)

    def send(self, message: Mapping[str, object]) -> None:
        self.writer.write(encode_message(message, self._local))

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message; ``SessionClosed`` at the end, ``TimeoutError`` past ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                message = self._decoder.next_message()
                if message is not None:
                    return message
                data = await self.reader.read(65536)
                if not data:
                    self._decoder.receive_eof()
                    message = self._decoder.next_message()
                    if message is not None:
                        return message
                    raise SessionClosed("control stream ended")
                self._decoder.receive_data(data)

    def close(self) -> None:
        self.writer.close()


def expect(message: Message, *types: str) -> Message:
    """Check the message type, turning an ``error`` message into a clear exception."""
    if message["type"] in types:
        return message
    if message["type"] == "error":
        raise RemoteProtocolError(f"relay refused: {message['code']}: {message['message']}")
    raise RemoteProtocolError(f"expected {' or '.join(types)}, got {message['type']}")
