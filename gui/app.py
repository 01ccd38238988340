"""Desktop app start-up: display checks, the one-instance lock (or the hand-over to the
running app), QApplication, the qasync loop, ``WicketApp``."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.errors import AlreadyRunning
from core.service import APP_ID
from core.service.freedesktop import AUTOSTART_FLAG
from core.service.instance import InstanceLock, hand_over
from gui.display import check_display, fatal_qt_messages, probe_display

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication


#: The GIL switch interval with the core on its own thread (Python's default is 5 ms).
SWITCH_INTERVAL = 0.001


def tune_gil() -> None:
    """Let the Qt thread get the GIL back sooner from the busy core thread.

    Every Python callback Qt makes (a model's ``data()``, a timer) must take the GIL;
    with the default 5 ms interval a busy core thread makes the UI wait up to 5 ms for
    each, which is what the UI lag measured under load was made of.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


def freeze_heap() -> None:
    """Keep what start-up built out of the garbage collector's later passes.

    A full collection walks every tracked object with the GIL held, in whichever thread
    triggers it (mostly the busy core thread): with Qt, PySide and the core loaded that
    is ~70,000 objects and 20-60 ms during which the UI cannot run one Python callback.
    What exists after start-up (modules, classes, the windows) lives as long as the app;
    ``gc.freeze()`` moves it to a generation that collections skip.
    """
    gc.collect()
    gc.freeze()


class QtThreadCollector:
    """Runs the cyclic garbage collector on the Qt thread, never on the core's.

    Automatic collection runs in whichever thread allocates past the threshold (mostly the
    busy core thread), and a Qt object freed there from a reference cycle is destroyed on
    the wrong thread: its timers cannot be unregistered from there, and the Qt thread
    later delivers an event to freed memory (seen as a segfault in the GUI tests). So
    automatic collection is off while the app runs, and a Qt timer collects the young
    generations every second and everything every ``full_every`` ticks.
    """

    def __init__(self, interval_ms: int = 1000, full_every: int = 30) -> None:
        from PySide6.QtCore import QTimer

        self._ticks = 0
        self._full_every = full_every
        gc.disable()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)
        self.timer.start()

    def collect(self) -> None:
        self._ticks += 1
        gc.collect(2 if self._ticks % self._full_every == 0 else 1)

    def stop(self) -> None:
        self.timer.stop()
        gc.enable()


def run_app(argv: Sequence[str]) -> int:
    """Run the app; 0 too when another launch's app was raised instead.

    ``--autostart`` (the "Start at login" entry's flag) starts it with the window hidden
    where there is a tray, and raises no window of an app already running.
    """
    autostart = AUTOSTART_FLAG in argv
    qt_argv = [a for a in argv if a != AUTOSTART_FLAG]
    check_display()
    probe_display()
    try:
        lock = InstanceLock.acquire("app")
    except AlreadyRunning as running:
        if autostart and running.kind == "app":
            print(f"wicket: Wicket already runs (pid {running.pid})")
            return 0
        return _hand_over(running)
    with lock:
        return _run(qt_argv, lock, start_hidden=autostart)


def _hand_over(running: AlreadyRunning) -> int:
    """A second launch: the running app raises its window; ``wicket up`` has none."""
    pid = hand_over() if running.kind != "up" else None
    if pid is None:
        raise running
    print(f"wicket: Wicket already runs (pid {pid}); its window was brought to the front")
    return 0


def _application(argv: Sequence[str]) -> QApplication:
    from PySide6.QtWidgets import QApplication

    from gui.icons import state_icon

    with fatal_qt_messages():
        app = QApplication([sys.argv[0], *argv])
    app.setApplicationName("Wicket")
    app.setOrganizationName("Wicket")
    app.setDesktopFileName(APP_ID)  # the Wayland app id: the desktop entry's name
    app.setWindowIcon(state_icon("online"))
    app.setQuitOnLastWindowClosed(False)
    return app


def _run(argv: Sequence[str], lock: InstanceLock, *, start_hidden: bool = False) -> int:
    tune_gil()
    from gui.aio import qasync_loop_factory
    from gui.backend import Backend
    from gui.instance import RaiseServer
    from gui.shell import WicketApp

    _app = _application(argv)  # lives as long as the process
    running: list[WicketApp] = []

    def quit_on_signal(_signum: int, _frame: object) -> None:
        # Runs between Python callbacks (the lag timer makes one every 20 ms).
        for wicket in running:
            wicket.quit_now()

    signal.signal(signal.SIGINT, quit_on_signal)
    signal.signal(signal.SIGTERM, quit_on_signal)

    async def main() -> None:
        wicket = WicketApp(Backend(), start_hidden=start_hidden)
        running.append(wicket)
        server = RaiseServer(lock.socket_path)
        server.raise_requested.connect(wicket.show_window)
        server.listen()
        freeze_heap()
        collector = QtThreadCollector()
        try:
            await wicket.run()
        finally:
            server.close()
            collector.stop()

    with asyncio.Runner(loop_factory=qasync_loop_factory()) as runner:
        runner.run(main())
    return 0
