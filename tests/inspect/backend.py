"""A strict fake apiserver on raw sockets: the second parser behind the inspect proxy.

It parses what arrives with its own hand-rolled, strict HTTP/1.1 request parser (not
h11), records every request, every parse failure (a desync) and every byte that was
never part of a valid request, and answers with scripted raw bytes.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_REQUEST_LINE = re.compile(rb"([A-Z]+) (/(?!/)[!-~]*) HTTP/1\.1")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([!-~ \t\x80-\xff]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9a-f]{1,8})\r\n")


class Desync(Exception):
    """Bytes that a strict parser cannot read as the next request."""


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def names(self) -> set[str]:
        return {k for k, _ in self.headers}


def parse_request(buf: bytes) -> tuple[Seen, int] | None:
    """One complete request from the start of ``buf``, or None if more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 256 * 1024 or (b"\n" in buf and b"\n" in buf.replace(b"\r\n", b"")):
            raise Desync(f"no valid head in {buf[:80]!r}")
        return None
    head = buf[:end]
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise Desync("bare CR or LF")
    lines = head.split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        raise Desync(f"bad request line {lines[0]!r}")
    headers = []
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t"):
            raise Desync("obs-fold")
        match = _HEADER.fullmatch(raw)
        if match is None:
            raise Desync(f"bad header line {raw!r}")
        headers.append((match[1].decode().lower(), match[2].decode("latin-1")))
    names = [k for k, _ in headers]
    if names.count("host") != 1:
        raise Desync("Host count")
    cl = [v for k, v in headers if k == "content-length"]
    te = [v for k, v in headers if k == "transfer-encoding"]
    if (cl and te) or len(cl) > 1 or len(te) > 1:
        raise Desync("ambiguous framing")
    pos = end + 4
    body = b""
    if te:
        if te[0] != "chunked":
            raise Desync(f"transfer-encoding {te[0]!r}")
        chunks = []
        while True:
            size = _CHUNK_SIZE.match(buf, pos)
            if size is None:
                if len(buf) - pos > 10:
                    raise Desync("bad chunk size line")
                return None
            n = int(size[1], 16)
            pos = size.end()
            if len(buf) < pos + n + 2:
                return None
            if buf[pos + n : pos + n + 2] != b"\r\n":
                raise Desync("bad chunk end")
            chunks.append(buf[pos : pos + n])
            pos += n + 2
            if n == 0:
                break
        body = b"".join(chunks)
    elif cl:
        if not cl[0].isdigit():
            raise Desync("bad Content-Length")
        n = int(cl[0])
        if len(buf) < pos + n:
            return None
        body = buf[pos : pos + n]
        pos += n
    seen = Seen(line[1].decode(), line[2].decode("latin-1"), headers, body)
    return seen, pos


@dataclass
class Reply:
    raw: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    upgrade: bool = False
    """After sending, treat the connection as switched (record raw bytes)."""
    delay: float = 0.0
    """Wait this long before answering, recording any bytes that arrive meanwhile."""
    hangup: bool = False
    """Close the connection right after the answer."""


@dataclass
class Conn:
    requests: list[Seen] = field(default_factory=list)
    desyncs: list[str] = field(default_factory=list)
    early: bytes = b""
    upgraded: bytes = b""
    leftover: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)


class StrictBackend:
    """Accepts TLS connections in threads; ``reply_for(request)`` scripts the answers."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.conns: list[Conn] = []
        self.reply_for: Callable[[Seen], Reply] = lambda _: Reply()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            conn = Conn()
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(sock, conn), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn: Conn) -> None:
        try:
            sock.settimeout(10)
            with self._context.wrap_socket(sock, server_side=True) as tls:
                self._converse(tls, conn)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()
            conn.done.set()

    def _converse(self, tls: ssl.SSLSocket, conn: Conn) -> None:
        buf = b""
        upgraded = False
        while True:
            if not upgraded and not conn.desyncs:
                try:
                    parsed = parse_request(buf)
                except Desync as exc:
                    conn.desyncs.append(str(exc))
                    parsed = None
                if parsed is not None:
                    request, used = parsed
                    buf = buf[used:]
                    conn.requests.append(request)
                    reply = self.reply_for(request)
                    if reply.delay:
                        tls.settimeout(reply.delay)
                        with contextlib.suppress(TimeoutError):
                            conn.early += tls.recv(65536)
                        tls.settimeout(10)
                        buf += conn.early
                    tls.sendall(reply.raw)
                    if reply.hangup:
                        break
                    if reply.upgrade:
                        upgraded = True
                        conn.upgraded, buf = buf, b""
                    continue
            try:
                data = tls.recv(65536)
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                break
            if upgraded:
                conn.upgraded += data
            else:
                buf += data
        conn.leftover = buf
