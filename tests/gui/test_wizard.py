"""The add-cluster wizard end to end: embedded relay, a real agent, kubectl through it,
and the cluster back after a second start of the app's backend (a relaunch)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import keyring
import pytest
from keyring.backends.SecretService import Keyring as SecretServiceKeyring
from PySide6.QtWidgets import QWizard

from core.aio.relay import Relay
from core.demo.apiserver import DemoApiServer
from core.kube import KubeconfigPaths, load_merged
from core.pki.tokens import parse
from core.service import Mode, SecretStorage, WicketService, describe_storage
from gui.aio import wait_until
from gui.backend import CLUSTERS_FILE, AppSettings, Backend
from gui.core_thread import CoreThread
from gui.wizard import AddClusterWizard
from tests.gui.conftest import resolve
from tests.gui.kubectl import kubectl
from tests.secrets.conftest import secret_service
from tests.secrets.fakes import new_backend
from tests.secrets.test_secret_service import _items_for


@pytest.fixture
def real_keyring(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """tests/secrets' gnome-keyring on a private D-Bus, in a directory of its own (the
    test's tmp_path has the GUI's fresh HOME)."""
    start = secret_service.__wrapped__  # type: ignore[attr-defined]
    yield from start(tmp_path_factory.mktemp("keyring"), monkeypatch)


@dataclass
class Setup:
    backend: Backend
    apiserver: DemoApiServer
    source: Path
    home: Path
    tmp: Path
    private: CoreThread  # the private network: the apiserver and the agent

    def relaunch(self) -> Backend:
        """The app's backend as a second start of the app makes it."""
        self.backend = Backend(self.backend.state_dir, self.backend.kubeconfig)
        return self.backend


@contextlib.asynccontextmanager
async def private_cluster(
    tmp: Path, home: Path, state_dir: Path | None = None
) -> AsyncIterator[Setup]:
    """The private cluster, and the app's backend on ``state_dir`` (default: the test's
    own; the app's default one when a real app process starts on it later)."""
    paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
    state_dir = state_dir or tmp / "app"
    AppSettings.update(state_dir / CLUSTERS_FILE, lambda c: setattr(c, "demo", False))
    backend = Backend(state_dir, paths)
    await backend.start()
    assert await backend.restore() == []  # as the app starts: the runtime, no demo
    private = CoreThread(WicketService())
    await asyncio.to_thread(private.start)

    async def start_apiserver() -> DemoApiServer:
        server = DemoApiServer(tmp / "private", "127.0.0.1", 0)
        await server.start()
        return server

    apiserver = await private.call(start_apiserver())
    s = Setup(backend, apiserver, tmp / "private.kubeconfig", home, tmp, private)
    try:
        source = apiserver.write_kubeconfig(tmp / "private.kubeconfig", context="private")
        kubeconfig = home / ".kube" / "config"
        kubeconfig.parent.mkdir(mode=0o700, exist_ok=True)
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: ''\n"
            f"users:\n- name: lab-admin\n  user: {{token: {apiserver.bearer_token}}}\n"
        )
        s.source = source
        yield s
    finally:
        await private.call(apiserver.stop())
        await private.stop_async()
        await s.backend.shutdown()


async def signal_once(signal: object) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    signal.connect(lambda *a: resolve(future, None))  # type: ignore[attr-defined]
    await asyncio.wait_for(future, 10)


async def drive_to_agent_online(
    s: Setup,
    storage: SecretStorage | None = None,
    mode: Mode = Mode.PASSTHROUGH,
    passphrase: str = "",
) -> AddClusterWizard:
    """Through the pages; kubectl uses the kubeconfig user, or (``storage``) the token,
    kept where ``storage`` says (the encrypted file's ``passphrase`` typed in); the
    endpoint in ``mode``."""
    wizard = AddClusterWizard(s.backend)
    wizard.show()
    assert not wizard.isModal()
    next_button = wizard.button(QWizard.WizardButton.NextButton)

    # Name: invalid, then fine.
    wizard.name_page.name.setText("no spaces")
    next_button.click()
    assert wizard.currentPage() is wizard.name_page
    assert "invalid cluster name" in wizard.name_page.error.text()
    wizard.name_page.name.setText("lab")
    next_button.click()
    assert wizard.currentPage() is wizard.relay_page
    next_button.click()  # embedded relay

    # Apiserver: empty is refused, then prefilled from the private kubeconfig.
    page = wizard.apiserver_page
    next_button.click()
    assert "host:port" in page.error.text()
    page.source_path.setText(str(s.source))
    filled = asyncio.ensure_future(signal_once(wizard.source_filled))
    page.fill_from_source()
    await filled
    assert page.target.text() == f"127.0.0.1:{s.apiserver.port}"
    assert "BEGIN CERTIFICATE" in page.ca.toPlainText()
    assert page.server_name.text() == "127.0.0.1"
    assert wizard.endpoint_page.token.text() == s.apiserver.bearer_token
    next_button.click()
    assert wizard.currentPage() is wizard.endpoint_page

    # Endpoint: use the existing kubeconfig user, or the token in the chosen store.
    endpoint = wizard.endpoint_page
    endpoint.mode.setCurrentIndex(endpoint.mode.findData(mode.value))
    await wait_until(lambda: endpoint.user.count() > 0, 10, what="kubeconfig users")
    if storage is None:
        endpoint.use_user.setChecked(True)
        endpoint.user.setCurrentText("lab-admin")
    else:
        endpoint.passphrase.setText(passphrase)
        endpoint.storage.setCurrentIndex(endpoint.storage.findData(storage.value))
        await wait_until(
            lambda: describe_storage(storage) in endpoint.store_state.text(), 10, what="store"
        )
    next_button.click()
    assert wizard.currentPage() is wizard.agent_page

    # Agent: the bundle appears; the "user" runs the agent with the join token.
    agent_page = wizard.agent_page
    # The token comes first, the command line after the bundle is built (in a thread).
    await wait_until(
        lambda: bool(agent_page.token and agent_page.command.text()), 15, what="the agent bundle"
    )
    assert agent_page.command.text().startswith("wicket agent --token-file")
    assert f"--target 127.0.0.1:{s.apiserver.port}" in agent_page.command.text()
    assert "kind: Deployment" in agent_page.manifests.toPlainText()
    assert not next_button.isEnabled()
    token = parse(agent_page.token)
    await s.private.call(
        s.private.service.start_agent(
            s.tmp / "agent", ("127.0.0.1", s.apiserver.port), token, name="agent:lab"
        )
    )
    await wait_until(next_button.isEnabled, 15, what="the agent online")
    assert "is connected" in agent_page.status.text()
    return wizard


async def drive_to_test_page(
    s: Setup,
    storage: SecretStorage | None = None,
    mode: Mode = Mode.PASSTHROUGH,
    passphrase: str = "",
) -> AddClusterWizard:
    wizard = await drive_to_agent_online(s, storage, mode, passphrase)
    wizard.button(QWizard.WizardButton.NextButton).click()
    assert wizard.currentPage() is wizard.test_page
    finish = wizard.button(QWizard.WizardButton.FinishButton)
    await wait_until(finish.isEnabled, 20, what="the tunnel test")
    text = wizard.test_page.steps.text()
    assert "answered through the tunnel" in text and "wicket-lab" in text
    return wizard


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_wizard_end_to_end_then_kubectl_exec_through_the_tunnel(
    tmp_path: Path, home: Path
) -> None:
    async with private_cluster(tmp_path, home) as s:
        wizard = await drive_to_test_page(s)
        wizard.button(QWizard.WizardButton.FinishButton).click()
        assert wizard.completed
        assert [c.name for c in s.backend.settings.clusters] == ["lab"]

        got = await kubectl(home, "--context", "wicket-lab", "get", "--raw", "/version")
        assert got.returncode == 0, got.stderr
        assert "v1.32.4" in got.stdout
        got = await kubectl(
            home, "--context", "wicket-lab", "exec", "web", "--", "echo", "through-the-tunnel"
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == "through-the-tunnel"
        streams = s.backend.latest.streams
        assert any(v.cluster == "lab" and v.component == "endpoint:lab" for v in streams)
        wizard.close()
        port = s.backend.cluster_config("lab").port  # type: ignore[union-attr]

        # A second start of the app: the cluster, its port and its agent come back.
        await s.backend.shutdown()
        backend = s.relaunch()
        await backend.start()
        assert await backend.restore() == []
        assert backend.cluster_config("lab").port == port  # type: ignore[union-attr]
        got = await kubectl(home, "--context", "wicket-lab", "get", "--raw", "/version")
        for _ in range(40):  # the agent reconnects by itself (backoff up to 5 s)
            if got.returncode == 0:
                break
            await asyncio.sleep(0.25)
            got = await kubectl(home, "--context", "wicket-lab", "get", "--raw", "/version")
        assert got.returncode == 0, got.stderr
        assert "v1.32.4" in got.stdout
        assert backend.is_connected("lab")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_cancelling_the_wizard_leaves_nothing_behind(tmp_path: Path, home: Path) -> None:
    async with private_cluster(tmp_path, home) as s:
        wizard = await drive_to_test_page(s)
        view = await s.backend.load_kubeconfig()
        assert view.context("wicket-lab") is not None
        relay = s.backend.service.component("relay")
        assert isinstance(relay, Relay)
        token_id = parse(wizard.agent_page.token).token_id
        wizard.reject()
        await s.backend.wait_run_to_end()  # the undo, last step (the join token) included
        await wait_until(
            lambda: load_merged(s.backend.kubeconfig).context("wicket-lab") is None,
            10,
            what="contexts removed",
        )
        await wait_until(lambda: not s.backend.is_connected("lab"), 10, what="no endpoint")
        assert s.backend.settings.clusters == []
        assert "lab" not in relay.state.clusters()
        (record,) = [r for r in relay.state.tokens().records() if r.token_id == token_id]
        assert record.revoked
        assert not wizard.completed


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_test_page_names_the_real_cause_and_goes_back(tmp_path: Path, home: Path) -> None:
    async with private_cluster(tmp_path, home) as s:
        wizard = await drive_to_agent_online(s)
        await s.private.call(s.apiserver.stop())  # the agent's target refuses now
        wizard.button(QWizard.WizardButton.NextButton).click()
        assert wizard.currentPage() is wizard.test_page
        page = wizard.test_page
        await wait_until(lambda: bool(page.error.text()), 20, what="the test's failure")
        assert "target unreachable: connection refused" in page.error.text()
        assert "SSL" not in page.error.text() and "TLSV1" not in page.error.text()
        assert not wizard.button(QWizard.WizardButton.FinishButton).isEnabled()
        assert page.retry.isVisibleTo(page)
        back = wizard.button(QWizard.WizardButton.BackButton)
        assert back.isVisibleTo(wizard) and back.isEnabled()
        back.click()
        assert wizard.currentPage() is wizard.agent_page
        wizard.reject()
        await s.backend.wait_run_to_end()
        assert not s.backend.is_connected("lab")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_token_lands_in_the_real_keyring_and_kubectl_gets_it(
    tmp_path: Path, home: Path, real_keyring: str
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(new_backend(SecretServiceKeyring))
    try:
        async with private_cluster(tmp_path, home) as s:
            wizard = await drive_to_test_page(s, SecretStorage.KEYRING)
            state = wizard.endpoint_page.store_state.text()
            assert "the desktop keyring" in state and "SecretService" in state
            assert "Token kept in the desktop keyring" in wizard.test_page.steps.text()
            wizard.button(QWizard.WizardButton.FinishButton).click()
            assert _items_for("cluster/lab/upstream-token") == [s.apiserver.bearer_token.encode()]
            # kubectl's exec plugin (wicket credential) asks the running app for it.
            got = await kubectl(home, "--context", "wicket-lab", "get", "pods")
            assert got.returncode == 0, got.stderr
            assert "web" in got.stdout
            assert await s.backend.remove_cluster("lab") == []
            assert _items_for("cluster/lab/upstream-token") == []
    finally:
        keyring.set_keyring(previous)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_an_inspect_cluster_from_the_wizard_works_with_kubectl_both_ways(
    tmp_path: Path, home: Path
) -> None:
    """Inspect chosen in the wizard: the context trusts Wicket's CA and the credential
    plugin hands kubectl the endpoint's token; kubectl's requests are recorded. Switched
    to passthrough and back (Edit), kubectl keeps working after each switch."""
    async with private_cluster(tmp_path, home) as s:
        wizard = await drive_to_test_page(s, SecretStorage.SESSION, Mode.INSPECT)
        wizard.button(QWizard.WizardButton.FinishButton).click()
        assert wizard.completed
        wizard.close()
        backend = s.backend

        def mode() -> str:
            return next((e.mode for e in backend.latest.endpoints if e.cluster == "lab"), "")

        async def works(path: str = "/version") -> None:
            got = await kubectl(home, "--context", "wicket-lab", "get", "--raw", path)
            assert got.returncode == 0, got.stderr
            got = await kubectl(home, "--context", "wicket-lab", "exec", "web", "--", "echo", "hi")
            assert got.returncode == 0, got.stderr
            assert got.stdout.strip() == "hi"

        for wanted in ("inspect", "passthrough", "inspect"):
            if wanted != mode():
                await backend.edit_cluster("lab", mode=wanted)
            await wait_until(lambda w=wanted: mode() == w, 20, what=wanted)  # type: ignore[misc]
            cfg = backend.cluster_config("lab")
            assert cfg is not None and cfg.mode.value == wanted
            await works()

        def recorded(path_end: str, status: int) -> bool:
            return any(
                v.cluster == "lab" and (v.path or "").endswith(path_end) and v.status == status
                for v in backend.latest.streams
            )

        await wait_until(lambda: recorded("/version", 200), 10, what="get --raw recorded")
        await wait_until(lambda: recorded("/pods/web/exec", 101), 10, what="exec recorded")
