"""The stream state table is whole: every entry is used, and a missing pair raises.

Each entry is driven through the public session API on a client stream, with the
table swapped for one that records its lookups, so an entry the session never looks
up (dead) or a state change that bypasses the table fails here. (Compiled code does not
see a swapped module global: with ``core.compiled`` active only the resulting states are
checked here, and the lookups in the pure-Python pass, tests/test_compiled.py.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from core import compiled, errors
from core.protocol.mux import INITIAL_WINDOW, StreamState, transitions
from core.protocol.mux import events as ev
from core.protocol.mux.transitions import TRANSITIONS, Action, next_state
from tests.protocol.mux_harness import Pair

_S = StreamState
ACTIONS: tuple[Action, ...] = ("send_fin", "recv_fin", "recv_data", "rst")


class _Recording(dict[tuple[StreamState, Action], StreamState]):
    """The table, noting every pair looked up."""

    def __init__(self) -> None:
        super().__init__(TRANSITIONS)
        self.looked_up: list[tuple[StreamState, Action]] = []

    def get(self, key: tuple[StreamState, Action], default: object = None) -> StreamState | None:  # type: ignore[override]
        self.looked_up.append(key)
        return super().get(key)


def _stream_in(state: StreamState) -> tuple[Pair, int]:
    """A client stream, acknowledged by the server, brought into ``state``."""
    p = Pair()
    sid = p.client.open_stream(p.now)
    p.pump()
    assert p.server.accept_stream(p.now) == sid
    p.pump()
    if state is _S.LOCAL_CLOSED:
        p.client.send_eof(sid)
    elif state is _S.REMOTE_CLOSED:
        p.server.send_eof(sid)
    p.pump()
    return p, sid


def _reset_by_peer(p: Pair, sid: int) -> None:
    p.server.reset_stream(sid)


def _reset_by_timeout(p: Pair, sid: int) -> None:
    """Our RST after a timeout: a write without window, or a peer lingering after our FIN."""
    cfg = p.client.config
    if _state_of(p, sid) is _S.LOCAL_CLOSED:
        p.client.close_stream(sid, p.now)
        p.advance(cfg.close_timeout + 1)
        return
    p.auto_consume = False
    p.client.send_data(sid, bytes(INITIAL_WINDOW + 1), p.now)
    p.pump()
    p.advance(cfg.write_timeout + 1)


DRIVERS: dict[Action, list[Callable[[Pair, int], object]]] = {
    "send_fin": [lambda p, sid: p.client.send_eof(sid)],
    "recv_fin": [lambda p, sid: p.server.send_eof(sid)],
    "recv_data": [lambda p, sid: p.server.send_data(sid, b"x", p.now)],
    "rst": [
        lambda p, sid: p.client.reset_stream(sid),
        _reset_by_peer,
        _reset_by_timeout,
        lambda p, sid: p.client.connection_lost(),
    ],
}

CASES = [
    pytest.param(state, action, drive, id=f"{state.value}-{action}-{i}")
    for (state, action) in TRANSITIONS
    for i, drive in enumerate(DRIVERS[action])
]


def _state_of(p: Pair, sid: int) -> StreamState:
    live = p.client.stream_snapshot(sid)
    if live is not None:
        return live.state
    ends = [
        e.final
        for e in p.events[True]
        if isinstance(e, ev.StreamFinished | ev.StreamWasReset) and e.stream_id == sid
    ]
    if ends:
        return ends[-1].state
    return _S.RESET  # reset_stream() and connection_lost() report no stream event


@pytest.mark.parametrize(("state", "action", "drive"), CASES)
def test_every_entry_is_driven_through_the_session(
    state: StreamState,
    action: Action,
    drive: Callable[[Pair, int], object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, sid = _stream_in(state)
    assert p.client.stream_snapshot(sid) is not None
    assert p.client.stream_snapshot(sid).state is state  # type: ignore[union-attr]
    table = _Recording()
    monkeypatch.setattr(transitions, "TRANSITIONS", table)
    drive(p, sid)
    p.pump()
    if transitions.__name__ not in compiled.loaded_compiled():
        assert (state, action) in table.looked_up
    assert _state_of(p, sid) is TRANSITIONS[(state, action)]


def test_every_entry_has_a_driver() -> None:
    assert {action for _, action in TRANSITIONS} == set(DRIVERS) == set(ACTIONS)


MISSING = [
    (state, action)
    for state, action in itertools.product(StreamState, ACTIONS)
    if (state, action) not in TRANSITIONS
]


@pytest.mark.parametrize(("state", "action"), MISSING, ids=lambda v: str(getattr(v, "value", v)))
def test_a_missing_pair_is_a_protocol_error_of_whoever_asked(
    state: StreamState, action: Action
) -> None:
    with pytest.raises(errors.RemoteProtocolError, match=f"{action} in state {state.value}"):
        next_state(state, action, remote=True, stream_id=7)
    with pytest.raises(errors.LocalProtocolError, match="on stream 7"):
        next_state(state, action, remote=False, stream_id=7)


def test_no_action_leaves_closed_or_reset() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] in (_S.CLOSED, _S.RESET)]
    assert len(MISSING) == len(StreamState) * len(ACTIONS) - len(TRANSITIONS)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda p, sid: p.server.send_eof(sid), "unexpected FIN"),
        (lambda p, sid: p.server.send_data(sid, b"x", p.now), "data after FIN"),
    ],
    ids=["second-fin", "data-after-fin"],
)
def test_a_missing_pair_from_the_peer_resets_only_that_stream(
    prepare: Callable[[Pair, int], object], message: str
) -> None:
    p, sid = _stream_in(_S.REMOTE_CLOSED)
    server = p.server._streams[sid]
    server.state = _S.OPEN  # a misbehaving peer: it acts as if it had sent no FIN
    server.fin_queued = False
    prepare(p, sid)
    p.pump()
    (reset,) = p.of_type(True, ev.StreamWasReset)
    assert isinstance(reset.error, errors.StreamReset)
    assert message in str(reset.error)
    assert p.client.terminated is None
