"""A cluster added through the wizard comes back in a second, real start of the app.

The wizard runs in the test's app (embedded relay, passthrough, the token in the
encrypted file); that app then shuts down as Quit does, and the app starts again as its
own OS process on the same HOME. Without anything else running, kubectl's exec plugin
can only get the token from that process (kubectl is given no passphrase), and the
agent, left running, must find the embedded relay on its saved address by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest
from PySide6.QtWidgets import QWizard

from core.kube import KubeconfigPaths, load_merged
from core.paths import runtime_dir
from core.secrets.store import default_secrets_file
from core.service import SecretStorage
from core.service.config import default_state_dir
from core.service.instance import LOCK_FILE
from tests.gui.kubectl import kubectl
from tests.gui.test_processes import app_env, running_app
from tests.gui.test_wizard import drive_to_test_page, private_cluster

PASSPHRASE = "correct horse battery staple"
RECONNECT_SECONDS = 20.0


def passphrase_file(tmp: Path) -> Path:
    """``WICKET_PASSPHRASE_FILE``'s file: the user's own, mode 0600."""
    path = tmp / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


async def kubectl_until_it_works(home: Path, *args: str) -> str:
    """kubectl's output once it succeeds, retried while the agent reconnects."""
    deadline = asyncio.get_running_loop().time() + RECONNECT_SECONDS
    while True:
        got = await kubectl(home, "--request-timeout=5s", *args)
        if got.returncode == 0 or asyncio.get_running_loop().time() > deadline:
            assert got.returncode == 0, got.stderr
            return got.stdout
        await asyncio.sleep(0.25)


def server_of(paths: KubeconfigPaths, context: str) -> str | None:
    found = load_merged(paths).context(context)
    return found.server if found else None


@pytest.mark.slow
@pytest.mark.timeout(140)
async def test_a_wizard_cluster_works_in_a_second_process_start_of_the_app(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # kubectl's plugin gets none either
    passphrase = passphrase_file(tmp_path)
    monkeypatch.setenv("WICKET_PASSPHRASE_FILE", str(passphrase))
    async with private_cluster(tmp_path, home, default_state_dir()) as s:
        wizard = await drive_to_test_page(s, SecretStorage.ENCRYPTED_FILE, passphrase=PASSPHRASE)
        wizard.button(QWizard.WizardButton.FinishButton).click()
        assert wizard.completed
        wizard.close()
        cfg = s.backend.cluster_config("lab")
        assert cfg is not None and cfg.secrets is SecretStorage.ENCRYPTED_FILE
        port = cfg.port
        assert default_secrets_file().exists()
        assert "web" in await kubectl_until_it_works(home, "--context", "wicket-lab", "get", "pods")
        server = server_of(s.backend.kubeconfig, "wicket-lab")
        assert server is not None and server.endswith(f":{port}")

        await s.backend.shutdown()  # as Quit ends the app: the endpoint and relay are gone
        got = await kubectl(home, "--context", "wicket-lab", "get", "pods")
        assert got.returncode != 0

        env = app_env(home, WICKET_PASSPHRASE_FILE=str(passphrase))
        with contextlib.ExitStack() as stack:
            second = await asyncio.to_thread(
                stack.enter_context, running_app(env, runtime_dir() / LOCK_FILE)
            )
            out = await kubectl_until_it_works(home, "--context", "wicket-lab", "get", "pods")
            assert "web" in out
            assert server_of(s.backend.kubeconfig, "wicket-lab") == server  # the same local port
            assert second.poll() is None
            second.send_signal(signal.SIGTERM)
            _out, err = await asyncio.to_thread(second.communicate, timeout=60)
        assert second.returncode == 0, err
        assert "Traceback" not in err, err
