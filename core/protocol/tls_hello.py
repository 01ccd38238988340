"""The TLS ClientHello's server name and ALPN offer, read from the first bytes, without I/O.

A passthrough endpoint cannot decrypt kubectl's end-to-end TLS, but the ClientHello is
in the clear: its SNI names the apiserver, and its ALPN offer tells an API connection
(``h2``) from the ``http/1.1``-only connections kubectl opens for exec, attach and
port-forward upgrades. ``HelloPeek`` is fed the client's bytes as they pass (it keeps
copies of at most ``limit`` bytes and never holds the stream back) and gives up at the
first thing that is not a ClientHello: another record type, another handshake message,
a malformed field, or more than ``limit`` bytes without a complete hello.

Wire format (RFC 8446 §4.1.2, §5.1; RFC 6066 §3; RFC 7301 §3.1): handshake records
(type 22) carry the handshake message, possibly split across several records; the
ClientHello body is ``version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
compression<1..2^8-1> extensions<0..2^16-1>``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LIMIT", "ClientHello", "HelloPeek", "parse_client_hello"]

LIMIT = 16 * 1024
"""Bytes looked at before giving up (a ClientHello is a few hundred bytes to ~2 KiB)."""
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_RECORD_HEADER = 5
_MAX_RECORD = 1 << 14
_SERVER_NAME = 0
_ALPN = 16
_HOST_NAME = 0


@dataclass(frozen=True)
class ClientHello:
    """What a ClientHello says in the clear: ``sni`` (None without the extension) and
    the ALPN protocols offered, in the client's order (empty without the extension)."""

    sni: str | None
    alpn: tuple[str, ...]


class _Malformed(Exception):
    pass


class _Reader:
    """Bounds-checked reads over one buffer; any overrun is ``_Malformed``."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _Malformed("truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def rest(self) -> bytes:
        return self.take(self.left)

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int, minimum: int = 0) -> _Reader:
        body = self.take(self.number(width))
        if len(body) < minimum:
            raise _Malformed("vector too short")
        return _Reader(body)

    @property
    def left(self) -> int:
        return len(self._data) - self._pos


def parse_client_hello(body: bytes) -> ClientHello:
    """A ClientHello message body (after the 4-byte handshake header); ``ValueError``
    if it is malformed."""
    try:
        return _parse(_Reader(body))
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed ClientHello: {exc}") from None


def _parse(hello: _Reader) -> ClientHello:
    hello.take(2 + 32)  # legacy_version, random
    if hello.vector(1).left > 32:
        raise _Malformed("session id longer than 32 bytes")
    if hello.vector(2, 2).left % 2:
        raise _Malformed("odd cipher suite list")
    hello.vector(1, 1)  # compression methods
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    if not hello.left:
        return ClientHello(None, ())
    extensions = hello.vector(2)
    if hello.left:
        raise _Malformed("bytes after the extensions")
    seen: set[int] = set()
    while extensions.left:
        kind = extensions.number(2)
        data = extensions.vector(2)
        if kind in seen:
            raise _Malformed(f"extension {kind} repeated")
        seen.add(kind)
        if kind == _SERVER_NAME:
            sni = _server_name(data)
        elif kind == _ALPN:
            alpn = _protocols(data)
    return ClientHello(sni, alpn)


def _server_name(data: _Reader) -> str | None:
    names = data.vector(2, 1)
    host = None
    while names.left:
        kind = names.number(1)
        name = names.vector(2, 1).rest()
        if kind == _HOST_NAME and host is None:
            host = name.decode("ascii")
    return host


def _protocols(data: _Reader) -> tuple[str, ...]:
    names = data.vector(2, 2)
    out = []
    while names.left:
        out.append(names.vector(1, 1).rest().decode("ascii"))
    return tuple(out)


class HelloPeek:
    """Looks at a client's first bytes for a ClientHello as they pass (sans-I/O).

    ``receive_data`` never fails, says whether it is ``done`` and ignores everything
    after; then ``hello`` is the result, or None with ``failure`` saying why it gave up.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._records = bytearray()  # record bytes not yet split into fragments
        self._message = bytearray()  # handshake bytes gathered from the fragments
        self._seen = 0
        self.done = False
        self.hello: ClientHello | None = None
        self.failure: str | None = None

    def receive_data(self, data: bytes) -> bool:
        """Look at the next bytes; True once done (found or given up)."""
        if self.done or not data:
            return self.done
        if not self._seen and data[0] != _HANDSHAKE:  # the common give-up, without raising
            self._give_up(f"record type {data[0]}, not a handshake")
            return True
        room = self._limit - self._seen
        self._seen += len(data)
        self._records += data[:room]
        try:
            while not self.done and self._next_record():
                self._read_message()
        except ValueError as exc:
            self._give_up(str(exc))
        if not self.done and self._seen >= self._limit:
            self._give_up(f"no complete ClientHello in the first {self._limit} bytes")
        return self.done

    def _next_record(self) -> bool:
        """Move one complete handshake record's fragment to the message buffer."""
        records = self._records
        if len(records) < _RECORD_HEADER:
            return False
        if records[0] != _HANDSHAKE:
            raise ValueError(f"record type {records[0]}, not a handshake")
        if records[1] != 3:
            raise ValueError("not a TLS record")
        length = int.from_bytes(records[3:5], "big")
        if not 0 < length <= _MAX_RECORD:
            raise ValueError(f"handshake record of {length} bytes")
        if len(records) < _RECORD_HEADER + length:
            return False
        self._message += records[_RECORD_HEADER : _RECORD_HEADER + length]
        del records[: _RECORD_HEADER + length]
        return True

    def _read_message(self) -> None:
        message = self._message
        if message and message[0] != _CLIENT_HELLO:
            raise ValueError(f"handshake message {message[0]}, not a ClientHello")
        if len(message) < 4:
            return
        length = int.from_bytes(message[1:4], "big")
        if length > self._limit:
            raise ValueError(f"a ClientHello of {length} bytes")
        if len(message) < 4 + length:
            return
        self.hello = parse_client_hello(bytes(message[4 : 4 + length]))
        self._finish()

    def _give_up(self, why: str) -> None:
        self.failure = why
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self._records = bytearray()
        self._message = bytearray()
