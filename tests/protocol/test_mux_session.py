"""The session state machine: streams, flow control, timers, limits, bad input."""

from __future__ import annotations

import pytest

from core import errors
from core.protocol.mux import INITIAL_WINDOW, MuxConfig, MuxSession, StreamState
from core.protocol.mux import events as ev
from core.protocol.mux.frames import (
    MAX_UINT32,
    Flag,
    FrameType,
    MuxFrameDecoder,
    encode_header,
)
from tests.protocol.mux_harness import Pair

MiB = 1 << 20


def decode(data: bytes) -> list[tuple[FrameType, Flag, int, int]]:
    return [(f.type, f.flags, f.stream_id, f.length) for f in MuxFrameDecoder(1 << 30).feed(data)]


def test_open_with_data_is_one_frame_with_syn() -> None:
    c = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None))
    sid = c.open_stream(0.0, b"GET / HTTP/1.1\r\n\r\n")
    assert sid == 1
    assert decode(c.data_to_send(0.0)) == [(FrameType.DATA, Flag.SYN, 1, 18)]


def test_open_without_data_sends_syn_window_update() -> None:
    s = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None))
    assert s.open_stream(0.0) == 2
    assert decode(s.data_to_send(0.0)) == [(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0)]


def test_accept_acks_and_data_flows_both_ways() -> None:
    p = Pair()
    sid = p.client.open_stream(p.now, b"ping")
    p.pump()
    assert p.of_type(False, ev.StreamIncoming) == [ev.StreamIncoming(sid)]
    assert p.received[False][sid] == b"ping"
    assert p.server.accept_stream(p.now) == sid
    p.server.send_data(sid, b"pong", p.now)
    p.pump()
    assert p.of_type(True, ev.StreamAcked) == [ev.StreamAcked(sid)]
    assert p.received[True][sid] == b"pong"


def test_half_close_reads_continue_until_peer_fin() -> None:
    p = Pair()
    sid = p.client.open_stream(p.now, b"stdin", fin=True)
    p.pump()
    p.server.accept_stream(p.now)
    assert p.of_type(False, ev.StreamEnded) == [ev.StreamEnded(sid)]
    for i in range(5):
        p.server.send_data(sid, b"out%d" % i, p.now)
        p.pump()
    assert p.received[True][sid] == b"out0out1out2out3out4"
    p.server.send_eof(sid)
    p.pump()
    assert [type(e) for e in p.events[True]][-2:] == [ev.StreamEnded, ev.StreamFinished]
    assert p.client.stream_count == 0
    assert p.server.stream_count == 0
    with pytest.raises(errors.StreamClosed):
        p.client.send_data(sid, b"late", p.now)


def test_reset_reaches_the_peer_and_frees_both_sides() -> None:
    p = Pair()
    sid = p.client.open_stream(p.now, b"x")
    p.pump()
    p.server.accept_stream(p.now)
    p.pump()
    p.server.reset_stream(sid)
    p.pump()
    resets = p.of_type(True, ev.StreamWasReset)
    assert len(resets) == 1
    assert isinstance(resets[0], ev.StreamWasReset)
    assert isinstance(resets[0].error, errors.StreamReset)
    assert resets[0].final.state == StreamState.RESET
    assert p.client.stream_count == p.server.stream_count == 0


def test_backlog_full_refuses_with_rst() -> None:
    cfg = MuxConfig(keepalive_interval=None, accept_backlog=2)
    p = Pair(cfg)
    ids = [p.client.open_stream(p.now, b"hi") for _ in range(3)]
    p.pump()
    refused = p.of_type(True, ev.StreamWasReset)
    assert [e.stream_id for e in refused] == [ids[2]]
    assert isinstance(refused[0].error, errors.StreamRefused)
    assert p.server.snapshot().streams_refused == 1


def test_sender_respects_initial_window_then_window_updates() -> None:
    p = Pair()
    p.auto_consume = False
    sid = p.client.open_stream(p.now, b"\0" * (INITIAL_WINDOW + 1000))
    p.pump()
    assert len(p.received[False][sid]) == INITIAL_WINDOW
    assert p.client.outbox_size(sid) == 1000
    p.server.consumed(sid, INITIAL_WINDOW // 2, p.now)
    p.pump()
    assert len(p.received[False][sid]) == INITIAL_WINDOW + 1000


def test_window_grows_for_a_window_bound_fast_reader_up_to_max() -> None:
    cfg = MuxConfig(keepalive_interval=None, max_window=2 * MiB)
    p = Pair(cfg)
    sid = p.client.open_stream(p.now)
    for _ in range(64):
        p.client.send_data(sid, b"\1" * 256 * 1024, p.now)
        p.pump()
    assert len(p.received[False][sid]) == 64 * 256 * 1024
    assert p.server.reserved == 2 * MiB  # grown to the maximum and no further
    snap = p.client.stream_snapshot(sid)
    assert snap is not None
    assert snap.send_window == 2 * MiB  # the sender may now have 2 MiB in flight


def test_window_does_not_grow_when_the_reader_is_slower_than_the_link() -> None:
    p = Pair(MuxConfig(keepalive_interval=None, initial_rtt=0.01))
    p.auto_consume = False
    sid = p.client.open_stream(p.now)
    for _ in range(16):
        p.client.send_data(sid, b"\2" * 128 * 1024, p.now)
        p.pump()
        p.now += 1.0  # a reader that takes a second per chunk
        p.server.consumed(sid, p.server.stream_snapshot(sid).buffered, p.now)  # type: ignore[union-attr]
        p.pump()
    assert p.server.reserved == INITIAL_WINDOW


def test_slow_reader_stalls_only_its_own_stream() -> None:
    p = Pair()
    p.auto_consume = False
    slow = p.client.open_stream(p.now, b"s" * (2 * INITIAL_WINDOW))
    fast = p.client.open_stream(p.now)
    p.pump()
    for _ in range(20):
        p.client.send_data(fast, b"f" * 65536, p.now)
        p.pump()
        buffered = p.server.stream_snapshot(fast).buffered  # type: ignore[union-attr]
        p.server.consumed(fast, buffered, p.now)
        p.pump()
    assert len(p.received[False][fast]) == 20 * 65536
    assert len(p.received[False][slow]) == INITIAL_WINDOW
    assert p.client.outbox_size(slow) == INITIAL_WINDOW


def test_session_buffer_budget_bounds_stalled_streams() -> None:
    cfg = MuxConfig(keepalive_interval=None, max_session_buffer=4 * INITIAL_WINDOW)
    p = Pair(cfg)
    p.auto_consume = False
    ids = [p.client.open_stream(p.now) for _ in range(4)]
    for sid in ids:
        p.client.send_data(sid, b"x" * INITIAL_WINDOW, p.now)
    with pytest.raises(errors.LimitExceeded):
        p.client.open_stream(p.now)
    p.pump()
    assert p.server.session_buffer == 4 * INITIAL_WINDOW
    assert p.server.reserved <= cfg.max_session_buffer
    # A peer with a bigger budget opening more: refused, nothing buffered beyond the cap.
    big = Pair(MuxConfig(keepalive_interval=None), server_config=cfg)
    big.auto_consume = False
    more = [big.client.open_stream(big.now, b"y" * 1000) for _ in range(10)]
    big.pump()
    assert len(big.of_type(True, ev.StreamWasReset)) == 6
    assert big.server.session_buffer == 4 * 1000
    del more


def test_keepalive_measures_rtt_then_missed_keepalive_ends_session() -> None:
    cfg = MuxConfig(keepalive_interval=5.0, keepalive_timeout=2.0)
    p = Pair(cfg)
    p.advance(0.0)  # first ping at once
    sent = p.client.data_to_send(p.now)
    p.now += 0.25
    p.server.receive_data(sent, p.now)
    p.client.receive_data(p.server.data_to_send(p.now), p.now)
    p._collect(p.client)
    assert p.client.rtt == pytest.approx(0.25)
    assert p.of_type(True, ev.PongReceived) == [ev.PongReceived(0.25)]
    assert p.client.get_timer() == pytest.approx(5.25)
    p.advance(5.0)  # next ping goes out ... and the peer never answers
    p.client.data_to_send(p.now)
    p.advance(2.0)
    term = p.of_type(True, ev.SessionTerminated)
    assert len(term) == 1
    assert isinstance(term[0].error, errors.KeepaliveTimeout)
    with pytest.raises(errors.SessionClosed):
        p.client.open_stream(p.now)


DEFER = MuxConfig(keepalive_interval=None, defer_ack=True)


def test_deferred_ack_rides_on_the_first_data_frame() -> None:
    p = Pair(MuxConfig(keepalive_interval=None), DEFER)
    sid = p.client.open_stream(p.now, b"ping")
    p.pump()
    assert p.server.accept_stream(p.now) == sid
    assert p.server.data_to_send(p.now) == b""  # nothing of its own
    p.server.send_data(sid, b"pong", p.now)
    p.server.send_data(sid, b"more", p.now)
    wire = p.server.data_to_send(p.now)
    assert decode(wire) == [(FrameType.DATA, Flag.ACK, sid, 8)]  # one frame, ACK on it
    p.client.receive_data(wire, p.now)
    assert [e for e in p.client.events_received() if isinstance(e, ev.StreamAcked)] == [
        ev.StreamAcked(sid)
    ]
    p.server.send_data(sid, b"again", p.now)
    assert decode(p.server.data_to_send(p.now)) == [(FrameType.DATA, Flag(0), sid, 5)]


@pytest.mark.parametrize("how", ["eof", "close", "window"])
def test_deferred_ack_rides_on_fin_or_window_update(how: str) -> None:
    p = Pair(MuxConfig(keepalive_interval=None), DEFER)
    p.auto_consume = False
    sid = p.client.open_stream(p.now, b"x" * (INITIAL_WINDOW if how == "window" else 1))
    p.pump()
    assert p.server.accept_stream(p.now) == sid
    if how == "eof":
        p.server.send_eof(sid)
    elif how == "close":
        p.server.close_stream(sid, p.now)
    else:
        p.server.consumed(sid, INITIAL_WINDOW, p.now)
    frames = decode(p.server.data_to_send(p.now))
    assert len(frames) == 1
    ftype, flags, fsid, _ = frames[0]
    assert (ftype, fsid) == (FrameType.WINDOW_UPDATE, sid)
    assert flags & Flag.ACK
    assert bool(flags & Flag.FIN) == (how != "window")


def test_deferred_ack_reset_is_a_refusal_for_the_opener() -> None:
    p = Pair(MuxConfig(keepalive_interval=None), DEFER)
    sid = p.client.open_stream(p.now, b"ping")
    p.pump()
    p.server.accept_stream(p.now)
    p.server.reset_stream(sid)
    p.pump()
    (reset,) = p.of_type(True, ev.StreamWasReset)
    assert isinstance(reset.error, errors.StreamRefused)


def test_deferred_ack_unanswered_stream_hits_the_open_timeout() -> None:
    p = Pair(MuxConfig(keepalive_interval=None, open_timeout=3.0), DEFER)
    p.client.open_stream(p.now, b"hello")
    p.pump()
    p.server.accept_stream(p.now)  # accepted, but the application never answers
    p.advance(3.0)
    p.pump()
    assert isinstance(p.of_type(True, ev.StreamWasReset)[0].error, errors.OpenTimeout)


def test_open_timeout_resets_an_unacked_stream() -> None:
    p = Pair(MuxConfig(keepalive_interval=None, open_timeout=3.0))
    sid = p.client.open_stream(p.now, b"hello")
    p.pump()  # the server never accepts it
    p.advance(3.0)
    p.pump()
    resets = p.of_type(True, ev.StreamWasReset)
    assert isinstance(resets[0].error, errors.OpenTimeout)
    assert p.server.stream_count == 0  # the RST reached the peer
    assert sid not in [s.stream_id for s in p.client.snapshot().streams]


def test_write_timeout_resets_the_stream_so_the_peer_never_waits() -> None:
    p = Pair(MuxConfig(keepalive_interval=None, write_timeout=10.0))
    p.auto_consume = False
    sid = p.client.open_stream(p.now, b"a" * (INITIAL_WINDOW + 1))
    p.pump()
    p.server.accept_stream(p.now)
    p.pump()
    p.advance(9.0)
    assert p.of_type(True, ev.StreamWasReset) == []
    p.advance(1.0)
    p.pump()
    resets = p.of_type(True, ev.StreamWasReset)
    assert isinstance(resets[0].error, errors.WriteTimeout)
    peer = p.of_type(False, ev.StreamWasReset)
    assert [e.stream_id for e in peer] == [sid]


def test_close_timeout_resets_a_lingering_peer() -> None:
    p = Pair(MuxConfig(keepalive_interval=None, close_timeout=4.0))
    sid = p.client.open_stream(p.now, b"x")
    p.pump()
    p.server.accept_stream(p.now)
    p.client.close_stream(sid, p.now)
    p.pump()
    p.advance(4.0)
    p.pump()
    assert isinstance(p.of_type(True, ev.StreamWasReset)[0].error, errors.CloseTimeout)
    assert p.server.stream_count == 0


def test_go_away_stops_new_streams_and_lets_old_ones_finish() -> None:
    p = Pair()
    sid = p.client.open_stream(p.now, b"a")
    p.pump()
    p.server.accept_stream(p.now)
    p.server.go_away()
    p.pump()
    assert p.of_type(True, ev.GoAwayReceived) == [ev.GoAwayReceived(0)]
    with pytest.raises(errors.SessionGoneAway):
        p.client.open_stream(p.now)
    p.client.send_data(sid, b"more", p.now)
    p.pump()
    assert p.received[False][sid] == b"amore"


def test_go_away_with_error_code_ends_the_session() -> None:
    p = Pair()
    p.client.receive_data(encode_header(FrameType.GO_AWAY, 0, 0, 2), p.now)
    p._collect(p.client)
    term = p.of_type(True, ev.SessionTerminated)
    assert "internal error" in str(term[0].error)


def _fails_with(session: MuxSession, wire: bytes, message: str) -> None:
    session.receive_data(wire, 0.0)
    events = session.events_received()
    term = [e for e in events if isinstance(e, ev.SessionTerminated)]
    assert len(term) == 1, events
    assert isinstance(term[0].error, errors.RemoteProtocolError)
    assert message in str(term[0].error)
    out = decode(session.data_to_send(0.0))
    assert (FrameType.GO_AWAY, Flag.NONE, 0, 1) in out  # GoAway(protocol error) is sent


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (encode_header(0, 1, 2, 0), "with our id parity"),
        (encode_header(0, 0, 7, 0), "unknown stream 7"),
        (encode_header(1, 0, 9, 100), "unknown stream 9"),
        (encode_header(0, 1, 1, 0) + encode_header(0, 1, 1, 0), "reused stream id 1"),
        (encode_header(0, 1, 5, 0) + encode_header(0, 1, 3, 0), "reused stream id 3"),
        (encode_header(2, 1, 1, 0), "PING on stream 1"),
        (encode_header(3, 0, 1, 0), "GO_AWAY on stream 1"),
        (encode_header(0, 0, 1, 1 << 31), "exceeds the largest window"),
        (bytes([1]) + bytes(11), "version"),
        (encode_header(7, 0, 1, 0), "unknown frame type"),
        (encode_header(0, 0x40, 1, 0), "unknown flags"),
    ],
)
def test_bad_input_closes_the_session_with_a_clear_error(wire: bytes, message: str) -> None:
    server = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None))
    _fails_with(server, wire, message)


def test_data_beyond_the_window_resets_only_that_stream() -> None:
    server = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None))
    server.receive_data(encode_header(1, 1, 1, 0) + encode_header(1, 1, 3, 0), 0.0)
    over = INITIAL_WINDOW + 1
    server.receive_data(encode_header(0, 0, 1, over) + b"z" * over, 0.0)
    events = server.events_received()
    resets = [e for e in events if isinstance(e, ev.StreamWasReset)]
    assert [r.stream_id for r in resets] == [1]
    assert "beyond the window" in str(resets[0].error)
    assert server.terminated is None
    assert server.has_stream(3)
    assert (FrameType.WINDOW_UPDATE, Flag.RST, 1, 0) in decode(server.data_to_send(0.0))


def test_late_frames_for_a_gone_stream_are_discarded() -> None:
    server = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None))
    server.receive_data(encode_header(1, 1, 1, 0), 0.0)
    server.reset_stream(1)
    server.receive_data(encode_header(0, 0, 1, 3) + b"abc" + encode_header(1, 0, 1, 9), 0.0)
    assert server.terminated is None
    assert not [e for e in server.events_received() if isinstance(e, ev.DataReceived)]


def test_ping_requests_are_echoed() -> None:
    server = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None))
    server.receive_data(encode_header(2, 1, 0, 0xDEADBEEF), 0.0)
    assert decode(server.data_to_send(0.0)) == [(FrameType.PING, Flag.ACK, 0, 0xDEADBEEF)]


def test_stream_limit_and_pending_open_limit() -> None:
    c = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None, max_pending_opens=3))
    for _ in range(3):
        c.open_stream(0.0)
    with pytest.raises(errors.LimitExceeded, match="unacknowledged"):
        c.open_stream(0.0)
    c2 = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None, max_streams=2))
    c2.open_stream(0.0)
    c2.open_stream(0.0)
    with pytest.raises(errors.LimitExceeded, match="stream limit"):
        c2.open_stream(0.0)


def test_running_out_of_stream_ids_is_a_limit_not_a_go_away() -> None:
    p = Pair()
    p.client._next_id = MAX_UINT32  # the last odd id (2**32 opens are too slow to make)
    last = p.client.open_stream(p.now, b"x")
    assert last == MAX_UINT32
    with pytest.raises(errors.StreamIdsExhausted, match="exhausted") as caught:
        p.client.open_stream(p.now)
    assert isinstance(caught.value, errors.LimitExceeded)
    assert not isinstance(caught.value, errors.SessionClosed)
    assert not p.client.going_away
    p.pump()
    assert p.server.accept_stream(p.now) == last  # the session and its streams go on
    p.pump()
    p.client.send_data(last, b"y", p.now)
    p.pump()
    assert p.received[False][last] == b"xy"


def test_round_robin_is_fair_between_streams() -> None:
    c = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None, max_frame=1000))
    a = c.open_stream(0.0, b"a" * 5000)
    b = c.open_stream(0.0, b"b" * 5000)
    order = [f[2] for f in decode(c.data_to_send(0.0, max_bytes=6000))]
    assert order == [a, b, a, b, a, b]


def test_snapshot_counts_bytes_and_state() -> None:
    p = Pair()
    sid = p.client.open_stream(p.now, b"12345")
    p.pump()
    p.server.accept_stream(p.now)
    p.pump()
    snap = p.client.snapshot()
    assert snap.streams_open == 1
    (stream,) = snap.streams
    assert stream.stream_id == sid
    assert stream.bytes_sent == 5
    assert stream.acked
    assert stream.state == StreamState.OPEN
    server = p.server.snapshot()
    assert server.streams[0].bytes_received == 5
    assert server.bytes_received == snap.bytes_sent
