"""Per-peer limits at the relay, and refusals logged once per source per interval,
without I/O (issue 14: one peer could starve a cluster, and a flood wrote a WARNING per
refused connection).

Every client and every public-endpoint connection of a cluster shares one relay↔agent
session, whose stream limit is the cluster's capacity. ``Quota`` keeps any one holder
(a client identity, a source address) and all public connections together below it,
so what one peer holds can never be all there is. ``WaitLine`` holds what arrives while a
quota is full, for a while, instead of refusing it at once. Time is passed in (monotonic
seconds).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Generic, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


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


class WaitLine(Generic[T]):
    """Items waiting for a ``Quota`` slot: first come first served per key, keys in turn.

    At most ``per_key`` wait per key and ``total`` in all, each until its deadline (time
    passed in: monotonic seconds). An item gets a slot only through :meth:`admit`, which
    takes it from the quota, so a line never lets more through than the quota would.
    """

    def __init__(self, per_key: int, total: int) -> None:
        if per_key < 0 or total < 0:
            raise ConfigError("wait line: limits must be >= 0")
        self.per_key = per_key
        self.total = total
        self._lines: dict[str, deque[tuple[float, T]]] = {}
        self._count = 0

    def add(self, key: str, item: T, deadline: float) -> bool:
        """Queue ``item`` for ``key``; False (not queued) when a limit is reached."""
        line = self._lines.get(key)
        if self._count >= self.total or (len(line) if line else 0) >= self.per_key:
            return False
        if line is None:
            line = self._lines[key] = deque()
        line.append((deadline, item))
        self._count += 1
        return True

    def admit(self, quota: Quota, now: float) -> tuple[list[tuple[str, T]], list[tuple[str, T]]]:
        """(admitted, expired): the items whose deadline passed, and then, one key at a
        time in turn, the first waiting item of each key that gets a slot of ``quota``."""
        admitted: list[tuple[str, T]] = []
        expired = self.expire(now)
        progress = True
        while progress and self._lines:
            progress = False
            for key in list(self._lines):
                line = self._lines[key]
                if not quota.take(key):
                    if quota.total is not None and len(quota) >= quota.total:
                        return admitted, expired  # no slot for anyone
                    continue
                admitted.append((key, line.popleft()[1]))
                self._count -= 1
                progress = True
                if not line:
                    del self._lines[key]
        return admitted, expired

    def expire(self, now: float) -> list[tuple[str, T]]:
        """Remove and return the items whose deadline passed."""
        expired: list[tuple[str, T]] = []
        for key in list(self._lines):
            line = self._lines[key]
            while line and line[0][0] <= now:
                expired.append((key, line.popleft()[1]))
                self._count -= 1
            if not line:
                del self._lines[key]
        return expired

    def next_deadline(self) -> float | None:
        return min((line[0][0] for line in self._lines.values()), default=None)

    def clear(self) -> list[tuple[str, T]]:
        """Remove and return every waiting item."""
        items = [(key, item) for key, line in self._lines.items() for _, item in line]
        self._lines.clear()
        self._count = 0
        return items

    def __len__(self) -> int:
        return self._count
