"""Real local services behind the demo pods' ports (targets of ``kubectl port-forward``).

* ``http``: a tiny HTTP/1.1 page that counts its visitors (and logs each request);
* ``echo``: sends back every byte, half-closes at EOF;
* ``sink``: swallows everything, then answers ``<sha256-hex> <byte count>\\n`` — a way to
  check a large transfer end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable

import h11

from core.demo.transport import close_writer

READ_SIZE = 256 * 1024
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LocalServices:
    """Starts the services on ephemeral loopback ports; ``ports`` maps name → port."""

    def __init__(self, on_http_request: Callable[[str], Awaitable[None]]) -> None:
        self._on_http_request = on_http_request
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.ports: dict[str, int] = {}
        self.visits = 0

    async def start(self) -> None:
        handlers: dict[str, Handler] = {"http": self._http, "echo": _echo, "sink": _sink}
        for name, handler in handlers.items():
            server = await asyncio.start_server(self._tracked(handler), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    def _tracked(self, handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                # Ends quietly when stop() cancels it (as DemoApiServer._connection does).
                with contextlib.suppress(OSError, h11.ProtocolError, asyncio.CancelledError):
                    await handler(reader, writer)
            finally:
                await close_writer(writer)
                self._tasks.discard(task)

        return run

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_SIZE)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                self.visits += 1
                target = event.target.decode(errors="replace")
                await self._on_http_request(f"{event.method.decode()} {target}")
                body = (
                    f"Hello from the Wicket demo pod 'web'!\n"
                    f"You asked for {target}; visit number {self.visits}.\n"
                ).encode()
                headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
                writer.write(
                    conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK")) or b""
                )
                writer.write(conn.send(h11.Data(data=body)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
            elif isinstance(event, h11.ConnectionClosed) or conn.our_state is h11.MUST_CLOSE:
                return
            elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_SIZE):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    digest = hashlib.sha256()
    total = 0
    while data := await reader.read(READ_SIZE):
        digest.update(data)
        total += len(data)
    writer.write(f"{digest.hexdigest()} {total}\n".encode())
    await writer.drain()
