"""The tray: open the window, switch kubeconfig context, connect clusters, quit.

The menu is built whether or not the desktop has a tray (offscreen and bare X servers
have none): the window's own menu shows the same actions, and tests trigger them
directly. The icon is shown only where a tray exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from core.service import MergedView
from gui.aio import async_slot
from gui.backend import Backend
from gui.icons import overall_state, state_icon
from gui.models import DISCONNECTED, ClusterRow, online_count

log = logging.getLogger("wicket.gui")
CONTEXT_REFRESH_MS = 3000


class TrayController(QObject):
    """Tray icon and menu.

    Signals: ``open_requested()``, ``quit_requested()``, ``context_switched(str)``,
    ``contexts_loaded()``.
    """

    open_requested = Signal()
    quit_requested = Signal()
    context_switched = Signal(str)
    contexts_loaded = Signal()

    def __init__(self, backend: Backend, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.view: MergedView | None = None
        self.state = "offline"
        self.rows: list[ClusterRow] = []
        self.menu = QMenu()
        self.open_action = QAction("Open Wicket", self)
        self.open_action.triggered.connect(self.open_requested)
        self.quit_action = QAction("Quit Wicket", self)
        self.quit_action.triggered.connect(self.quit_requested)
        self.context_group = QActionGroup(self)
        self.context_group.setExclusive(True)
        self.context_actions: dict[str, QAction] = {}
        self.cluster_actions: dict[str, QAction] = {}
        self.icon = QSystemTrayIcon(state_icon(self.state))
        self.icon.setToolTip("Wicket")
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._timer = QTimer(self)
        self._timer.setInterval(CONTEXT_REFRESH_MS)
        self._timer.timeout.connect(self.refresh_contexts)
        self._loading = False
        self._rebuild()

    @property
    def available(self) -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def start(self) -> None:
        if self.available:
            self.icon.show()
        self._timer.start()
        self.refresh_contexts()

    def stop(self) -> None:
        self._timer.stop()
        self.icon.hide()

    # -- state from snapshots ----------------------------------------------------------

    def apply(self, rows: Sequence[ClusterRow]) -> None:
        """Show the clusters as the window's list does (the same rows, one snapshot)."""
        self.rows = list(rows)
        state = overall_state([r.state for r in rows if r.state != DISCONNECTED])
        if state != self.state:
            self.state = state
            self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(f"Wicket — {online_count(rows)} of {len(rows)} clusters online")
        if [r.name for r in rows] != list(self.cluster_actions):
            self._rebuild()
        for row in rows:
            _show_cluster(self.cluster_actions[row.name], row)

    # -- contexts ----------------------------------------------------------------------

    @async_slot()
    async def refresh_contexts(self) -> None:
        if self._loading:
            return
        self._loading = True
        try:
            view = await self.backend.load_kubeconfig()
        except Exception as exc:
            log.warning("cannot read the kubeconfig: %s", exc)
            return
        finally:
            self._loading = False
        if self.view is None or _context_key(view) != _context_key(self.view):
            self.view = view
            self._rebuild()
        self.contexts_loaded.emit()

    async def switch_context(self, name: str) -> None:
        """Make ``name`` kubectl's current context (core.kube writes the file)."""
        await self.backend.use_context(name)
        self.view = await self.backend.load_kubeconfig()
        self._rebuild()
        self.context_switched.emit(name)

    @async_slot(str)
    async def _switch_triggered(self, name: str) -> None:
        await self.switch_context(name)

    @async_slot(str)
    async def _toggle_cluster(self, name: str) -> None:
        await self.backend.toggle(name)

    # -- the menu ----------------------------------------------------------------------

    def _rebuild(self) -> None:
        menu = self.menu
        menu.clear()  # removes; the actions below belong to this controller
        for action in self.context_group.actions():
            self.context_group.removeAction(action)
        for action in [*self.context_actions.values(), *self.cluster_actions.values()]:
            action.deleteLater()
        menu.addAction(self.open_action)
        menu.addSection("kubectl context")
        self.context_actions = {}
        view = self.view
        if view is None or not view.contexts:
            empty = menu.addAction("(no contexts)" if view is not None else "(loading…)")
            empty.setEnabled(False)
        else:
            for ctx in view.contexts:
                label = f"{ctx.name}  ◆ Wicket" if ctx.wicket_cluster else ctx.name
                action = QAction(label, self)
                action.setCheckable(True)
                action.setChecked(ctx.name == view.current_context)
                action.setToolTip(ctx.server or "")
                action.setData(ctx.name)
                action.triggered.connect(lambda _c=False, n=ctx.name: self._switch_triggered(n))
                self.context_group.addAction(action)
                menu.addAction(action)
                self.context_actions[ctx.name] = action
        menu.addSection("Clusters")
        self.cluster_actions = {}
        for row in self.rows:
            action = QAction(row.name, self)
            action.setCheckable(True)
            _show_cluster(action, row)  # right away, not from the next snapshot
            action.setToolTip("Connect or disconnect this cluster's local endpoint")
            action.triggered.connect(lambda _c=False, n=row.name: self._toggle_cluster(n))
            menu.addAction(action)
            self.cluster_actions[row.name] = action
        menu.addSeparator()
        menu.addAction(self.quit_action)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.open_requested.emit()


def _show_cluster(action: QAction, row: ClusterRow) -> None:
    action.setText(f"{row.name} — {row.state}")
    action.setChecked(row.connected)


def _context_key(view: MergedView) -> tuple[object, ...]:
    return (view.current_context, tuple((c.name, c.wicket_cluster) for c in view.contexts))
