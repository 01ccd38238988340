"""Per-peer limits at the relay, and refusals logged once per source per interval,
without I/O (issue 14: one peer could starve a cluster, and a flood wrote a WARNING per
refused connection).

Every client and every public-endpoint connection of a cluster shares one relay↔agent
session, whose stream limit is the cluster's capacity. ``Quota`` keeps any one holder
(a client identity, a source address) and all public connections together below it,
so what one peer holds can never be all there is. Time is passed in (monotonic seconds).
"""

from __future__ import annotations

import logging
from collections import Counter

from core.errors import ConfigError


class Quota:
    """Concurrent holdings per key, each key at most ``per_key``, all at most ``total``."""

    def __init__(self, per_key: int, total: int | None = None) -> None:
        if per_key < 1 or (total is not None and total < 1):
            raise ConfigError("quota: limits must be >= 1")
        self.per_key = per_key
        self.total = total
        self._held: Counter[str] = Counter()
        self._sum = 0

    def take(self, key: str) -> bool:
        """Hold one more for ``key``; False (nothing held) when a limit is reached."""
        if self._held[key] >= self.per_key or (self.total is not None and self._sum >= self.total):
            if not self._held[key]:
                del self._held[key]
            return False
        self._held[key] += 1
        self._sum += 1
        return True

    def release(self, key: str) -> None:
        if self._held.get(key):
            self._sum -= 1
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def holdings(self) -> dict[str, int]:
        """What each key holds now (keys holding nothing are absent)."""
        return dict(self._held)

    def __len__(self) -> int:
        return self._sum


class QuietLog:
    """Log a refusal at most once per (what, source) per ``interval`` seconds.

    The first refusal of an interval is logged; the rest only counted, and the next
    line logged for that pair says how many were left out. At most ``max_keys`` pairs
    are remembered (the oldest go first), so a flood of addresses cannot grow memory.
    """

    def __init__(self, log: logging.Logger, interval: float = 10.0, max_keys: int = 4096) -> None:
        self.log = log
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def warning(self, what: str, source: str, now: float, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``what`` from ``source`` was logged within the
        interval; returns whether it was logged."""
        key = (what, source)
        last = self._last.pop(key, None)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        skipped = last[1] if last is not None else 0
        suffix = f" ({skipped} more since the last such line)" if skipped else ""
        self.log.warning(message + suffix, *args)
        self._last[key] = (now, 0)
        while len(self._last) > self.max_keys:
            del self._last[next(iter(self._last))]
        return True
