"""The app collects reference cycles on the Qt thread only."""

from __future__ import annotations

import gc
import threading
import weakref

from pytestqt.qtbot import QtBot

from gui.app import QtThreadCollector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_cycles_are_freed_by_the_qt_timer_on_the_qt_thread(qtbot: QtBot) -> None:
    freed_on: list[str] = []
    collector = QtThreadCollector(interval_ms=20, full_every=2)
    try:
        assert not gc.isenabled()
        node = _Node()
        weakref.finalize(node, lambda: freed_on.append(threading.current_thread().name))
        del node
        qtbot.waitUntil(lambda: bool(freed_on), timeout=2000)
        assert freed_on == [threading.main_thread().name]
    finally:
        collector.stop()
    assert gc.isenabled()
