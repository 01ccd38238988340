"""``wicket credential`` asks the running Wicket, then the keyring, then the file.

Every test runs the real plugin as a process (as kubectl does), with fresh HOME and XDG
dirs; the running Wicket is a real :class:`CredentialServer` in this test process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from core.secrets import encrypted_file_store, upstream_token_key
from core.secrets.encrypted_file import ScryptCost
from core.secrets.socket import CredentialServer
from tests.secrets.test_credential_cli import store_token_in_keyring
from tests.support.credential import (
    FAIL,
    NO_TERMINAL,
    SECRET_SERVICE,
    needs_kubectl,
    plugin_env,
    run_credential,
    run_kubectl,
    wicket_command,
    write_kubeconfig,
)

pytestmark = pytest.mark.timeout(60)
RUNNING_TOKEN = "held-by-the-running-wicket-71c2"
KEYRING_TOKEN = "upstream-tok-5f3a9c"
FILE_TOKEN = "in-the-encrypted-file-0b9e"


async def _credential(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The plugin, off the loop: the running Wicket's server answers on this loop."""
    return await asyncio.to_thread(run_credential, env)


class Running:
    """A running Wicket's credential server that holds ``tokens`` and records questions."""

    def __init__(self, home: Path, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.asked: list[str] = []
        path = home / "xdg-run" / "wicket" / "credential.sock"
        self.server = CredentialServer(self.lookup, path)

    async def lookup(self, cluster: str) -> str | None:
        self.asked.append(cluster)
        return self.tokens.get(cluster)


def _token_of(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["kind"] == "ExecCredential"
    return str(reply["status"]["token"])


async def test_the_running_wicket_answers_the_plugin(home: Path) -> None:
    running = Running(home, {"prod": RUNNING_TOKEN})
    await running.server.start()
    try:
        proc = await _credential(plugin_env(home, FAIL))
    finally:
        await running.server.stop()
    assert _token_of(proc) == RUNNING_TOKEN
    assert running.asked == ["prod"]


async def test_nothing_to_ask_names_the_one_thing_to_do(home: Path) -> None:
    env = plugin_env(home, None)  # keyring's own choice, with no D-Bus session to find
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    proc = await _credential(env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no running Wicket answered" in proc.stderr
    assert "no secure keyring" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "start Wicket (wicket up, or the app) and run kubectl again"
    )


async def test_a_running_wicket_without_the_cluster_says_add_it(home: Path) -> None:
    running = Running(home, {})
    await running.server.start()
    try:
        proc = await _credential(plugin_env(home, FAIL))
    finally:
        await running.server.stop()
    assert proc.returncode == 1
    assert "no token stored for cluster 'prod'" in proc.stderr
    assert "add the cluster again (wicket cluster add" in proc.stderr


async def test_the_keyring_answers_when_wicket_does_not_hold_it(
    secret_service: str, home: Path
) -> None:
    store_token_in_keyring()
    proc = await _credential(plugin_env(home, SECRET_SERVICE))  # nothing running
    assert _token_of(proc) == KEYRING_TOKEN
    running = Running(home, {})  # running, but the token is kept in the keyring only
    await running.server.start()
    try:
        proc = await _credential(plugin_env(home, SECRET_SERVICE))
    finally:
        await running.server.stop()
    assert _token_of(proc) == KEYRING_TOKEN
    assert running.asked == ["prod"]


def _passphrase_file(home: Path, mode: int) -> Path:
    path = home / "passphrase"
    path.write_text("file-passphrase\n")
    path.chmod(mode)
    return path


def _encrypted_file(home: Path) -> None:
    path = home / "data" / "wicket" / "secrets.enc"
    store = encrypted_file_store("file-passphrase", path, cost=ScryptCost(12, 8, 1))
    store.set_sync(upstream_token_key("prod"), FILE_TOKEN)


async def test_the_file_opens_with_a_passphrase_file_without_a_terminal(home: Path) -> None:
    _encrypted_file(home)
    passphrase = _passphrase_file(home, 0o600)
    proc = await _credential(plugin_env(home, FAIL, WICKET_PASSPHRASE_FILE=str(passphrase)))
    assert _token_of(proc) == FILE_TOKEN

    passphrase.chmod(0o644)
    proc = await _credential(plugin_env(home, FAIL, WICKET_PASSPHRASE_FILE=str(passphrase)))
    assert proc.returncode == 1
    assert "mode 0644 lets others read it; run chmod 600" in proc.stderr
    assert FILE_TOKEN not in proc.stderr + proc.stdout


async def test_the_running_wicket_comes_before_the_file(home: Path) -> None:
    _encrypted_file(home)
    running = Running(home, {"prod": RUNNING_TOKEN})
    await running.server.start()
    try:
        proc = await _credential(plugin_env(home, FAIL))  # no terminal, no passphrase file
    finally:
        await running.server.stop()
    assert _token_of(proc) == RUNNING_TOKEN
    proc = await _credential(plugin_env(home, FAIL))
    assert proc.returncode == 1
    assert NO_TERMINAL in proc.stderr


@needs_kubectl
async def test_kubectl_works_while_wicket_runs(
    home: Path, fake_apiserver: tuple[str, Path, list[str | None]]
) -> None:
    url, ca_path, seen = fake_apiserver
    kubeconfig = home / "kubeconfig"
    write_kubeconfig(kubeconfig, url, ca_path, wicket_command(home / "bin"))
    running = Running(home, {"prod": RUNNING_TOKEN})
    await running.server.start()
    try:
        proc = await asyncio.to_thread(
            run_kubectl, plugin_env(home, FAIL), kubeconfig, "get", "--raw", "/version"
        )
    finally:
        await running.server.stop()
    assert proc.returncode == 0, proc.stderr
    assert seen and set(seen) == {f"Bearer {RUNNING_TOKEN}"}
