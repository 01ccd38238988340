"""The running app: main window, tray, wizard and error dialogs around one ``Backend``.

``WicketApp.run()`` is the GUI's main coroutine (on the qasync loop): it starts the
core thread, shows the window, brings back the demo and saved clusters in the
background, and returns when Quit was chosen, after everything has shut down. Started
at login (``start_hidden``, File → Start at login) it shows only the tray icon, or the
window where there is no tray. Quit never calls ``app.quit()``: it sets an event the
main coroutine waits on. Quit from the menus asks first while streams are open (an exec
or a port-forward would be cut); a signal (SIGTERM, Ctrl+C in the terminal) quits
without asking.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QObject, QSignalBlocker, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox

from core.errors import WicketError
from core.service import DemoStack
from core.service.freedesktop import autostart_enabled, set_autostart
from gui.aio import cancel_all, spawn
from gui.backend import DEMO, Backend
from gui.errors import ErrorReporter, describe_error
from gui.main_window import MainWindow
from gui.tray import TrayController
from gui.widgets import confirm, show_kept

log = logging.getLogger("wicket.gui")

#: How long Quit lets a start in progress (the demo, the saved clusters) finish first: what
#: it started is then stopped in order by the service. A start cancelled from here cleans
#: up on the core loop after this side has moved on, and the core thread's teardown can
#: cut that clean-up short (a subprocess transport outliving its loop, seen once).
START_GRACE = 5.0


class WicketApp(QObject):
    """Signals: ``ready()`` once the demo and saved clusters were brought back."""

    ready = Signal()

    def __init__(
        self, backend: Backend, *, show_dialogs: bool = True, start_hidden: bool = False
    ) -> None:
        super().__init__()
        self.backend = backend
        self.start_hidden = start_hidden
        self.window = MainWindow(backend)
        self.reporter = ErrorReporter(self.window, show_dialogs=show_dialogs)
        self.tray = TrayController(backend, self)
        self.window.keep_running_in_tray = self.tray.available
        contexts = self.tray.menu
        contexts.setTitle("&Contexts")
        self.window.menuBar().insertMenu(self.window.view_menu.menuAction(), contexts)
        self.window.quit_requested.connect(self.request_quit)
        self.window.add_cluster_requested.connect(self.open_wizard)
        self.window.ticked.connect(self._ticked)
        self.tray.quit_requested.connect(self.request_quit)
        self.tray.open_requested.connect(self.show_window)
        self.autostart_action = QAction("&Start at login", self)
        self.autostart_action.setCheckable(True)
        self.autostart_action.setChecked(autostart_enabled())
        self.autostart_action.setToolTip("Start Wicket in the tray when you log in")
        self.autostart_action.toggled.connect(self.set_autostart)
        self.window.file_menu.insertAction(self.window.quit_action, self.autostart_action)
        self.window.file_menu.insertSeparator(self.window.quit_action)
        self.wizards: list[Any] = []
        self.quit_boxes: list[QMessageBox] = []
        self.demo: DemoStack | None = None
        self._quit = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        await self.start()
        try:
            await self._quit.wait()
        finally:
            await self.shutdown()

    async def start(self) -> None:
        self.reporter.install()
        await self.backend.start()
        self.window.start()
        self.tray.start()
        if not (self.start_hidden and self.tray.available):
            self.window.show()  # started at login: the tray icon only, where there is a tray
        spawn(self._restore(), self._tasks)

    def request_quit(self) -> None:
        """Quit, after asking when open streams would be cut (Ctrl+Q, the tray's Quit)."""
        shown = self.window.last_snapshot or self.backend.latest
        live = shown.open_streams  # as the status bar counts them
        if live == 0:
            self.quit_now()
        elif self.quit_boxes:
            self.quit_boxes[0].raise_()
        else:
            self._ask_quit(live)

    def quit_now(self) -> None:
        self._quit.set()

    @property
    def quitting(self) -> bool:
        return self._quit.is_set()

    def _ask_quit(self, live: int) -> None:
        self.show_window()
        streams = "1 stream is" if live == 1 else f"{live} streams are"
        confirm(
            self.window,
            self.quit_boxes,
            f"{streams} open through Wicket. Quit anyway?",
            details="Quitting closes them: kubectl exec, port-forward and logs -f sessions end.",
            action="&Quit",
            then=self.quit_now,
        )

    async def shutdown(self) -> None:
        for box in list(self.quit_boxes):
            box.done(0)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=START_GRACE)
        await cancel_all(self._tasks)
        for wizard in list(self.wizards):
            await wizard.abandon()
        self.window.stop()
        self.tray.stop()
        self.window.hide()
        await self.backend.shutdown()
        self.reporter.uninstall()

    def set_autostart(self, enabled: bool) -> None:
        """Start at login, or not: the XDG autostart entry written or removed."""
        try:
            set_autostart(enabled)
        except WicketError as exc:
            self.reporter.report(f"Could not change Start at login: {exc}")
        checked = autostart_enabled()
        if self.autostart_action.isChecked() != checked:  # as the file is, not as asked
            with QSignalBlocker(self.autostart_action):
                self.autostart_action.setChecked(checked)

    def show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def open_wizard(self) -> None:
        from gui.wizard import AddClusterWizard

        wizard = AddClusterWizard(self.backend, self.window)
        show_kept(wizard, self.wizards, lambda _w: self.tray.refresh_contexts())

    async def _restore(self) -> None:
        try:
            failures = await self.backend.restore()
        except Exception as exc:
            failures = [describe_error(exc)]
        for failure in failures:
            self.reporter.report(f"Could not start {failure}")
        stack = self.backend.service.component(DEMO)
        if isinstance(stack, DemoStack) and stack.state == "running":
            self.demo = stack
            self.window.set_try_it(self.backend.demo_context, stack.server_url)
        self.window.tick()
        self.window.select_cluster(DEMO)
        self.tray.refresh_contexts()
        self.ready.emit()

    def _ticked(self) -> None:
        self.tray.apply(self.window.clusters.rows)  # what the list shows, not a newer snapshot
