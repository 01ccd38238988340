"""Byte splicing between two asyncio transports, with back-pressure both ways.

A ``Splice`` joins two transports (TCP sockets, mux streams) with one small protocol
on each side: bytes read on one side are written to the other as they arrive, a full
write buffer pauses reading on the far side, an EOF becomes a half-close (``write_eof``)
and the other direction keeps flowing until it ends too. No task, no copy beyond the
transports' own. Byte counts and the close reason are kept for the statistics.

Only data loss is a failure: a side that goes away (even with a reset, ENOTCONN or
EPIPE) after it said EOF has closed normally, and the far side gets a FIN, not a
reset; a side that goes away before its EOF cut its bytes off, and that is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

#: Called once when both directions are done: (bytes a→b, bytes b→a, error or None).
DoneCallback = Callable[[int, int, Exception | None], None]


class _Side(asyncio.Protocol):
    __slots__ = ("bytes", "eof", "lost", "peer", "splice", "transport")

    def __init__(self, splice: Splice) -> None:
        self.splice = splice
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.bytes = 0
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        assert peer is not None
        if peer.transport is None or peer.lost:
            return
        self.bytes += len(data)
        peer.transport.write(data)
        self.splice._activity()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        assert peer is not None
        if peer.transport is not None and not peer.lost:
            if peer.transport.can_write_eof():
                try:
                    peer.transport.write_eof()
                except OSError as exc:
                    # A socket the far end already reset: asyncio's write_eof raises
                    # (shutdown() -> ENOTCONN) instead of reporting it; left to
                    # propagate, it would end the whole mux session, not this splice.
                    self.splice._finish(None if peer.eof else exc)
                    return True
            else:
                self.splice._finish(None)
                return False
        if peer.eof:
            self.splice._finish(None)
        return True  # keep the transport open: the other direction may still flow

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # After its EOF, a side's reset is how a full close answers the bytes still
        # coming its way (TCP cannot tell a full close from a half close): it wanted
        # nothing more, so that is a normal close. Before its EOF, bytes were cut off.
        self.lost = True
        self.splice._finish(None if self.eof else exc, abrupt=not self.eof)


class Splice:
    """Joins transport ``a`` and transport ``b`` (attach with ``a_protocol``/``b_protocol``).

    ``on_done`` gets the byte counts and the error (None for a clean end) exactly once.
    ``on_activity`` (optional) is called on every chunk moved: keep it O(1).
    """

    def __init__(
        self, on_done: DoneCallback | None = None, on_activity: Callable[[], None] | None = None
    ) -> None:
        self.a = _Side(self)
        self.b = _Side(self)
        self.a.peer = self.b
        self.b.peer = self.a
        self._on_done = on_done
        self._on_activity = on_activity
        self.done = False
        self.error: Exception | None = None

    @property
    def bytes_a_to_b(self) -> int:
        return self.a.bytes

    @property
    def bytes_b_to_a(self) -> int:
        return self.b.bytes

    def _activity(self) -> None:
        if self._on_activity is not None:
            self._on_activity()

    def _finish(self, exc: Exception | None, abrupt: bool = False) -> None:
        if self.done:
            return
        if exc is None and abrupt:
            exc = ConnectionResetError("connection closed before end of stream")
        self.done = True
        self.error = exc
        for side in (self.a, self.b):
            transport = side.transport
            if transport is not None and not transport.is_closing():
                if exc is None:
                    transport.close()
                else:
                    transport.abort()
        if self._on_done is not None:
            self._on_done(self.a.bytes, self.b.bytes, exc)

    def close(self) -> None:
        """Abort both sides now."""
        self._finish(ConnectionAbortedError("spliced connection closed"))


def splice_transports(
    a: asyncio.Transport,
    b: asyncio.Transport,
    on_done: DoneCallback | None = None,
    first_to_b: bytes = b"",
    first_to_a: bytes = b"",
) -> Splice:
    """Splice two live transports; ``first_*`` are bytes already read that belong in."""
    splice = Splice(on_done)
    for transport, side in ((a, splice.a), (b, splice.b)):
        transport.set_protocol(side)
        side.connection_made(transport)
    if first_to_b:
        splice.a.data_received(first_to_b)
    if first_to_a:
        splice.b.data_received(first_to_a)
    return splice
