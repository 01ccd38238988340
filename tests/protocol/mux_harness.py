"""Two sans-I/O sessions wired back to back, with a controllable clock."""

from __future__ import annotations

from collections import defaultdict
from typing import TypeVar

from core.protocol.mux import MuxConfig, MuxSession
from core.protocol.mux import events as ev

E = TypeVar("E", bound=ev.Event)


class Pair:
    """A client and a server session; ``pump`` moves bytes until both are quiet."""

    def __init__(
        self, config: MuxConfig | None = None, server_config: MuxConfig | None = None
    ) -> None:
        self.now = 0.0
        cfg = config or MuxConfig(keepalive_interval=None)
        self.client = MuxSession(True, self.now, cfg)
        self.server = MuxSession(False, self.now, server_config or cfg)
        self.events: dict[bool, list[ev.Event]] = {True: [], False: []}
        self.received: dict[bool, dict[int, bytearray]] = {
            True: defaultdict(bytearray),
            False: defaultdict(bytearray),
        }
        self.auto_consume = True

    def side(self, is_client: bool) -> MuxSession:
        return self.client if is_client else self.server

    def pump(self, rounds: int = 10_000, chunk: int | None = None) -> int:
        """Exchange bytes until nothing moves; returns the bytes moved."""
        moved = 0
        for _ in range(rounds):
            progressed = False
            for src, dst in ((self.client, self.server), (self.server, self.client)):
                data = src.data_to_send(self.now)
                if data:
                    progressed = True
                    moved += len(data)
                    if chunk is None:
                        dst.receive_data(data, self.now)
                    else:
                        for i in range(0, len(data), chunk):
                            dst.receive_data(data[i : i + chunk], self.now)
                self._collect(dst)
                self._collect(src)
            if not progressed:
                return moved
        raise AssertionError("pump did not settle")

    def _collect(self, session: MuxSession) -> None:
        is_client = session is self.client
        for event in session.events_received():
            self.events[is_client].append(event)
            if isinstance(event, ev.DataReceived):
                self.received[is_client][event.stream_id] += event.data
                if self.auto_consume:
                    session.consumed(event.stream_id, len(event.data), self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for session in (self.client, self.server):
            session.handle_timer(self.now)
            self._collect(session)

    def of_type(self, is_client: bool, cls: type[E]) -> list[E]:
        return [e for e in self.events[is_client] if isinstance(e, cls)]
