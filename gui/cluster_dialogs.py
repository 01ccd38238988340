"""The Cluster menu's dialogs: Edit (mode, local port, public server) and the agent's
command again.

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
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.service import AgentInstructions, context_names, public_server_problem
from gui.widgets import mono_text

MODES = ("passthrough", "inspect")

INSPECT_EXPLAINED = (
    "Inspect: kubectl's TLS ends at Wicket, which opens its own TLS to the apiserver and "
    "shows every request (method, path, status, exec commands, port-forwards, watches). "
    "The kubectl context then trusts Wicket's CA (loopback only) and presents the "
    "endpoint's token; the cluster's token stays in Wicket."
)
PASSTHROUGH_EXPLAINED = (
    "Passthrough: kubectl's TLS goes end to end to the apiserver; Wicket sees only "
    "encrypted bytes. The kubectl context trusts the cluster's CA again."
)

#: What a switch to each mode changes, in the words the Edit dialog shows.
SWITCH_EXPLAINED = {"inspect": INSPECT_EXPLAINED, "passthrough": PASSTHROUGH_EXPLAINED}

PUBLIC_PLACEHOLDER = "https://relay.example:7443 (empty: none)"
NO_PUBLIC_IN_INSPECT = (
    "Kept, but no public context in inspect mode: kubectl's token is the local endpoint's, "
    "which the apiserver behind the public endpoint refuses."
)


def public_server_explained(name: str, url: str, mode: str) -> tuple[bool, str]:
    """Whether ``url`` can be saved as the public server, and what the dialog says."""
    if not url:
        return True, ""
    problem = public_server_problem(url)
    if problem is not None:
        return False, f"Cannot save: {problem}."
    if mode == "inspect":
        return True, NO_PUBLIC_IN_INSPECT
    public = context_names(name)[1]
    return True, f"kubectl --context {public} reaches the apiserver through the relay there."


class EditClusterDialog(QDialog):
    """A cluster's endpoint mode, local port and public server (the demo's: its mode
    only, ``port`` 0 and ``public_server`` None).

    A change of mode says what it changes (where kubectl's TLS ends, which CA the
    context trusts) before Save; a public server that is not an ``https://HOST[:PORT]``
    URL disables Save and says why. Signals: ``edited(str name, str mode, int port,
    str public_server)`` when Save was chosen (port 0: unchanged; public "": none).
    """

    edited = Signal(str, str, int, str)

    def __init__(
        self,
        name: str,
        mode: str,
        port: int,
        public_server: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.setWindowTitle(f"Edit {name}")
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.setCurrentText(mode)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(port or 1)
        self.port.setEnabled(bool(port))
        self.switch = QLabel()
        self.switch.setWordWrap(True)
        self.switch.setAccessibleName("What the mode change does")
        self.mode.currentTextChanged.connect(
            lambda chosen: self.switch.setText(
                "" if chosen == mode else SWITCH_EXPLAINED.get(chosen, "")
            )
        )
        self.public = QLineEdit(public_server or "")
        self.public.setPlaceholderText(PUBLIC_PLACEHOLDER)
        self.public_note = QLabel()
        self.public_note.setWordWrap(True)
        self.public_note.setAccessibleName("What the public server does")
        form = QFormLayout(self)
        form.addRow(
            QLabel(f"The local endpoint of <b>{name}</b> restarts with a new mode or port.")
        )
        form.addRow("&Mode", self.mode)
        form.addRow(self.switch)
        form.addRow("Local &port", self.port)
        if public_server is not None:
            form.addRow("Public &server", self.public)
            form.addRow(self.public_note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save = buttons.button(QDialogButtonBox.StandardButton.Save)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.public.textChanged.connect(self._check_public)
        self.mode.currentTextChanged.connect(self._check_public)
        self._check_public()
        self.accepted.connect(
            lambda: self.edited.emit(
                name,
                self.mode.currentText(),
                self.port.value() if port else 0,
                self.public_server(),
            )
        )

    def public_server(self) -> str:
        return self.public.text().strip()

    def _check_public(self) -> None:
        valid, note = public_server_explained(
            self.name, self.public_server(), self.mode.currentText()
        )
        self.public_note.setText(note)
        self.save.setEnabled(valid)
        self.save.setToolTip("" if valid else note)

    def accept(self) -> None:
        """Save, unless the public server cannot be saved (Enter in the line edit)."""
        if self.save.isEnabled():
            super().accept()


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
