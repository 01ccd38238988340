"""Numbers for people: byte counts, rates, durations, round-trip times."""

from __future__ import annotations

from core.service import human_bytes

__all__ = ["human_bytes", "human_duration", "human_rate", "human_rtt"]


def human_rate(bytes_per_second: float) -> str:
    return f"{human_bytes(bytes_per_second)}/s" if bytes_per_second >= 0.5 else "0 B/s"


def human_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def human_rtt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
