"""Keepalive: who pings, who only answers, and how fast a dead peer is noticed.

A side that received a PING SYN within its own ``keepalive_interval`` skips its own
ping (docs/mux.md, "Keepalive and round-trip time"). The clock is the harness's.
"""

from __future__ import annotations

import pytest

from core import errors
from core.protocol.mux import MuxConfig, MuxSession
from core.protocol.mux import events as ev
from tests.protocol.mux_harness import Pair

PINGER = MuxConfig(keepalive_interval=5.0, keepalive_timeout=2.0)
ANSWERER = MuxConfig(keepalive_interval=8.0, keepalive_timeout=2.0)
STEP = 0.25


def run(p: Pair, seconds: float, *, client_alive: bool = True, server_alive: bool = True) -> None:
    """Advance the clock in small steps, delivering what each live side sends.

    A dead side neither sends nor reads: what is sent to it is dropped, and its timers
    do not run (a frozen process).
    """
    end = p.now + seconds
    while p.now < end - 1e-9:
        p.now += STEP
        for session, alive in ((p.client, client_alive), (p.server, server_alive)):
            if alive:
                session.handle_timer(p.now)
                p._collect(session)
        for src, dst, src_alive, dst_alive in (
            (p.client, p.server, client_alive, server_alive),
            (p.server, p.client, server_alive, client_alive),
        ):
            if not src_alive:
                continue
            data = src.data_to_send(p.now)
            if data and dst_alive:
                dst.receive_data(data, p.now)
                p._collect(dst)
        if client_alive and server_alive:
            p.pump()


def pings(session: MuxSession) -> int:
    return session.snapshot().pings_sent


def terminated_at(p: Pair, is_client: bool, seconds: float, **alive: bool) -> float | None:
    """Run up to ``seconds``; when the side ended with KeepaliveTimeout (None: it did not)."""
    end = p.now + seconds
    while p.now < end - 1e-9:
        run(p, STEP, **alive)
        term = p.of_type(is_client, ev.SessionTerminated)
        if term:
            assert isinstance(term[0].error, errors.KeepaliveTimeout)
            return p.now
    return None


def test_side_hearing_pings_skips_its_own_and_both_keep_an_rtt() -> None:
    p = Pair(PINGER, ANSWERER)
    run(p, 0.0)
    p.advance(0.0)  # both ping at once: each side has an RTT from the start
    p.pump()
    run(p, 60.0)
    assert pings(p.server) == 1  # only the first: the client's pings kept it quiet
    assert 60 / 5 <= pings(p.client) <= 60 / 5 + 1
    assert p.server.rtt is not None and p.client.rtt is not None
    assert not p.of_type(True, ev.SessionTerminated)
    assert not p.of_type(False, ev.SessionTerminated)
    # The answerer's timer follows the peer's last ping: it never fires a ping early.
    timer = p.server.get_timer()
    assert timer is not None and timer <= p.now + ANSWERER.keepalive_interval  # type: ignore[operator]


def test_equal_intervals_still_ping_both_ways() -> None:
    """The skip needs the peer's ping inside one's own interval: with equal intervals
    the replies arrive just too late, so nothing changes for symmetric configs (yamux
    with yamux defaults)."""
    p = Pair(PINGER, PINGER)
    run(p, 0.0)
    p.advance(0.0)
    p.pump()
    run(p, 30.0)
    assert pings(p.server) >= 30 / 5 - 1
    assert pings(p.client) >= 30 / 5 - 1


def test_silent_peer_is_still_pinged_and_its_rtt_measured() -> None:
    quiet = MuxConfig(keepalive_interval=None)
    p = Pair(quiet, ANSWERER)
    run(p, 0.0)
    p.advance(0.0)
    p.pump()
    run(p, 40.0)
    assert pings(p.client) == 0
    assert 40 / 8 <= pings(p.server) <= 40 / 8 + 1
    assert p.server.rtt is not None
    assert not p.of_type(False, ev.SessionTerminated)


def test_answerer_notices_a_dead_pinger_within_its_interval_plus_timeout() -> None:
    p = Pair(PINGER, ANSWERER)
    p.advance(0.0)
    p.pump()
    run(p, 20.0)
    pings_before = pings(p.server)
    died = p.now  # the client froze just after its last ping was answered
    at = terminated_at(p, False, 30.0, client_alive=False)
    assert at is not None
    assert pings(p.server) == pings_before + 1  # it pinged the silent peer
    bound = ANSWERER.keepalive_interval + ANSWERER.keepalive_timeout  # type: ignore[operator]
    assert at - died <= bound + STEP
    # ... and not before the peer was silent for its whole interval
    assert at - died >= ANSWERER.keepalive_interval - PINGER.keepalive_interval  # type: ignore[operator]


def test_answerer_whose_peer_stops_pinging_pings_again() -> None:
    """A peer that still answers but no longer pings (reconfigured, or an old peer)."""
    p = Pair(PINGER, ANSWERER)
    p.advance(0.0)
    p.pump()
    run(p, 20.0)
    assert pings(p.server) == 1
    p.client.reconfigure(MuxConfig(keepalive_interval=None), p.now)
    run(p, 20.0)
    assert pings(p.server) >= 2
    assert not p.of_type(False, ev.SessionTerminated)


def test_pinger_notices_a_dead_answerer_within_its_interval_plus_timeout() -> None:
    p = Pair(PINGER, ANSWERER)
    p.advance(0.0)
    p.pump()
    run(p, 20.0)
    died = p.now
    at = terminated_at(p, True, 30.0, server_alive=False)
    assert at is not None
    bound = PINGER.keepalive_interval + PINGER.keepalive_timeout  # type: ignore[operator]
    assert at - died <= bound + STEP


def test_peer_that_pings_but_cannot_hear_the_reply_ends_the_session() -> None:
    """Why the answerer may trust the peer's pings to prove that the peer reads: the
    pinger's own timeout ends the session when our replies do not reach it."""
    p = Pair(PINGER, ANSWERER)
    p.advance(0.0)
    p.pump()
    run(p, 10.0)
    start = p.now
    # The client keeps sending (its pings reach the server) but reads nothing.
    end = p.now + 20.0
    while p.now < end and not p.of_type(True, ev.SessionTerminated):
        p.now += STEP
        for session in (p.client, p.server):
            session.handle_timer(p.now)
            p._collect(session)
        data = p.client.data_to_send(p.now)
        if data:
            p.server.receive_data(data, p.now)
            p._collect(p.server)
        p.server.data_to_send(p.now)  # replies lost: the client never reads them
    term = p.of_type(True, ev.SessionTerminated)
    assert term and isinstance(term[0].error, errors.KeepaliveTimeout)
    assert p.now - start <= PINGER.keepalive_interval + PINGER.keepalive_timeout + STEP  # type: ignore[operator]


@pytest.mark.parametrize("heard_at", [0.5, 3.0, 7.5])
def test_skip_moves_the_next_ping_to_one_interval_after_the_peers(heard_at: float) -> None:
    """Unit level: a ping received at ``heard_at`` puts ours at ``heard_at + 8``."""
    from core.protocol.mux.frames import Flag, FrameType, encode_header

    s = MuxSession(False, 0.0, ANSWERER)
    s.handle_timer(0.0)  # first ping at once
    assert pings(s) == 1
    s.data_to_send(0.0)
    token = s._ping_id
    s.receive_data(encode_header(FrameType.PING, Flag.ACK, 0, token), 0.1)
    assert s.get_timer() == pytest.approx(8.1)
    s.receive_data(encode_header(FrameType.PING, Flag.SYN, 0, 7), heard_at)
    s.handle_timer(8.1)
    if 8.1 - heard_at < 8.0:
        assert pings(s) == 1
        assert s.get_timer() == pytest.approx(heard_at + 8.0)
        s.handle_timer(heard_at + 8.0)  # nothing heard since: now it pings
    assert pings(s) == 2
    assert s.get_timer() == pytest.approx(max(8.1, heard_at + 8.0) + 2.0)  # the timeout
