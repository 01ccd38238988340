"""Throttling failed authentications per source (docs/security.md, pre-auth: guessing
must not be cheap), without I/O.

A token bucket per source address: a source may fail ``burst`` times, and its allowance
refills at ``rate`` failures per second. A source with no whole failure left is refused
at accept, before any TLS work, until it has one again, so a brute force is slowed to
``rate`` guesses per second whatever its concurrency. Sources that fail nothing are
never tracked; the table holds at most ``max_sources`` (the fully refilled go first,
then the least recently failed), so a flood of addresses cannot grow memory.

Time is passed in (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError


@dataclass
class _Bucket:
    allowance: float
    at: float


class FailureThrottle:
    def __init__(self, burst: int = 32, rate: float = 0.5, max_sources: int = 4096) -> None:
        if burst < 1 or rate <= 0 or max_sources < 1:
            raise ConfigError("throttle: burst and max_sources >= 1, rate > 0")
        self.burst = burst
        self.rate = rate
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def _allowance(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.allowance + max(0.0, now - bucket.at) * self.rate)

    def retry_after(self, source: str, now: float) -> float:
        """Seconds until ``source`` may try again; 0.0 when it may now."""
        bucket = self._buckets.get(source)
        if bucket is None:
            return 0.0
        allowance = self._allowance(bucket, now)
        return 0.0 if allowance >= 1.0 else (1.0 - allowance) / self.rate

    def failed(self, source: str, now: float) -> bool:
        """Count one failure; True when it starts a block (the source's last allowed one).

        Failures of connections admitted before the block began cost nothing more.
        """
        bucket = self._buckets.pop(source, None)  # re-inserted last: most recent
        before = float(self.burst) if bucket is None else self._allowance(bucket, now)
        after = max(0.0, before - 1.0)
        self._buckets[source] = _Bucket(after, now)
        if len(self._buckets) > self.max_sources:
            self._evict(now)
        return before >= 1.0 > after

    def _evict(self, now: float) -> None:
        full = [s for s, b in self._buckets.items() if self._allowance(b, now) >= self.burst]
        for source in full:
            del self._buckets[source]
        while len(self._buckets) > self.max_sources:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
