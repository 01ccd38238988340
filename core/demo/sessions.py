"""Remote-command sessions (exec, attach) over WebSocket v5 and over SPDY v4.

Both adapt the wire to an ``ExecIO`` and run ``runner(io)``, which returns the final
``Status``; they then end the output channels, send the Status on the error channel
and close the way kubectl expects (see docs/demo.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from core.demo.exec import ExecIO, ExecRequest
from core.demo.transport import ByteLink, WebSocketLink, pump_spdy
from core.errors import RemoteProtocolError
from core.protocol.k8s_channels import (
    STREAM_TYPE_BY_NAME,
    Channel,
    ChannelClosed,
    ResizeDecoder,
    decode_message,
    encode_message,
    parse_resize,
)
from core.protocol.spdy import (
    RstStreamReceived,
    SpdyConnection,
    StreamDataReceived,
    StreamEnded,
    StreamOpened,
)

Runner = Callable[[ExecIO], Awaitable[bytes]]
STREAMS_WAIT = 30.0
"""How long a SPDY client may take to open all the streams it asked for."""
LINGER = 5.0
"""After the Status, how long to wait for kubectl to hang up before we do."""


async def _cancel(*tasks: asyncio.Task[object] | None) -> None:
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


async def _run_until_hangup(runner: Runner, io: ExecIO, reader: asyncio.Task[None]) -> bytes | None:
    """The runner's Status, or None when the client went away first."""
    run: asyncio.Task[bytes] = asyncio.ensure_future(runner(io))
    try:
        await asyncio.wait({run, reader}, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            return run.result()
        return None
    finally:
        await _cancel(run)


# -- WebSocket v5.channel.k8s.io -----------------------------------------------------


async def serve_websocket(ws: WebSocketLink, request: ExecRequest, runner: Runner) -> None:
    io = ExecIO()

    async def send(channel: int, data: bytes) -> None:
        ws.send_message(encode_message(channel, data))
        await ws.drain()

    io.send = send

    async def read_loop() -> None:
        while (message := await ws.read_message()) is not None:
            try:
                decoded = decode_message(message)
            except RemoteProtocolError:
                continue
            if isinstance(decoded, ChannelClosed):
                if decoded.channel == Channel.STDIN:
                    await io.stdin.put(None)
            elif decoded.channel == Channel.STDIN and request.stdin:
                await io.stdin.put(decoded.data)
            elif decoded.channel == Channel.RESIZE:
                with contextlib.suppress(RemoteProtocolError):
                    io.resize.put_nowait(parse_resize(decoded.data))
        with contextlib.suppress(asyncio.QueueFull):
            io.stdin.put_nowait(None)

    ready = (request.output_channels or [Channel.ERROR])[0]
    ws.send_message(encode_message(ready))
    reader = asyncio.create_task(read_loop())
    try:
        status = await _run_until_hangup(runner, io, reader)
        if status is not None:
            await send(Channel.ERROR, status)
    finally:
        await _cancel(reader)
        await ws.close(1000)


# -- SPDY v4.channel.k8s.io ----------------------------------------------------------


class _SpdyExec:
    def __init__(self, link: ByteLink, request: ExecRequest) -> None:
        self.link = link
        self.request = request
        self.conn = SpdyConnection(client_side=False)
        self.io = ExecIO(send=self.send)
        self.stream_of: dict[int, int] = {}
        self.channel_of: dict[int, int] = {}
        self.expected = {Channel.ERROR, *request.output_channels}
        if request.stdin:
            self.expected.add(Channel.STDIN)
        if request.tty:
            self.expected.add(Channel.RESIZE)
        self.all_streams = asyncio.Event()
        self.resize = ResizeDecoder()

    def flush(self) -> None:
        self.link.write(self.conn.data_to_send())

    async def send(self, channel: int, data: bytes) -> None:
        stream_id = self.stream_of.get(channel)
        if stream_id is None or not self.conn.is_open(stream_id):
            return
        self.conn.send_data(stream_id, data)
        self.flush()
        await self.link.drain()

    async def read_loop(self) -> None:
        try:
            await pump_spdy(self.link, self.conn, self._handle)
        finally:
            if Channel.STDIN in self.stream_of:
                with contextlib.suppress(asyncio.QueueFull):
                    self.io.stdin.put_nowait(None)

    async def _handle(self, event: object) -> None:
        if isinstance(event, StreamOpened):
            kind = (event.headers.get("streamtype") or [""])[0]
            channel: int | None = STREAM_TYPE_BY_NAME.get(kind)
            self.conn.reply(event.stream_id)
            self.flush()
            if channel is None or channel in self.stream_of:
                self.conn.reset_stream(event.stream_id)
                self.flush()
                return
            self.stream_of[channel] = event.stream_id
            self.channel_of[event.stream_id] = channel
            if self.expected <= self.stream_of.keys():
                self.all_streams.set()
        elif isinstance(event, StreamDataReceived):
            channel = self.channel_of.get(event.stream_id)
            if channel == Channel.STDIN:
                await self.io.stdin.put(event.data)
            elif channel == Channel.RESIZE:
                with contextlib.suppress(RemoteProtocolError):
                    for size in self.resize.receive_data(event.data):
                        self.io.resize.put_nowait(size)
        elif (
            isinstance(event, StreamEnded | RstStreamReceived)
            and self.channel_of.get(event.stream_id) == Channel.STDIN
        ):
            await self.io.stdin.put(None)

    def finish(self, status: bytes) -> None:
        for channel in (Channel.STDOUT, Channel.STDERR):
            stream_id = self.stream_of.get(channel)
            if stream_id is not None and self.conn.is_open(stream_id):
                self.conn.end_stream(stream_id)
        error_id = self.stream_of[Channel.ERROR]
        if self.conn.is_open(error_id):
            self.conn.send_data(error_id, status, fin=True)
        self.flush()


async def serve_spdy(link: ByteLink, request: ExecRequest, runner: Runner) -> None:
    session = _SpdyExec(link, request)
    reader = asyncio.create_task(session.read_loop())
    try:
        waiter = asyncio.create_task(session.all_streams.wait())
        await asyncio.wait({waiter, reader}, timeout=STREAMS_WAIT, return_when="FIRST_COMPLETED")
        await _cancel(waiter)
        if not session.all_streams.is_set():
            return
        status = await _run_until_hangup(runner, session.io, reader)
        if status is None:
            return
        session.finish(status)
        await link.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), LINGER)
    finally:
        await _cancel(reader)
        await link.close()
