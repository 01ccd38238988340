"""The session against a peer that does not play along (issue 14): it stops reading,
fakes keepalive answers, sends before it is trusted, or opens streams out of turn."""

from __future__ import annotations

import pytest

from core import errors
from core.protocol.mux import INITIAL_WINDOW, MuxConfig, MuxSession
from core.protocol.mux.frames import Flag, FrameType, MuxFrameDecoder, encode_header

QUIET = MuxConfig(keepalive_interval=None)


def frames(data: bytes) -> list[tuple[FrameType, Flag, int, int]]:
    return [(f.type, f.flags, f.stream_id, f.length) for f in MuxFrameDecoder(1 << 30).feed(data)]


def ended(session: MuxSession) -> Exception | None:
    """Why the session ended (a call: mypy must not narrow it across the timer)."""
    return session.terminated


def ping_id(session: MuxSession, now: float) -> int:
    [(ftype, flags, _, value)] = frames(session.data_to_send(now))
    assert (ftype, flags) == (FrameType.PING, Flag.SYN)
    return value


def test_ping_ids_are_unpredictable() -> None:
    """Sequential ids let a peer that reads nothing answer pings it never saw."""
    ids = set()
    for _ in range(20):
        session = MuxSession(True, 0.0, QUIET)
        assert session.ping(0.0)
        ids.add(ping_id(session, 0.0))
    assert len(ids) >= 19  # 32 random bits: a repeat in 20 is a one-in-10^7 event


def test_a_pong_for_another_id_keeps_nothing_alive() -> None:
    cfg = MuxConfig(keepalive_interval=5.0, keepalive_timeout=2.0)
    session = MuxSession(True, 0.0, cfg)
    session.handle_timer(0.0)
    sent = ping_id(session, 0.0)
    fakes = b"".join(encode_header(FrameType.PING, Flag.ACK, 0, i) for i in range(1, 65))
    session.receive_data(fakes, 1.0)
    wrong = encode_header(FrameType.PING, Flag.ACK, 0, (sent + 1) & 0xFFFFFFFF)
    session.receive_data(wrong, 1.0)
    assert session.rtt is None
    session.handle_timer(2.0)
    assert isinstance(session.terminated, errors.KeepaliveTimeout)


def test_the_right_pong_is_taken() -> None:
    session = MuxSession(True, 0.0, QUIET)
    session.ping(0.0)
    value = ping_id(session, 0.0)
    session.receive_data(encode_header(FrameType.PING, Flag.ACK, 0, value), 0.5)
    assert session.rtt == pytest.approx(0.5)


def test_a_transport_that_takes_nothing_ends_the_session_at_the_drain_deadline() -> None:
    session = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None, drain_timeout=3.0))
    assert session.get_timer() is None
    session.write_blocked(1.0)
    session.write_blocked(2.0)  # still the first moment counts
    assert session.get_timer() == pytest.approx(4.0)
    session.handle_timer(3.9)
    assert ended(session) is None
    session.handle_timer(4.0)
    assert isinstance(ended(session), errors.DrainTimeout)
    assert isinstance(ended(session), TimeoutError)


def test_progress_lifts_the_drain_deadline() -> None:
    session = MuxSession(True, 0.0, MuxConfig(keepalive_interval=None, drain_timeout=3.0))
    session.write_blocked(1.0)
    session.write_unblocked()
    assert session.get_timer() is None
    session.handle_timer(10.0)
    assert session.terminated is None


def test_a_session_that_receives_past_its_budget_fails() -> None:
    server = MuxSession(False, 0.0, MuxConfig(keepalive_interval=None, max_received=100))
    pings = encode_header(FrameType.PING, Flag.SYN, 0, 1) * 8  # 96 bytes: within
    server.receive_data(pings, 0.0)
    assert ended(server) is None
    server.receive_data(pings[:12], 0.0)
    assert isinstance(ended(server), errors.RemoteProtocolError)
    assert "100 bytes" in str(ended(server))
    assert (FrameType.GO_AWAY, Flag.NONE, 0, 1) in frames(server.data_to_send(0.0))


def test_reconfigure_raises_the_limits_for_what_comes_next() -> None:
    tiny = MuxConfig(
        keepalive_interval=None,
        max_window=INITIAL_WINDOW,
        max_streams=1,
        accept_backlog=1,
        max_session_buffer=INITIAL_WINDOW,
        max_received=64 * 1024,
    )
    server = MuxSession(False, 0.0, tiny)
    server.receive_data(encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0), 0.0)
    server.receive_data(encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, 3, 0), 0.0)
    assert frames(server.data_to_send(0.0)) == [(FrameType.WINDOW_UPDATE, Flag.RST, 3, 0)]
    server.reconfigure(QUIET, 0.0)
    body = bytes(100 * 1024)  # past the old 64 KiB budget
    server.receive_data(encode_header(FrameType.DATA, Flag.SYN, 5, len(body)) + body, 0.0)
    assert server.terminated is None
    assert server.stream_count == 2
    assert server._decoder.max_payload == QUIET.max_window


def test_a_frame_longer_than_the_first_window_is_refused_before_trust() -> None:
    tiny = MuxConfig(keepalive_interval=None, max_window=INITIAL_WINDOW)
    server = MuxSession(False, 0.0, tiny)
    server.receive_data(encode_header(FrameType.DATA, Flag.SYN, 1, 16 << 20), 0.0)
    assert isinstance(server.terminated, errors.RemoteProtocolError)


def test_reconfigure_starts_and_stops_keepalive() -> None:
    session = MuxSession(True, 0.0, QUIET)
    assert session.get_timer() is None
    session.reconfigure(MuxConfig(keepalive_interval=5.0), 2.0)
    assert session.get_timer() == 2.0
    session.reconfigure(QUIET, 3.0)
    assert session.get_timer() is None


def test_accept_a_given_stream_not_the_oldest() -> None:
    server = MuxSession(False, 0.0, QUIET)
    for sid in (1, 3, 5):
        server.receive_data(encode_header(FrameType.WINDOW_UPDATE, Flag.SYN, sid, 0), 0.0)
    server.events_received()
    assert server.accept_stream(0.0, 3) == 3
    assert server.accept_stream(0.0, 3) is None  # taken already
    assert server.accept_stream(0.0, 7) is None  # never opened
    assert frames(server.data_to_send(0.0)) == [(FrameType.WINDOW_UPDATE, Flag.ACK, 3, 0)]
    assert [server.accept_stream(0.0), server.accept_stream(0.0)] == [1, 5]
    assert server.accept_stream(0.0) is None
