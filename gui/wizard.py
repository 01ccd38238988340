"""The add-cluster wizard (non-modal): name, relay, apiserver, endpoint, agent, test.

Each page validates before Next with a message next to the field. Slow steps (reading
a kubeconfig, issuing a join token, starting the endpoint, the ``/version`` probe, the
kubeconfig write, the keyring) run as tasks off the UI thread; the page shows progress
and enables Next when its step is done. Everything the wizard created is recorded in
an undo list (``core.service.ClusterSetup``, which does the work), so Cancel (or closing
it, or quitting) leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from core.errors import WicketError
from core.service import (
    AgentInstructions,
    ClusterSetup,
    Mode,
    ProbeAuth,
    SecretStorage,
    TokenKind,
    describe_storage,
    parse_token,
    save_user_file,
)
from gui.aio import async_slot, cancel_all, spawn
from gui.backend import Backend
from gui.cluster_dialogs import INSPECT_EXPLAINED
from gui.errors import describe_error
from gui.sources import SourceContext, read_source_kubeconfig
from gui.widgets import mono_text

log = logging.getLogger("wicket.gui")
AGENT_POLL_MS = 250
_TARGET = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
_SERVER_NAME = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
ERROR_STYLE = "color: #c0392b"
OK_STYLE = "color: #2e9d5b"


def _message() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet(ERROR_STYLE)
    label.setAccessibleName("Message")
    return label


class _Page(QWizardPage):
    """A page with an error line; ``fail()`` shows why Next was refused."""

    def __init__(self, title: str, subtitle: str) -> None:
        super().__init__()
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.error = _message()

    def fail(self, text: str) -> bool:
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setText(text)
        return False

    def ok(self, text: str = "") -> bool:
        self.error.setStyleSheet(OK_STYLE)
        self.error.setText(text)
        return True

    def wiz(self) -> AddClusterWizard:
        wizard = self.wizard()
        assert isinstance(wizard, AddClusterWizard)
        return wizard


class NamePage(_Page):
    def __init__(self) -> None:
        super().__init__("Name", "What to call the cluster (kubectl context wicket-NAME).")
        self.name = QLineEdit()
        self.name.setAccessibleName("Cluster name")
        self.name.setPlaceholderText("e.g. lab, staging-eu")
        form = QFormLayout(self)
        form.addRow("&Name", self.name)
        form.addRow(self.error)

    def validatePage(self) -> bool:
        name = self.name.text().strip()
        try:
            self.wiz().setup_for(name).check_name()
        except WicketError as exc:
            return self.fail(f"{exc}.")
        return self.ok()


class RelayPage(_Page):
    def __init__(self) -> None:
        super().__init__("Relay", "Where the agent in the private network dials out to.")
        self.embedded = QRadioButton("&Embedded in this app (the agent can reach this machine)")
        self.remote = QRadioButton("A &relay server (address from a client token)")
        self.embedded.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.embedded)
        group.addButton(self.remote)
        self.advertise = QLineEdit()
        self.advertise.setPlaceholderText("host:port the agent dials (default: the relay's own)")
        self.advertise.setAccessibleName("Relay address for agents")
        self.client_token = QLineEdit()
        self.client_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.client_token.setPlaceholderText("wicket-client-v1.… from `wicket relay client-token`")
        self.client_token.setAccessibleName("Client token")
        self.join_token = QLineEdit()
        self.join_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.join_token.setPlaceholderText("wicket-join-v1.… from `wicket relay join-token`")
        self.join_token.setAccessibleName("Join token")
        form = QFormLayout(self)
        form.addRow(self.embedded)
        form.addRow("Agents dial", self.advertise)
        form.addRow(self.remote)
        form.addRow("&Client token", self.client_token)
        form.addRow("&Join token", self.join_token)
        form.addRow(self.error)
        self.embedded.toggled.connect(self._mode_changed)
        self._mode_changed(True)

    def _mode_changed(self, _on: bool) -> None:
        embedded = self.embedded.isChecked()
        self.advertise.setEnabled(embedded)
        self.client_token.setEnabled(not embedded)
        self.join_token.setEnabled(not embedded)

    def validatePage(self) -> bool:
        if self.embedded.isChecked():
            address = self.advertise.text().strip()
            if address and not _TARGET.fullmatch(address):
                return self.fail("The relay address must be host:port.")
            return self.ok()
        for field, kind, label in (
            (self.client_token, TokenKind.CLIENT, "client"),
            (self.join_token, TokenKind.JOIN, "join"),
        ):
            try:
                token = parse_token(field.text())
            except WicketError as exc:
                return self.fail(f"The {label} token: {exc}")
            if token.kind is not kind:
                return self.fail(f"The {label} token field holds a {token.kind.value} token.")
        return self.ok()


class ApiserverPage(_Page):
    def __init__(self) -> None:
        super().__init__(
            "Apiserver",
            "How the agent reaches the apiserver inside the private network. "
            "Pick the cluster's own kubeconfig to fill this in.",
        )
        self.source_path = QLineEdit()
        self.source_path.setAccessibleName("Private cluster kubeconfig")
        self.source_path.setPlaceholderText("optional: a kubeconfig of the private cluster")
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        load = QPushButton("&Fill in")
        load.clicked.connect(self.fill_from_source)
        self.source_contexts = QComboBox()
        self.source_contexts.setAccessibleName("Context of the private kubeconfig")
        self.source_contexts.currentIndexChanged.connect(self._context_chosen)
        self.target = QLineEdit()
        self.target.setAccessibleName("Apiserver target")
        self.target.setPlaceholderText(
            "host:port as the agent sees it, e.g. kubernetes.default.svc:443"
        )
        self.ca = mono_text(read_only=False)
        self.ca.setAccessibleName("Cluster CA")
        self.ca.setPlaceholderText("-----BEGIN CERTIFICATE-----")
        self.server_name = QLineEdit()
        self.server_name.setAccessibleName("TLS server name")
        row = QHBoxLayout()
        row.addWidget(self.source_path, 1)
        row.addWidget(browse)
        row.addWidget(load)
        form = QFormLayout(self)
        form.addRow("Kubeconfig", row)
        form.addRow("Co&ntext", self.source_contexts)
        form.addRow("&Target", self.target)
        form.addRow("Cluster &CA", self.ca)
        form.addRow("&Server name", self.server_name)
        form.addRow(self.error)
        self.sources: list[SourceContext] = []
        self._dialog: QFileDialog | None = None

    def _browse(self) -> None:
        dialog = QFileDialog(self, "Kubeconfig of the private cluster", str(Path.home()))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(self._picked)
        self._dialog = dialog
        dialog.open()  # non-modal: no nested event loop

    def _picked(self, path: str) -> None:
        self.source_path.setText(path)
        self.fill_from_source()

    @async_slot()
    async def fill_from_source(self) -> None:
        path = Path(self.source_path.text().strip())
        try:
            sources, current = await asyncio.to_thread(read_source_kubeconfig, path)
        except (WicketError, OSError) as exc:
            self.fail(describe_error(exc))
            return
        self.sources = sources
        self.source_contexts.blockSignals(True)
        self.source_contexts.clear()
        self.source_contexts.addItems([s.name for s in sources])
        index = next((i for i, s in enumerate(sources) if s.name == current), 0)
        self.source_contexts.setCurrentIndex(index)
        self.source_contexts.blockSignals(False)
        self._context_chosen(index)
        self.ok(f"Filled in from context {sources[index].name!r} of {path}.")
        self.wiz().source_filled.emit()

    def _context_chosen(self, index: int) -> None:
        if not 0 <= index < len(self.sources):
            return
        source = self.sources[index]
        self.target.setText(source.target)
        if source.ca_pem:
            self.ca.setPlainText(source.ca_pem.decode(errors="replace"))
        self.server_name.setText(source.tls_server_name)
        self.wiz().endpoint_page.offer_token(source.token)

    def ca_pem(self) -> bytes:
        return self.ca.toPlainText().strip().encode() + b"\n"

    def validatePage(self) -> bool:
        target = self.target.text().strip()
        match = _TARGET.fullmatch(target)
        if not match or not 0 < int(match.group(2)) < 65536:
            return self.fail("The target must be host:port with a port from 1 to 65535.")
        try:
            if not x509.load_pem_x509_certificates(self.ca_pem()):
                raise ValueError("no certificate")
        except ValueError as exc:
            return self.fail(f"The cluster CA is not a PEM certificate ({exc}).")
        if not _SERVER_NAME.fullmatch(self.server_name.text().strip()):
            return self.fail("The server name must be a host name on the apiserver certificate.")
        return self.ok()


class EndpointPage(_Page):
    TOKEN, USER = 0, 1

    def __init__(self) -> None:
        super().__init__(
            "Endpoint", "The local endpoint kubectl uses, and how kubectl authenticates."
        )
        self.mode = QComboBox()
        self.mode.setAccessibleName("Endpoint mode")
        self.mode.addItem("Passthrough (TLS end to end)", Mode.PASSTHROUGH.value)
        self.mode.addItem("Inspect (see every request)", Mode.INSPECT.value)
        self.mode.setItemData(1, INSPECT_EXPLAINED, Qt.ItemDataRole.ToolTipRole)
        self.mode.setToolTip(INSPECT_EXPLAINED)
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setAccessibleName("Local port")
        self.use_token = QRadioButton("A &token, kept in the secret store")
        self.use_user = QRadioButton("An existing kubeconfig &user (e.g. a client certificate)")
        self.use_token.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.use_token, self.TOKEN)
        group.addButton(self.use_user, self.USER)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("Token")
        self.user = QComboBox()
        self.user.setAccessibleName("Kubeconfig user")
        self.storage = QComboBox()
        self.storage.setAccessibleName("Keep the token in")
        for storage in SecretStorage:
            self.storage.addItem(describe_storage(storage), storage.value)
        self.storage.currentIndexChanged.connect(lambda _i: self._describe_store())
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setAccessibleName("Passphrase of the encrypted file")
        self.store_state = QLabel()
        self.store_state.setWordWrap(True)
        self.store_state.setAccessibleName("Secret store in use")
        form = QFormLayout(self)
        form.addRow("&Mode", self.mode)
        form.addRow("Local &port", self.port)
        form.addRow(self.use_token)
        form.addRow("Token", self.token)
        form.addRow("Keep it &in", self.storage)
        form.addRow("Pass&phrase", self.passphrase)
        form.addRow(self.store_state)
        form.addRow(self.use_user)
        form.addRow("User", self.user)
        form.addRow(self.error)
        self.use_token.toggled.connect(self._kind_changed)
        self._kind_changed(True)

    def offer_token(self, token: str | None) -> None:
        if token and not self.token.text():
            self.token.setText(token)

    def _kind_changed(self, _on: bool) -> None:
        self.token.setEnabled(self.use_token.isChecked())
        self.storage.setEnabled(self.use_token.isChecked())
        self.user.setEnabled(self.use_user.isChecked())
        self.passphrase.setEnabled(self.use_token.isChecked())

    def chosen_storage(self) -> SecretStorage:
        return SecretStorage(self.storage.currentData())

    @async_slot()
    async def _describe_store(self) -> None:
        """Which store the token goes to, and whether it can be used now."""
        storage = self.chosen_storage()
        self.passphrase.setVisible(storage is SecretStorage.ENCRYPTED_FILE)
        if storage is SecretStorage.ENCRYPTED_FILE and self.passphrase.text():
            self.wiz().backend.passphrase = self.passphrase.text()
        state = await self.wiz().backend.secret_storage_state(storage)
        self.store_state.setText(f"Token kept in {describe_storage(storage)}: {state}")

    def initializePage(self) -> None:
        self._load()

    @async_slot()
    async def _load(self) -> None:
        backend = self.wiz().backend
        try:
            view = await backend.load_kubeconfig()
            users = sorted(set(view.user_sources))
        except WicketError as exc:
            users = []
            self.fail(f"Cannot read your kubeconfig: {exc}")
        current = self.user.currentText()
        self.user.clear()
        self.user.addItems(users)
        if current in users:
            self.user.setCurrentText(current)
        await self._describe_store()

    def validatePage(self) -> bool:
        if self.mode.currentData() == Mode.INSPECT.value and not self.use_token.isChecked():
            return self.fail("Inspect mode needs a token: Wicket presents it to the apiserver.")
        if self.use_token.isChecked() and not self.token.text().strip():
            return self.fail("Enter the token kubectl should use, or pick a kubeconfig user.")
        if self.use_user.isChecked() and not self.user.currentText():
            return self.fail("Your kubeconfig has no users; use a token instead.")
        if self.use_token.isChecked() and self.chosen_storage() is SecretStorage.ENCRYPTED_FILE:
            if not self.passphrase.text():
                return self.fail("Enter the passphrase of Wicket's encrypted file.")
            self.wiz().backend.passphrase = self.passphrase.text()
        return self.ok()


class AgentPage(_Page):
    def __init__(self) -> None:
        super().__init__(
            "Agent",
            "Run the agent inside the private network, with this command or these "
            "manifests. This page waits until it connects.",
        )
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.command.setAccessibleName("Agent command line")
        self.manifests = mono_text(read_only=True)
        self.manifests.setAccessibleName("Agent manifests")
        self.status = QLabel("Preparing…")
        self.status.setAccessibleName("Agent status")
        self.token = ""
        self.yaml = ""
        buttons = QHBoxLayout()
        for text, slot in (
            ("Copy &command", lambda: self._copy(self.command.text())),
            ("Copy &manifests", lambda: self._copy(self.manifests.toPlainText())),
            ("&Save manifests…", lambda: self._save("wicket-agent.yaml", self.yaml)),
            ("Save &token file…", lambda: self._save("wicket-join-token", self.token + "\n")),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Outside Kubernetes (token in ./wicket-join-token):"))
        layout.addWidget(self.command)
        layout.addWidget(QLabel("In the cluster (kubectl apply -f):"))
        layout.addWidget(self.manifests, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        self.online = False
        self._timer = QTimer(self)
        self._timer.setInterval(AGENT_POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._dialog: QFileDialog | None = None

    def initializePage(self) -> None:
        self.online = False
        self.status.setText("Preparing the agent bundle…")
        self.wiz().run_step(self._prepare())

    def cleanupPage(self) -> None:
        self._timer.stop()

    async def _prepare(self) -> None:
        wiz = self.wiz()
        target = wiz.apiserver_page.target.text().strip()
        instructions = await wiz.agent_instructions(target)
        self.token = instructions.token
        self.command.setText(instructions.command)
        self.yaml = instructions.manifests
        self.manifests.setPlainText(self.yaml)
        self.status.setText(f"Waiting for the agent of {wiz.name!r} to connect…")
        self._timer.start()
        self._poll()

    def _poll(self) -> None:
        wiz = self.wiz()
        if wiz.relay_is_remote():
            self._set_online("The relay is remote: the next step checks the agent.")
            return
        if wiz.setup is not None and wiz.setup.agent_online():
            self._set_online(f"The agent of {wiz.name!r} is connected.")

    def _set_online(self, text: str) -> None:
        self._timer.stop()
        self.status.setText(text)
        self.online = True
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.online

    def _copy(self, text: str) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(text)

    def _save(self, name: str, text: str) -> None:
        dialog = QFileDialog(self, "Save", str(Path.home() / name))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.fileSelected.connect(lambda path: self.wiz().run_step(_write(Path(path), text)))
        self._dialog = dialog
        dialog.open()


class CheckPage(_Page):
    def __init__(self) -> None:
        super().__init__(
            "Test",
            "Wicket starts the local endpoint, asks the apiserver for /version "
            "through the tunnel, and writes the kubeconfig contexts.",
        )
        self.steps = QLabel()
        self.steps.setWordWrap(True)
        self.steps.setAccessibleName("Test progress")
        self.retry = QPushButton("&Retry")
        self.retry.clicked.connect(self.initializePage)
        self.retry.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.steps)
        layout.addWidget(self.error)
        layout.addWidget(self.retry)
        layout.addStretch(1)
        self.done = False
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)
        self.steps.setText("<br>".join(self.lines))

    def initializePage(self) -> None:
        self.done = False
        self.lines = []
        self.retry.hide()
        self.ok()
        self.wiz().run_step(self._run(), on_error=self._failed)

    def _failed(self, text: str) -> None:
        self.fail(text)
        self.retry.show()

    async def _run(self) -> None:
        await self.wiz().connect_and_write(self.note)
        self.done = True
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.done


class AddClusterWizard(QWizard):
    """Adds a cluster end to end; Cancel undoes every step taken.

    Signals: ``step_failed(str)``, ``source_filled()``, ``cluster_added(str)``.
    """

    step_failed = Signal(str)
    source_filled = Signal()
    cluster_added = Signal(str)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.setWindowTitle("Add a cluster")
        self.setModal(False)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.name_page = NamePage()
        self.relay_page = RelayPage()
        self.apiserver_page = ApiserverPage()
        self.endpoint_page = EndpointPage()
        self.agent_page = AgentPage()
        self.test_page = CheckPage()
        for page in (
            self.name_page,
            self.relay_page,
            self.apiserver_page,
            self.endpoint_page,
            self.agent_page,
            self.test_page,
        ):
            self.addPage(page)
        self.resize(720, 560)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.setup: ClusterSetup | None = None
        self.completed = False
        self.rejected.connect(self._cancelled)

    # -- what the pages gathered -------------------------------------------------------

    @property
    def name(self) -> str:
        return self.name_page.name.text().strip()

    def relay_is_remote(self) -> bool:
        return self.relay_page.remote.isChecked()

    @property
    def endpoint_port(self) -> int | None:
        return self.setup.port if self.setup else None

    def setup_for(self, name: str) -> ClusterSetup:
        """The setup of ``name``; a renamed cluster drops the old one's steps."""
        if self.setup is not None and self.setup.name != name:
            self.backend.run_to_end(self.backend.call(self.setup.cancel()))
            self.setup = None
        if self.setup is None:
            self.setup = self.backend.begin_setup(name)
        return self.setup

    # -- steps -------------------------------------------------------------------------

    def run_step(
        self, coro: Awaitable[None], on_error: Callable[[str], None] | None = None
    ) -> asyncio.Task[None]:
        """Run a page's slow step as a task; a failure shows on the current page."""

        async def step() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                text = describe_error(exc)
                log.warning("add-cluster step failed: %s", text)
                page = self.currentPage()
                if on_error is not None:
                    on_error(text)
                elif isinstance(page, _Page):
                    page.fail(text)
                self.step_failed.emit(text)

        return spawn(step(), self._tasks)

    async def agent_instructions(self, target: str) -> AgentInstructions:
        """The agent's token, command and manifests: a join token issued by the embedded
        relay, or the one given for an external relay (after enrolling there)."""
        setup, call = self.setup_for(self.name), self.backend.call
        if self.relay_is_remote():
            client, join = self.relay_page.client_token.text(), self.relay_page.join_token.text()
            await call(setup.remote_relay(client, join))
        else:
            await call(setup.embedded_join_token(self.relay_page.advertise.text().strip() or None))
        return await call(setup.agent_instructions(target))

    async def connect_and_write(self, note: Callable[[str], None]) -> None:
        setup, call = self.setup_for(self.name), self.backend.call
        endpoint_page, api = self.endpoint_page, self.apiserver_page
        if setup.port is None:
            port = await call(setup.start_endpoint(endpoint_page.port.value()))
            note(f"Local endpoint listening on 127.0.0.1:{port}.")
        ca_pem, server_name = api.ca_pem(), api.server_name.text().strip()
        token = endpoint_page.token.text().strip() if endpoint_page.use_token.isChecked() else None
        probe = await call(setup.probe(ca_pem, server_name, ProbeAuth(token=token)))
        if probe.status == 200:
            note(f"The apiserver answered through the tunnel: {probe.git_version or probe.body}.")
        elif probe.status in (401, 403):
            note(
                f"The apiserver answered through the tunnel (HTTP {probe.status}: it wants "
                "credentials, which kubectl sends)."
            )
        else:
            raise WicketError(f"/version through the tunnel answered HTTP {probe.status}")
        storage = endpoint_page.chosen_storage()
        user = None if token is not None else endpoint_page.user.currentText()
        context = await call(
            setup.finish(
                ca_pem,
                server_name,
                token=token,
                user=user,
                storage=storage,
                mode=Mode(endpoint_page.mode.currentData()),
            )
        )
        if token is not None:
            note(f"Token kept in {describe_storage(storage)}.")
        note(f"Wrote kubectl context <b>{context}</b>: kubectl --context {context} get ns")

    # -- finishing and cancelling ------------------------------------------------------

    def accept(self) -> None:
        self.completed = True
        if self.setup is not None:
            self.setup.commit()
        self.cluster_added.emit(self.name)
        super().accept()

    def _cancelled(self) -> None:
        self.backend.run_to_end(self.abandon())

    async def abandon(self) -> None:
        """Undo every step taken (newest first) unless the wizard finished."""
        await cancel_all(self._tasks)
        self.agent_page.cleanupPage()
        if self.setup is not None:
            await self.backend.call(self.setup.cancel())


async def _write(path: Path, text: str) -> None:
    await asyncio.to_thread(save_user_file, path, text)
