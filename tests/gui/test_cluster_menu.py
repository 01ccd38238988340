"""The Cluster menu and the list's context menu on a real cluster (embedded relay, a real
agent); the list, the tray, its tooltip and the status bar show the same state. Edit…
sets and clears a cluster's public server, and refuses one that is not a URL."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from PySide6.QtWidgets import QWidget

from core.format import utcnow
from core.kube import KubeconfigPaths, load_merged
from core.pki.ca import create_ca
from core.pki.tokens import parse
from core.service import ClusterView
from gui.aio import wait_until
from gui.backend import CLUSTERS_FILE, DEMO, EMBEDDED, AppSettings, Backend, ClusterConfig
from gui.cluster_dialogs import NO_PUBLIC_IN_INSPECT, AgentCommandDialog, EditClusterDialog
from gui.cluster_menu import DEMO_KEPT, ClusterMenu
from gui.models import ClusterRow
from tests.gui.conftest import resolve, started_app

DISCARD = ("127.0.0.1", 9)  # the agent's target: nothing is sent through in this test
PUBLIC = "https://relay.example:7443"


def save_lab(settings: AppSettings) -> None:
    settings.demo = False
    settings.put(ClusterConfig("lab", EMBEDDED, 0))


def answer(menu: ClusterMenu, text: str) -> None:
    (box,) = menu.boxes
    assert box.isVisible()
    (button,) = [b for b in box.buttons() if b.text() == text]
    button.click()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_connect_disconnect_remove_and_one_state_everywhere(
    tmp_path: Path, home: Path
) -> None:
    AppSettings.update(tmp_path / "app" / CLUSTERS_FILE, save_lab)
    app = await started_app(tmp_path, home)
    try:
        backend, window, tray = app.backend, app.window, app.tray
        token = parse((await backend.agent_instructions("lab")).token)

        async def start_agent() -> None:
            agent = await backend.service.start_agent(
                tmp_path / "agent", DISCARD, token, name="agent:lab"
            )
            await agent.wait_online(10)

        await backend.core.call(start_agent())

        def state() -> str:
            row = window.clusters.row("lab")
            return row.state if row is not None else "absent"

        def tray_text() -> str:
            action = tray.cluster_actions.get("lab")
            return action.text() if action is not None else ""

        await wait_until(lambda: state() == "online", 20, what="lab online")
        await wait_until(lambda: tray_text() == "lab — online", 5, what="the tray says so")
        assert window.selected_cluster == "lab"
        assert "1/1 clusters online" in window.status.text()
        menu = window.cluster_menu
        assert menu.menu.menuAction() in window.menuBar().actions()
        assert [a.text() for a in menu.menu.actions() if not a.isSeparator()] == [
            "&Connect",
            "&Disconnect",
            "&Edit…",
            "Show &agent command…",
            "&Remove…",
        ]
        assert not menu.connect_action.isEnabled() and menu.disconnect_action.isEnabled()

        menu.disconnect_action.trigger()
        await wait_until(lambda: state() == "disconnected", 15, what="disconnected")
        await wait_until(lambda: tray_text() == "lab — disconnected", 5, what="the tray too")
        # The agent is still online at the relay; the cluster reads disconnected everywhere.
        assert window.clusters.index(window.clusters.row_of("lab"), 0).data() == (
            "lab\ndisconnected"
        )
        assert not tray.cluster_actions["lab"].isChecked()
        assert tray.icon.toolTip() == "Wicket — 0 of 1 clusters online"
        assert tray.state == "offline"
        assert "0/1 clusters online" in window.status.text()
        assert window.connect_button.text() == "&Connect"
        assert menu.connect_action.isEnabled() and not menu.disconnect_action.isEnabled()

        # The list's context menu is the same menu, on the row under the pointer.
        window.cluster_list.clearSelection()
        rect = window.cluster_list.visualRect(window.clusters.index(0, 0))
        window.cluster_list.customContextMenuRequested.emit(rect.center())
        assert window.selected_cluster == "lab"
        assert menu.menu.isVisible()
        menu.menu.hide()
        menu.connect_action.trigger()
        await wait_until(lambda: state() == "online", 30, what="online again")
        await wait_until(lambda: tray_text() == "lab — online", 5, what="the tray again")

        # Edit: the local port, applied by Save; the endpoint moves there.
        assert menu.edit_action.isEnabled() and menu.agent_action.isEnabled()
        menu.edit_action.trigger()
        (edit,) = menu.dialogs
        assert isinstance(edit, EditClusterDialog)
        assert edit.mode.currentText() == "passthrough"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        edit.port.setValue(free)
        edit.accept()
        await wait_until(
            lambda: any(e.address.endswith(f":{free}") for e in backend.latest.endpoints),
            15,
            what="the endpoint on the edited port",
        )
        cfg = backend.cluster_config("lab")
        assert cfg is not None and cfg.port == free
        # The agent's command again, from the same menu.
        menu.agent_action.trigger()
        await wait_until(lambda: bool(menu.dialogs), 15, what="the agent dialog")
        (shown,) = menu.dialogs
        assert isinstance(shown, AgentCommandDialog)
        assert shown.command.toPlainText().startswith("wicket agent --token-file")
        assert "kind: Deployment" in shown.manifests.toPlainText()
        shown.reject()

        menu.remove_action.trigger()
        assert menu.boxes[0].text() == "Remove the cluster lab?"
        answer(menu, "Cancel")
        assert backend.cluster_config("lab") is not None and backend.is_connected("lab")
        removed = asyncio.get_running_loop().create_future()
        menu.removed.connect(lambda name: resolve(removed, name))
        menu.remove_action.trigger()
        answer(menu, "&Remove")
        assert await asyncio.wait_for(removed, 15) == "lab"
        assert backend.cluster_config("lab") is None
        assert not backend.is_connected("lab")
        saved = AppSettings.load(tmp_path / "app" / CLUSTERS_FILE)
        assert [c.name for c in saved.clusters] == []
        assert app.reporter.reported == []
    finally:
        await app.shutdown()


def test_actions_follow_the_row_and_the_demo_is_not_removed(tmp_path: Path, home: Path) -> None:
    parent = QWidget()
    menu = ClusterMenu(Backend(tmp_path / "app"), parent)
    assert not any(a.isEnabled() for a in menu.menu.actions() if not a.isSeparator())
    demo = ClusterRow(ClusterView(DEMO, "online", None, None, None, ("127.0.0.1:1",)), ())
    menu.set_cluster(demo)
    assert menu.disconnect_action.isEnabled() and not menu.connect_action.isEnabled()
    assert not menu.remove_action.isEnabled()
    assert menu.remove_action.toolTip() == DEMO_KEPT
    menu.ask_remove()
    assert menu.boxes == []
    lab = ClusterRow(ClusterView("lab", "offline", "agent not connected", None, None), ())
    menu.set_cluster(lab)
    assert menu.connect_action.isEnabled() and not menu.disconnect_action.isEnabled()
    assert menu.remove_action.isEnabled() and menu.remove_action.toolTip() != DEMO_KEPT
    for action in (menu.edit_action, menu.agent_action):
        assert not action.isEnabled()  # neither is a configured cluster of this backend
    parent.deleteLater()


def public_server(home: Path, context: str = "wicket-lab-public") -> str | None:
    """The server of ``context`` in the kubeconfig (None: there is no such context)."""
    view = load_merged(KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    found = view.context(context)
    return found.server if found is not None else None


def saved_public(backend: Backend) -> str | None:
    cfg = backend.cluster_config("lab")
    return cfg.public_server if cfg is not None else None


@pytest.mark.timeout(90)
async def test_edit_sets_and_clears_the_public_server(tmp_path: Path, home: Path) -> None:
    """Cluster → Edit… on a cluster at the embedded relay (no agent needed): a URL that
    is not https://HOST[:PORT] keeps Save disabled and says why; a good one is saved and
    kubectl gets wicket-lab-public; cleared, that context goes and the local one stays."""
    ca = create_ca(utcnow(), common_name="lab CA").cert_pem.decode()

    def save(settings: AppSettings) -> None:
        settings.demo = False
        settings.put(ClusterConfig("lab", EMBEDDED, 0, cluster_ca=ca, server_name="api"))

    AppSettings.update(tmp_path / "app" / CLUSTERS_FILE, save)
    app = await started_app(tmp_path, home)
    try:
        backend, window = app.backend, app.window
        menu = window.cluster_menu
        await wait_until(lambda: window.selected_cluster == "lab", 15, what="lab selected")
        await wait_until(lambda: public_server(home, "wicket-lab") is not None, 15, what="local")
        menu.edit_action.trigger()
        (edit,) = menu.dialogs
        assert isinstance(edit, EditClusterDialog)
        assert edit.public.text() == "" and edit.save.isEnabled()
        for bad, why in (
            ("http://relay.example:7443", "not an https:// URL"),
            ("https://relay.example:7443/k8s", "no user, path, query or fragment"),
            ("https://relay.example:70000", "Port out of range"),
        ):
            edit.public.setText(bad)
            assert not edit.save.isEnabled(), bad
            assert edit.public_note.text().startswith("Cannot save: ") and why in (
                edit.public_note.text()
            )
        edit.accept()  # Enter in the line edit: nothing is saved
        assert edit.isVisible() and menu.dialogs == [edit]
        edit.public.setText(f"  {PUBLIC}  ")
        assert edit.save.isEnabled()
        assert "kubectl --context wicket-lab-public" in edit.public_note.text()
        edit.mode.setCurrentText("inspect")
        assert edit.public_note.text() == NO_PUBLIC_IN_INSPECT and edit.save.isEnabled()
        edit.mode.setCurrentText("passthrough")
        edit.save.click()
        await wait_until(lambda: saved_public(backend) == PUBLIC, 15, what="saved")
        assert public_server(home) == PUBLIC  # written before the configuration
        saved = AppSettings.load(tmp_path / "app" / CLUSTERS_FILE).cluster("lab")
        assert saved is not None and saved.public_server == PUBLIC

        menu.edit_action.trigger()
        again = menu.dialogs[-1]
        assert isinstance(again, EditClusterDialog) and again.public.text() == PUBLIC
        again.public.clear()
        assert again.save.isEnabled() and again.public_note.text() == ""
        again.save.click()
        await wait_until(lambda: saved_public(backend) == "", 15, what="cleared")
        assert public_server(home) is None
        cfg = backend.cluster_config("lab")
        assert cfg is not None
        assert public_server(home, "wicket-lab") == f"https://127.0.0.1:{cfg.port}"
        assert app.reporter.reported == []
    finally:
        await app.shutdown()


def test_the_demos_edit_has_no_public_server() -> None:
    edit = EditClusterDialog(DEMO, "passthrough", 0)
    assert not edit.port.isEnabled()
    assert edit.public.parent() is None  # not in the form
    edit.deleteLater()
