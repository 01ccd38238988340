"""The Cluster menu's dialogs: Edit (mode, local port) and the agent's command again.

Both are non-modal and never ``exec()`` (qasync); what they change goes through the
``Backend`` (``edit_cluster``, ``agent_instructions``), on the caller's slot.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.service import AgentInstructions
from gui.widgets import mono_text

MODES = ("passthrough", "inspect")


class EditClusterDialog(QDialog):
    """A cluster's endpoint mode and local port.

    Signals: ``edited(str name, str mode, int port)`` when Save was chosen.
    """

    edited = Signal(str, str, int)

    def __init__(self, name: str, mode: str, port: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setWindowTitle(f"Edit {name}")
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.setCurrentText(mode)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(port or 1)
        form = QFormLayout(self)
        form.addRow(QLabel(f"The local endpoint of <b>{name}</b> restarts with these."))
        form.addRow("&Mode", self.mode)
        form.addRow("Local &port", self.port)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.accepted.connect(
            lambda: self.edited.emit(name, self.mode.currentText(), self.port.value())
        )


class AgentCommandDialog(QDialog):
    """The agent's command line and manifests, each with a Copy button."""

    def __init__(self, name: str, instructions: AgentInstructions, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Agent of {name}")
        self.resize(720, 480)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Run the agent where it can reach the apiserver:"))
        self.command = mono_text(read_only=True)
        self.command.setPlainText(instructions.command)
        self.command.setMaximumHeight(70)
        layout.addWidget(self.command)
        layout.addWidget(self._copy_button("Copy the &command", instructions.command))
        layout.addWidget(QLabel("Or apply these manifests in the cluster:"))
        self.manifests = mono_text(read_only=True)
        self.manifests.setPlainText(instructions.manifests)
        layout.addWidget(self.manifests, 1)
        layout.addWidget(self._copy_button("Copy the &manifests", instructions.manifests))
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)

    def _copy_button(self, text: str, value: str) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(lambda: _copy(value))
        return button


def _copy(text: str) -> None:
    clipboard = QGuiApplication.clipboard()
    if clipboard is not None:
        clipboard.setText(text)
