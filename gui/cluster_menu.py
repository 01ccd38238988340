"""What can be done to one cluster: the menu bar's Cluster menu and the list's context menu.

Both are the same ``QMenu`` over the same actions, which act on the cluster selected in
the list and are enabled from its row (the snapshot the list shows). Remove asks first;
Edit and the agent's command open non-modal dialogs (never ``exec()``: qasync).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QMenu, QMessageBox, QWidget

from core.errors import ConfigError
from gui.aio import async_slot
from gui.backend import DEMO, Backend
from gui.cluster_dialogs import AgentCommandDialog, EditClusterDialog
from gui.models import ClusterRow
from gui.widgets import confirm, show_kept

DEMO_KEPT = "The built-in demo cannot be removed; Disconnect stops it"


class ClusterMenu(QObject):
    """Connect, Disconnect, Edit…, Show agent command…, Remove….

    Signals: ``removed(str)`` once a cluster was removed.
    """

    removed = Signal(str)

    def __init__(self, backend: Backend, parent: QWidget) -> None:
        super().__init__(parent)
        self.backend = backend
        self.parent_widget = parent
        self.row: ClusterRow | None = None
        self.boxes: list[QMessageBox] = []
        self.dialogs: list[QDialog] = []
        self.connect_action = self._action("&Connect", self._connect)
        self.disconnect_action = self._action("&Disconnect", self._disconnect)
        self.remove_action = self._action("&Remove…", self.ask_remove)
        self.edit_action = self._action("&Edit…", self.open_edit)
        self.agent_action = self._action("Show &agent command…", self._show_agent)
        self.menu = QMenu("&Cluster", parent)
        self.menu.setToolTipsVisible(True)
        for action in (self.connect_action, self.disconnect_action):
            self.menu.addAction(action)
        self.menu.addSeparator()
        for action in (self.edit_action, self.agent_action, self.remove_action):
            self.menu.addAction(action)
        self.set_cluster(None)

    def _action(self, text: str, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        return action

    def set_cluster(self, row: ClusterRow | None) -> None:
        """Act on ``row``'s cluster from now on (None: nothing is selected)."""
        self.row = row
        connected = row is not None and row.connected
        self.connect_action.setEnabled(row is not None and not connected)
        self.disconnect_action.setEnabled(connected)
        removable = row is not None and row.name != DEMO
        self.remove_action.setEnabled(removable)
        configured = row is not None and self.backend.cluster_config(row.name) is not None
        self.edit_action.setEnabled(configured or (row is not None and row.name == DEMO))
        self.agent_action.setEnabled(configured)
        self.remove_action.setToolTip(DEMO_KEPT if row is not None and not removable else "")

    @async_slot()
    async def _connect(self) -> None:
        if self.row is not None:
            await self.backend.connect(self.row.name)

    @async_slot()
    async def _disconnect(self) -> None:
        if self.row is not None:
            await self.backend.disconnect(self.row.name)

    def ask_remove(self) -> None:
        """Ask whether to remove the selected cluster; Remove in the box removes it."""
        if self.row is None or self.row.name == DEMO:
            return
        name = self.row.name
        confirm(
            self.parent_widget,
            self.boxes,
            f"Remove the cluster {name}?",
            details=f"Wicket disconnects it and deletes its kubectl contexts (wicket-{name}…), "
            "its saved token and its settings; at the embedded relay the cluster is "
            "unregistered and its agent refused from now on.",
            action="&Remove",
            then=lambda: self._remove(name),
        )

    @async_slot(str)
    async def _remove(self, name: str) -> None:
        problems = await self.backend.remove_cluster(name)
        self.removed.emit(name)
        if problems:
            raise ConfigError(f"{name} removed, but " + "; ".join(problems))

    def open_edit(self) -> None:
        """The selected cluster's mode, local port and public server (the demo's mode),
        in a dialog; Save applies them."""
        if self.row is None:
            return
        cfg = self.backend.cluster_config(self.row.name)
        dialog: EditClusterDialog
        if cfg is not None:
            dialog = EditClusterDialog(
                cfg.name, str(cfg.mode), cfg.port, cfg.public_server, self.parent_widget
            )
        elif self.row.name == DEMO:
            mode = str(self.backend.settings.demo_mode)
            dialog = EditClusterDialog(DEMO, mode, 0, parent=self.parent_widget)
        else:
            return
        dialog.edited.connect(self._edit)
        show_kept(dialog, self.dialogs)

    @async_slot(str, str, int, str)
    async def _edit(self, name: str, mode: str, port: int, public_server: str) -> None:
        configured = self.backend.cluster_config(name) is not None
        await self.backend.edit_cluster(
            name, mode=mode, port=port or None, public_server=public_server if configured else None
        )

    @async_slot()
    async def _show_agent(self) -> None:
        if self.row is None:
            return
        name = self.row.name
        instructions = await self.backend.agent_instructions(name)
        show_kept(AgentCommandDialog(name, instructions, self.parent_widget), self.dialogs)
