"""How late the UI event loop runs: a timer that measures its own lateness.

A ``QTimer`` asks to fire every ``interval``; whatever delays the Qt thread (painting,
model updates, the qasync loop's callbacks, the GIL held by the core thread) makes it
fire late. The lateness of each tick is one lag sample; the debug panel and the load
test read percentiles of the recent ones.
"""

from __future__ import annotations

import collections
import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal

INTERVAL_MS = 20
WINDOW = 3000  # samples kept (about a minute at 20 ms)


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of unsorted samples; 0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, round(p / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


class LagMonitor(QObject):
    """Measures UI loop lag. Signals: ``updated()`` about once a second."""

    updated = Signal()

    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.interval = interval_ms / 1000
        self.samples: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self._next_report = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self._next_report = self._last + 1
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def reset(self) -> None:
        self.samples.clear()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append(max(0.0, now - self._last - self.interval))
        self._last = now
        if now >= self._next_report:
            self._next_report = now + 1
            self.updated.emit()

    def stats(self) -> dict[str, float]:
        """p50, p99 and max lag in seconds over the kept samples."""
        data = list(self.samples)
        return {
            "p50": percentile(data, 50),
            "p99": percentile(data, 99),
            "max": max(data, default=0.0),
            "samples": float(len(data)),
        }
