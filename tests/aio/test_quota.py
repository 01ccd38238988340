"""The relay's quotas and its once-per-interval refusal log (pure: time passed in)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.aio.quota import QuietLog, Quota, WaitLine
from core.errors import ConfigError


def test_a_quota_per_key_and_in_total() -> None:
    quota = Quota(per_key=2, total=3)
    assert [quota.take("a") for _ in range(3)] == [True, True, False]
    assert quota.take("b")
    assert not quota.take("c")  # the total
    assert quota.held("c") == 0
    quota.release("a")
    assert quota.take("c")
    assert (quota.held("a"), quota.held("b"), quota.held("c"), len(quota)) == (1, 1, 1, 3)
    quota.release("zzz")  # never held: nothing changes
    assert len(quota) == 3
    with pytest.raises(ConfigError):
        Quota(0)


def test_refusals_are_logged_once_per_source_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("wicket.test.quiet")
    quiet = QuietLog(log, interval=10.0, max_keys=2)
    with caplog.at_level(logging.WARNING, logger=log.name):
        logged = [quiet.warning("busy", "1.2.3.4", t, "refused %s", "1.2.3.4") for t in range(12)]
        assert logged == [True] + [False] * 9 + [True, False]
        assert quiet.warning("busy", "5.6.7.8", 0.0, "refused %s", "5.6.7.8")  # another source
        assert quiet.warning("tls", "1.2.3.4", 0.0, "tls %s", "1.2.3.4")  # another kind
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "refused 1.2.3.4",
        "refused 1.2.3.4 (9 more since the last such line)",
        "refused 5.6.7.8",
        "tls 1.2.3.4",
    ]
    assert len(quiet._last) == 2  # bounded: the oldest source was forgotten


def test_a_wait_line_lets_in_first_come_first_served_keys_in_turn() -> None:
    quota = Quota(per_key=1, total=2)
    line: WaitLine[str] = WaitLine(per_key=3, total=5)
    assert quota.take("a") and quota.take("b")  # full
    assert [line.add("a", f"a{i}", 10.0) for i in range(4)] == [True, True, True, False]
    assert [line.add("b", f"b{i}", 10.0) for i in range(3)] == [True, True, False]  # total
    assert len(line) == 5
    assert line.admit(quota, 1.0) == ([], [])  # no slot yet
    quota.release("a")
    quota.release("b")
    admitted, expired = line.admit(quota, 1.0)
    assert (admitted, expired) == ([("a", "a0"), ("b", "b0")], [])
    assert len(quota) == 2 and len(line) == 3  # the slots were taken for them
    quota.release("b")  # a's slot is still held: a waits, b goes
    assert line.admit(quota, 1.0) == ([("b", "b1")], [])
    assert line.next_deadline() == 10.0


def test_waiting_items_expire_at_their_deadline() -> None:
    quota = Quota(per_key=1)
    line: WaitLine[int] = WaitLine(per_key=10, total=10)
    quota.take("a")
    for i, deadline in enumerate((1.0, 2.0, 3.0)):
        line.add("a", i, deadline)
    assert line.expire(0.5) == []
    assert line.expire(2.0) == [("a", 0), ("a", 1)]
    quota.release("a")
    assert line.admit(quota, 5.0) == ([], [("a", 2)])  # expired, not admitted
    assert len(line) == 0 and line.next_deadline() is None
    assert quota.held("a") == 0


def test_a_wait_line_of_zero_queues_nothing_and_clears() -> None:
    assert not WaitLine[int](per_key=0, total=10).add("a", 1, 1.0)
    line: WaitLine[int] = WaitLine(per_key=2, total=4)
    line.add("a", 1, 1.0)
    line.add("b", 2, 1.0)
    assert sorted(line.clear()) == [("a", 1), ("b", 2)]
    assert len(line) == 0
    with pytest.raises(ConfigError):
        WaitLine(per_key=-1, total=1)


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["arrive", "leave", "tick"])),
        max_size=80,
    )
)
def test_a_wait_line_never_lets_more_through_than_the_quota(
    steps: list[tuple[str, str]],
) -> None:
    """Whatever arrives and leaves: the quota holds, each key's items go in order, and
    every queued item is waiting, admitted or expired."""
    quota = Quota(per_key=2, total=3)
    line: WaitLine[int] = WaitLine(per_key=3, total=6)
    holding: list[str] = []
    admitted: dict[str, list[int]] = {}
    now, serial, queued, expired = 0.0, 0, 0, 0
    for key, what in steps:
        now += 0.5
        if what == "arrive":
            serial += 1
            if quota.take(key):
                holding.append(key)
            elif line.add(key, serial, now + 2.0):
                queued += 1
        elif what == "leave" and key in holding:
            holding.remove(key)
            quota.release(key)
        ins, outs = line.admit(quota, now)
        expired += len(outs)
        for k, item in ins:
            holding.append(k)
            admitted.setdefault(k, []).append(item)
        assert len(quota) == len(holding) <= 3
        assert all(quota.held(k) == holding.count(k) <= 2 for k in "abc")
        assert len(line) <= 6
    assert all(items == sorted(items) for items in admitted.values())
    assert queued == sum(map(len, admitted.values())) + expired + len(line)
