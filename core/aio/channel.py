"""A control channel: length-prefixed JSON messages on one mux stream."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from core.aio.mux import MuxConnection, MuxStream
from core.errors import RemoteProtocolError, SessionClosed
from core.protocol.control import ControlDecoder, Message, Sender, encode_message


class ControlChannel(asyncio.Protocol):
    """Send and receive control messages; ``recv`` waits with a deadline.

    ``local`` says who we are (peer or relay): what we send is checked against the
    message table for our direction, what we receive against the other one.

    The channel is the stream's protocol itself, not a ``StreamReader``/``StreamWriter``
    pair: a relay holds one per session, thousands of them idle, and the pair (with its
    protocol, drain-waiter deque and the reader's coroutines) cost ~3 KB each. Reading
    stops while a decoded message waits for ``recv`` (so the mux window bounds what a
    peer can make us hold), and resumes when ``recv`` wants more.
    """

    def __init__(self, conn: MuxConnection, stream: MuxStream, local: Sender) -> None:
        self._loop = conn.loop
        self._stream = stream
        self._local = local
        remote = Sender.RELAY if local == Sender.PEER else Sender.PEER
        self._decoder = ControlDecoder(remote)
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False  # EOF or the stream lost
        self._lost: Exception | None = None
        stream.attach(self)

    # -- asyncio.Protocol (called by the stream) ---------------------------------------

    def data_received(self, data: bytes) -> None:
        self._decoder.receive_data(data)
        self._stream.pause_reading()  # until recv() has taken what is decoded
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._decoder.receive_eof()
        self._wake()
        return True  # the stream stays open for writing until close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._lost = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the API -----------------------------------------------------------------------

    def send(self, message: Mapping[str, object]) -> None:
        self._stream.write(encode_message(message, self._local))

    def recv(self, timeout: float | None = None) -> Coroutine[Any, Any, Message]:
        """The next message; ``SessionClosed`` at the end, ``TimeoutError`` past ``timeout``.

        Without a timeout, the reading coroutine itself (one frame less per idle session).
        """
        return self._recv() if timeout is None else self._recv_within(timeout)

    async def _recv_within(self, timeout: float) -> Message:
        async with asyncio.timeout(timeout):
            return await self._recv()

    async def _recv(self) -> Message:
        while True:
            message = self._decoder.next_message()
            if message is not None:
                return message
            if self._ended:
                if self._lost is not None:
                    raise self._lost
                raise SessionClosed("control stream ended")
            self._waiter = self._loop.create_future()
            self._stream.resume_reading()  # may deliver at once: the waiter is set
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        self._stream.close()


def expect(message: Message, *types: str) -> Message:
    """Check the message type, turning an ``error`` message into a clear exception."""
    if message["type"] in types:
        return message
    if message["type"] == "error":
        raise RemoteProtocolError(f"relay refused: {message['code']}: {message['message']}")
    raise RemoteProtocolError(f"expected {' or '.join(types)}, got {message['type']}")
