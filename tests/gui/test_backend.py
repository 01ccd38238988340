"""The backend brings a saved cluster back as it was saved, endpoint mode included."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from pathlib import Path

import pytest

from core.errors import SecretPassphraseError
from core.format import utcnow
from core.kube import KubeconfigPaths
from core.mode import Mode
from core.pki.ca import create_ca
from core.service import SecretStorage
from gui.backend import CLUSTERS_FILE, EMBEDDED, AppSettings, Backend, ClusterConfig


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["passthrough", "inspect"])
async def test_a_saved_cluster_comes_back_in_its_mode(
    tmp_path: Path, home: Path, mode: str
) -> None:
    ca_pem = create_ca(utcnow(), common_name="lab apiserver CA").cert_pem.decode()
    saved = ClusterConfig("lab", EMBEDDED, 0, Mode.INSPECT, ca_pem, "127.0.0.1")
    if mode == "passthrough":
        saved = ClusterConfig("lab", EMBEDDED, 0)

    def save(settings: AppSettings) -> None:
        settings.demo = False
        settings.put(saved)

    AppSettings.update(tmp_path / "app" / CLUSTERS_FILE, save)

    backend = Backend(tmp_path / "app", KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    await backend.start()
    try:
        assert backend.cluster_config("lab") == saved
        assert await backend.restore() == []
        assert backend.is_connected("lab")
        (endpoint,) = backend.latest.endpoints
        assert (endpoint.cluster, endpoint.mode) == ("lab", mode)
        if mode == "inspect":
            assert (tmp_path / "app" / "inspect" / "endpoint-token-lab").stat().st_mode & 0o077 == 0
    finally:
        await backend.shutdown()


async def test_shutdown_waits_for_clean_up_run_to_end(tmp_path: Path, home: Path) -> None:
    backend = Backend(tmp_path / "app", KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    await backend.start()
    done: list[str] = []

    async def undo() -> None:
        await asyncio.sleep(0.2)
        done.append("undone")

    backend.run_to_end(undo())
    gc.collect()  # the backend, not the loop's weak reference, keeps the task alive
    await backend.shutdown()
    assert done == ["undone"]


@pytest.mark.timeout(60)
async def test_edit_and_remove_a_cluster_through_the_backend(tmp_path: Path, home: Path) -> None:
    def save(settings: AppSettings) -> None:
        settings.demo = False
        settings.put(ClusterConfig("lab", EMBEDDED, 0))

    AppSettings.update(tmp_path / "app" / CLUSTERS_FILE, save)
    backend = Backend(tmp_path / "app", KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    await backend.start()
    try:
        assert await backend.restore() == []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        await backend.edit_cluster("lab", port=free)
        assert backend.cluster_config("lab") == ClusterConfig("lab", EMBEDDED, free)
        (endpoint,) = backend.latest.endpoints
        assert endpoint.address.endswith(f":{free}")
        shown = await backend.agent_instructions("lab")
        assert shown.command.startswith("wicket agent --token-file")
        assert await backend.agent_instructions("lab") == shown  # unused: the same token
        assert await backend.remove_cluster("lab") == []
        assert backend.cluster_config("lab") is None
        assert not backend.is_connected("lab")
    finally:
        await backend.shutdown()


async def test_the_encrypted_file_unlocks_with_its_passphrase_only(
    tmp_path: Path, home: Path
) -> None:
    backend = Backend(tmp_path / "app", KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    await backend.start()
    try:
        await backend.unlock_encrypted_file("first passphrase")
        lab = ClusterConfig("lab", EMBEDDED, 0, secrets=SecretStorage.ENCRYPTED_FILE)
        await backend.vault.set(lab, "token")  # the file exists from now on
        state = await backend.secret_storage_state(SecretStorage.ENCRYPTED_FILE)
        assert "secrets.enc" in state
        fresh = Backend(tmp_path / "app", backend.kubeconfig, core=backend.core)
        with pytest.raises(SecretPassphraseError):
            await fresh.unlock_encrypted_file("another one")
        assert fresh.passphrase is None
        await fresh.unlock_encrypted_file("first passphrase")
        assert await fresh.vault.get(lab) == "token"
    finally:
        await backend.shutdown()
