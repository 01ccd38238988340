"""Failed authentications are throttled per source (docs/security.md, pre-auth).

The throttle itself is pure (time passed in); the relay test brute-forces join secrets
over real TLS until the source is blocked, and checks that the block is refused before
any TLS work, logged once, lifted on time, and never touches the sessions already up.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.aio.dial import discover_ca, enroll
from core.aio.throttle import FailureThrottle
from core.errors import AuthError, ConfigError, TunnelError
from core.pki.identity import Role
from core.pki.tokens import TokenKind

from .conftest import PROMPT, QUIET_MUX, World, relay_lines, replace_token


def test_a_source_may_fail_burst_times_then_one_per_refill() -> None:
    t = FailureThrottle(burst=3, rate=0.5)
    assert t.retry_after("a", 0.0) == 0.0
    assert [t.failed("a", 0.0) for _ in range(3)] == [False, False, True]
    assert t.retry_after("a", 0.0) == pytest.approx(2.0)
    assert t.retry_after("a", 1.5) == pytest.approx(0.5)
    assert t.retry_after("b", 0.0) == 0.0  # other sources are untouched
    assert t.retry_after("a", 2.0) == 0.0
    assert t.failed("a", 2.0)  # one failure allowed, and blocked again
    assert not t.failed("a", 2.0)  # (a connection admitted earlier: no second block)
    assert t.retry_after("a", 2.0) == pytest.approx(2.0)
    assert t.retry_after("a", 100.0) == 0.0  # refilled


def test_failures_beyond_the_burst_do_not_pile_up() -> None:
    """Failing while blocked (connections admitted before the block) costs no extra time."""
    t = FailureThrottle(burst=2, rate=1.0)
    for _ in range(50):
        t.failed("a", 0.0)
    assert t.retry_after("a", 0.0) == pytest.approx(1.0)


def test_the_table_is_bounded_and_forgets_refilled_sources_first() -> None:
    t = FailureThrottle(burst=2, rate=1.0, max_sources=3)
    t.failed("old", 0.0)  # refilled by t=10
    t.failed("x", 10.0)
    t.failed("x", 10.0)  # blocked
    t.failed("y", 10.0)
    t.failed("z", 10.0)
    assert len(t) == 3
    assert t.retry_after("x", 10.0) > 0  # the blocked source was kept
    for i in range(100):
        t.failed(f"flood-{i}", 11.0)
    assert len(t) == 3


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(0, 5), st.booleans()), min_size=1, max_size=60
    )
)
def test_retry_after_is_bounded_and_zero_once_refilled(
    steps: list[tuple[str, float, bool]],
) -> None:
    t = FailureThrottle(burst=4, rate=0.25, max_sources=2)
    now = 0.0
    for source, dt, fail in steps:
        now += dt
        if fail:
            t.failed(source, now)
        wait = t.retry_after(source, now)
        assert 0.0 <= wait <= 1 / t.rate + 1e-9
        assert t.retry_after(source, now + wait + 1e-6) == 0.0
        assert len(t) <= 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        FailureThrottle(burst=0)
    with pytest.raises(ConfigError):
        FailureThrottle(rate=0)


async def test_join_secret_brute_force_is_throttled(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    relay = world.relay
    burst = relay.config.auth_failure_burst
    mark = len(caplog.records)
    guess = replace_token(world.token(TokenKind.JOIN, "staging"), secret=os.urandom(32))

    async def attempt() -> None:
        await asyncio.wait_for(enroll(guess, world.root / "thief", Role.AGENT, QUIET_MUX), PROMPT)

    start = time.monotonic()
    for _ in range(burst):
        with pytest.raises(AuthError, match="invalid_token"):
            await attempt()
    guessing = time.monotonic() - start
    assert relay.refused["invalid_token"] >= burst
    [line] = relay_lines(caplog, "throttling 127.0.0.1", since=mark)

    # Blocked: the next connection is closed at accept, before TLS costs anything.
    tls_before, throttled_before = relay.refused["tls"], relay.refused["throttled"]
    start = time.monotonic()
    with pytest.raises((TunnelError, AuthError)):
        await attempt()
    refused_in = time.monotonic() - start
    assert relay.refused["throttled"] == throttled_before + 1
    assert relay.refused["tls"] == tls_before  # no handshake was attempted
    assert refused_in < 0.5, refused_in
    # The sessions that were up never noticed.
    await world.check()

    # The block lifts on time, and a legitimate enrollment from that source works.
    wait = relay.throttle.retry_after("127.0.0.1", time.monotonic())
    assert 0 < wait <= 1 / relay.config.auth_failure_rate
    await asyncio.sleep(wait + 0.05)
    creds = await world.enroll(Role.AGENT, "staging")
    assert creds.identity.name == "staging"
    print(
        f"\n{burst} wrong join secrets in {guessing:.2f} s, then throttled: refused in "
        f"{refused_in * 1000:.1f} ms, lifted after {wait:.2f} s; {line}"
    )


async def test_ca_discovery_is_a_clean_exchange_that_costs_no_allowance(world: World) -> None:
    """``discover_ca`` (every first enrollment) ends its handshake cleanly: more
    discoveries than the burst from one source are neither TLS failures nor throttled."""
    relay = world.relay
    before = dict(relay.refused)
    pin = world.agent_token.ca_fingerprint
    for _ in range(4):
        rounds = [discover_ca(world.address, pin, timeout=PROMPT) for _ in range(16)]
        await asyncio.gather(*rounds)
    await asyncio.sleep(0.2)  # the relay's side of the last ones ends
    assert dict(relay.refused) == before
    assert relay.throttle.retry_after("127.0.0.1", time.monotonic()) == 0.0
    assert len(relay.throttle) == 0
