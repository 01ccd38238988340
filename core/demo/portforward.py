"""Port-forward sessions: SPDY ``portforward.k8s.io`` over any ``ByteLink``.

The same code serves the SPDY upgrade (raw socket) and the WebSocket tunnel
(``SPDY/3.1+portforward.k8s.io``: the SPDY bytes inside binary messages). Per forwarded
connection kubectl opens an ``error`` and a ``data`` stream carrying the same
``requestid`` and ``port``; the data stream is spliced to a real local port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from core.demo.transport import ByteLink, close_writer, pump_spdy
from core.protocol.spdy import (
    RstStreamReceived,
    SpdyConnection,
    SpdyEvent,
    StreamDataReceived,
    StreamEnded,
    StreamOpened,
)

READ_SIZE = 64 * 1024
Resolver = Callable[[int], int | None]
"""Pod port → local port (None: the pod does not listen there)."""


@dataclass
class _Forward:
    request_id: str
    port: int
    error_id: int | None = None
    data_id: int | None = None
    inbound: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(64))
    task: asyncio.Task[None] | None = None


class PortForwardSession:
    def __init__(self, link: ByteLink, resolve: Resolver, pod: str) -> None:
        self.link = link
        self.resolve = resolve
        self.pod = pod
        self.conn = SpdyConnection(client_side=False)
        self.forwards: dict[str, _Forward] = {}
        self.by_stream: dict[int, _Forward] = {}

    def flush(self) -> None:
        self.link.write(self.conn.data_to_send())

    async def run(self) -> None:
        try:
            await pump_spdy(self.link, self.conn, self._handle)
        finally:
            tasks = [f.task for f in self.forwards.values() if f.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.link.close()

    async def _handle(self, event: SpdyEvent) -> None:
        if isinstance(event, StreamOpened):
            self._opened(event)
            return
        if not isinstance(event, StreamDataReceived | StreamEnded | RstStreamReceived):
            return
        fwd = self.by_stream.get(event.stream_id)
        if fwd is None or event.stream_id != fwd.data_id:
            return
        if isinstance(event, StreamDataReceived):
            await fwd.inbound.put(event.data)
        elif isinstance(event, StreamEnded):
            await fwd.inbound.put(None)
        elif fwd.task is not None:
            fwd.task.cancel()

    def _opened(self, event: StreamOpened) -> None:
        headers = event.headers
        kind = (headers.get("streamtype") or [""])[0]
        request_id = (headers.get("requestid") or [""])[0]
        try:
            port = int((headers.get("port") or [""])[0])
        except ValueError:
            port = -1
        self.conn.reply(event.stream_id)
        self.flush()
        if kind not in ("error", "data") or not 0 < port < 65536:
            self.conn.reset_stream(event.stream_id)
            self.flush()
            return
        fwd = self.forwards.setdefault(request_id, _Forward(request_id, port))
        self.by_stream[event.stream_id] = fwd
        if kind == "error":
            fwd.error_id = event.stream_id
        else:
            fwd.data_id = event.stream_id
            fwd.task = asyncio.create_task(self._forward(fwd))

    def _report(self, fwd: _Forward, message: str) -> None:
        if fwd.error_id is not None and self.conn.is_open(fwd.error_id):
            self.conn.send_data(fwd.error_id, message.encode(), fin=True)
        if fwd.data_id is not None and self.conn.is_open(fwd.data_id):
            self.conn.end_stream(fwd.data_id)
        self.flush()

    async def _forward(self, fwd: _Forward) -> None:
        assert fwd.data_id is not None
        data_id = fwd.data_id
        local = self.resolve(fwd.port)
        if local is None:
            self._report(fwd, f"error forwarding port {fwd.port} to pod {self.pod}: not listening")
            return
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
        except OSError as exc:
            self._report(fwd, f"error forwarding port {fwd.port} to pod {self.pod}: {exc}")
            return

        async def upstream() -> None:
            while (data := await fwd.inbound.get()) is not None:
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        async def downstream() -> None:
            while data := await reader.read(READ_SIZE):
                if not self.conn.is_open(data_id):
                    return
                self.conn.send_data(data_id, data)
                self.flush()
                await self.link.drain()
            if self.conn.is_open(data_id):
                self.conn.end_stream(data_id)
                self.flush()

        up = asyncio.create_task(upstream())
        try:
            with contextlib.suppress(OSError):
                await downstream()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(up), 5)
        finally:
            writer.close()  # before any await: a second cancellation must not leak it
            up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            await close_writer(writer)
            self._close_error(fwd)
            self.forwards.pop(fwd.request_id, None)
            for stream_id in (fwd.error_id, data_id):
                self.by_stream.pop(stream_id or 0, None)

    def _close_error(self, fwd: _Forward) -> None:
        if fwd.error_id is not None and self.conn.is_open(fwd.error_id):
            self.conn.end_stream(fwd.error_id)
            self.flush()
