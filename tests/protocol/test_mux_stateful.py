"""A stateful model of two sessions: random operations keep every invariant."""

from __future__ import annotations

import contextlib
import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core import errors
from core.protocol.mux import MuxConfig, MuxSession
from core.protocol.mux import events as ev
from tests.protocol.mux_harness import Pair

CONFIG = MuxConfig(
    max_window=1 << 20,
    max_frame=16 * 1024,
    accept_backlog=4,
    max_streams=8,
    max_session_buffer=3 << 20,
    keepalive_interval=20.0,
    keepalive_timeout=5.0,
    open_timeout=30.0,
    close_timeout=30.0,
    write_timeout=60.0,
)
SIDE = st.booleans()  # True: the client side acts
PICK = st.integers(0, 1_000_000)
USAGE = (errors.StreamClosed, errors.SessionClosed, errors.LimitExceeded)


class MuxModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(CONFIG)
        self.pair.auto_consume = False
        self.sent: dict[tuple[bool, int], bytearray] = {}
        self.closed_reading: set[tuple[bool, int]] = set()

    def _session(self, side: bool) -> MuxSession:
        return self.pair.side(side)

    def _live(self, side: bool) -> list[int]:
        return sorted(self._session(side)._streams)

    def _pick(self, side: bool, n: int) -> int | None:
        live = self._live(side)
        return live[n % len(live)] if live else None

    @rule(side=SIDE, size=st.integers(0, 3000), seed=PICK, fin=st.booleans())
    def open(self, side: bool, size: int, seed: int, fin: bool) -> None:
        data = random.Random(seed).randbytes(size)
        try:
            sid = self._session(side).open_stream(self.pair.now, data, fin=fin)
        except (*USAGE, errors.SessionGoneAway):
            return
        self.sent[(side, sid)] = bytearray(data)

    @rule(side=SIDE)
    def accept(self, side: bool) -> None:
        self._session(side).accept_stream(self.pair.now)

    @rule(side=SIDE, n=PICK, size=st.integers(1, 400_000), seed=PICK)
    def write(self, side: bool, n: int, size: int, seed: int) -> None:
        sid = self._pick(side, n)
        if sid is None:
            return
        data = random.Random(seed).randbytes(size)
        try:
            self._session(side).send_data(sid, data, self.pair.now)
        except USAGE:
            return
        self.sent.setdefault((side, sid), bytearray()).extend(data)

    @rule(side=SIDE, n=PICK, fraction=st.floats(0.0, 1.0))
    def consume(self, side: bool, n: int, fraction: float) -> None:
        session = self._session(side)
        sid = self._pick(side, n)
        if sid is None:
            return
        snap = session.stream_snapshot(sid)
        assert snap is not None
        session.consumed(sid, int(snap.buffered * fraction), self.pair.now)

    @rule(side=SIDE, n=PICK)
    def half_close(self, side: bool, n: int) -> None:
        sid = self._pick(side, n)
        if sid is not None:
            with contextlib.suppress(*USAGE):
                self._session(side).send_eof(sid)

    @rule(side=SIDE, n=PICK)
    def close(self, side: bool, n: int) -> None:
        sid = self._pick(side, n)
        if sid is not None:
            self._session(side).close_stream(sid, self.pair.now)
            self.closed_reading.add((side, sid))

    @rule(side=SIDE, n=PICK)
    def reset(self, side: bool, n: int) -> None:
        sid = self._pick(side, n)
        if sid is not None:
            self._session(side).reset_stream(sid)

    @rule(side=SIDE)
    def ping(self, side: bool) -> None:
        self._session(side).ping(self.pair.now)

    @rule(side=SIDE, roll=st.integers(0, 9))
    def go_away(self, side: bool, roll: int) -> None:
        if roll == 0:  # rare: it ends the run's stream opening
            self._session(side).go_away()

    @rule(seconds=st.sampled_from([0.001, 0.5, 4.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.pair.advance(seconds)

    @rule(chunk=st.sampled_from([None, None, 1, 7, 4096]))
    def pump(self, chunk: int | None) -> None:
        self.pair.pump(chunk=chunk)

    @invariant()
    def windows_in_range(self) -> None:
        for side in (True, False):
            session = self._session(side)
            total = 0
            for stream in session._streams.values():
                assert stream.recv_window >= 0
                assert stream.recv_window + stream.buffered <= stream.recv_size
                assert stream.recv_size <= CONFIG.max_window
                assert 0 <= stream.send_window <= 0xFFFFFFFF
                assert stream.outbox_size == sum(len(c) for c in stream.outbox)
                total += stream.recv_size
            assert session.reserved == total <= CONFIG.max_session_buffer

    @invariant()
    def in_order_exactly_once(self) -> None:
        for receiver in (True, False):
            for sid, got in self.pair.received[receiver].items():
                sent = self.sent.get((not receiver, sid), bytearray())
                assert got == sent[: len(got)], f"stream {sid}: delivery is not a prefix"

    def teardown(self) -> None:
        """Drain and finish every stream; nothing may be left behind, nothing lost."""
        pair = self.pair
        pair.auto_consume = True
        for _ in range(3):
            pair.pump()
            for side in (True, False):
                session = self._session(side)
                while session.accept_stream(pair.now) is not None:
                    pass
                for sid in self._live(side):
                    snap = session.stream_snapshot(sid)
                    assert snap is not None
                    session.consumed(sid, snap.buffered, pair.now)
                    if not session._streams[sid].fin_queued:
                        session.send_eof(sid)
            pair.pump()
        for side in (True, False):
            for sid in self._live(side):
                self._session(side).close_stream(sid, pair.now)
        pair.pump()
        for _ in range(3):
            pair.advance(31.0)
            pair.pump()
        for side in (True, False):
            session = self._session(side)
            if session.terminated is None:
                assert session.stream_count == 0
                assert session.backlog == 0
            for end in pair.events[side]:
                if not isinstance(end, ev.StreamFinished):
                    continue
                sent = self.sent.get((not side, end.stream_id), bytearray())
                if (side, end.stream_id) not in self.closed_reading:
                    assert pair.received[side][end.stream_id] == sent


MuxModel.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestMuxModel = MuxModel.TestCase
