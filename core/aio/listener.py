"""A listening socket that hands over accepted sockets, not transports.

``loop.create_server`` wraps each accepted socket in a transport that starts reading
right away on uvloop (``pause_reading()`` inside ``connection_made`` does not hold it
back there), so bytes a peer sends first would reach a protocol not yet meant to read
them. The relay wants the raw socket: it applies its pre-authentication limits and then
hands the socket to ``loop.connect_accepted_socket`` with TLS, so the ClientHello stays in
the kernel until the TLS layer reads it, on either loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("wicket.listener")

#: Accepts per readiness callback, as asyncio's own server loop does (its ``backlog``).
ACCEPT_BATCH = 128
#: Out of descriptors: stop accepting this long, like asyncio (the backlog keeps them).
PAUSE_ON_EXHAUSTION = 1.0
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

OnAccept = Callable[[socket.socket, object], None]


def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (one port for all)."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, resolved in infos:
            if (family, resolved) in seen:
                continue
            seen.add((family, resolved))
            address = resolved
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the port the first one got, for all
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts on ``sockets`` and calls ``on_accept(sock, peer)`` with non-blocking sockets."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket], on_accept: OnAccept
    ) -> None:
        self.loop = loop
        self.sockets = sockets
        self._on_accept = on_accept
        self._paused: asyncio.TimerHandle | None = None
        self._closed = False
        self._watch()

    def _watch(self) -> None:
        self._paused = None
        if self._closed:
            return
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._ready, sock)

    def _ready(self, listening: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # gone before we took it
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                log.error("cannot accept: %s; pausing for %.0f s", exc, PAUSE_ON_EXHAUSTION)
                for s in self.sockets:
                    self.loop.remove_reader(s.fileno())
                self._paused = self.loop.call_later(PAUSE_ON_EXHAUSTION, self._watch)
                return
            sock.setblocking(False)
            self._on_accept(sock, peer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
            sock.close()
