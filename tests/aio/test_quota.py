"""The relay's quotas and its once-per-interval refusal log (pure: time passed in)."""

from __future__ import annotations

import logging

import pytest

from core.aio.quota import QuietLog, Quota
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
