"""Done-when of issue 13, as processes: a cluster added headless survives a SIGKILL of
``wicket up`` and is removed without a trace (fresh HOME/XDG, no D-Bus, no keyring)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.democluster import demo_cluster

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not (BIN / "kubectl").exists(), reason="needs .venv/bin/kubectl"),
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    (tmp_path / "passphrase").write_text("correct horse battery staple\n")
    (tmp_path / "passphrase").chmod(0o600)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    return keep | {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "KUBECONFIG": str(home / ".kube" / "config"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "WICKET_PASSPHRASE_FILE": str(tmp_path / "passphrase"),
        "PYTHONPATH": str(REPO),
    }


class Processes:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.running = tmp, env, {}  # type: ignore[var-annotated]

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("a") as log:  # the child keeps its own copy
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def procs(tmp_path: Path, env: dict[str, str]) -> Iterator[Processes]:
    p = Processes(tmp_path, env)
    try:
        yield p
    finally:
        p.stop_all()


def wicket(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "wicket"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def private_cluster(tmp: Path, procs: Processes) -> tuple[str, Path, str]:
    """``python -m core.demo`` with token auth: its target, CA file and token."""
    procs.start("demo", sys.executable, "-m", "core.demo", "--state-dir", str(tmp / "demo"))
    kubeconfig = tmp / "demo" / "kubeconfig"
    return demo_cluster(kubeconfig, lambda: procs.log("demo"), tmp)


def get_pods(env: dict[str, str], within: float) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + within
    while True:
        got = subprocess.run(
            [str(BIN / "kubectl"), "--context", "wicket-lab", "get", "pods"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if got.returncode == 0 or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def test_add_up_sigkill_up_remove(tmp_path: Path, env: dict[str, str], procs: Processes) -> None:
    target, ca, token = private_cluster(tmp_path, procs)
    (tmp_path / "upstream-token").write_text(token + "\n")
    join = tmp_path / "join-token"
    added = wicket(
        env,
        "cluster", "add", "lab", "--target", target, "--ca-file", str(ca),
        "--upstream-token-file", str(tmp_path / "upstream-token"), "--join-token-out", str(join),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert join.stat().st_mode & 0o077 == 0
    command = added.stdout.strip().splitlines()[-1].split()
    assert command[:2] == ["wicket", "agent"]
    listed = json.loads(wicket(env, "cluster", "list", "--json").stdout)
    (cluster,) = listed["clusters"]
    assert (cluster["name"], cluster["secrets"]) == ("lab", "encrypted-file")
    port = cluster["port"]

    agent = procs.start("agent", str(BIN / "wicket"), *command[1:-1], str(tmp_path / "agent"))
    up = procs.start("up", str(BIN / "wicket"), "up")
    got = get_pods(env, within=20)
    assert got.returncode == 0, got.stderr[-500:] + procs.log("up") + procs.log("agent")
    assert "web" in got.stdout

    up.kill()  # SIGKILL: no clean shutdown
    up.wait(10)
    started = time.monotonic()
    procs.start("up", str(BIN / "wicket"), "up")
    got = get_pods(env, within=10)
    assert got.returncode == 0, got.stderr + procs.log("up")
    assert time.monotonic() - started < 10
    assert (
        json.loads(wicket(env, "cluster", "list", "--json").stdout)["clusters"][0]["port"] == port
    )
    assert f"127.0.0.1:{port}" in procs.log("up")

    removed = wicket(env, "cluster", "remove", "lab")
    assert removed.returncode == 0, removed.stderr
    assert "wicket-lab" not in Path(env["KUBECONFIG"]).read_text()
    assert wicket(env, "cluster", "list", "--json").stdout.count("lab") == 0
    deadline = time.monotonic() + 15
    while "was revoked" not in procs.log("up"):
        assert time.monotonic() < deadline, procs.log("agent")
        time.sleep(0.2)
    assert "relay refused" in procs.log("agent")
    assert agent.poll() is None  # refused, and still trying: it was not told to stop
    secret = subprocess.run(
        [sys.executable, "-c", SECRET_GONE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert secret.stdout.strip() == "None", secret.stderr


SECRET_GONE = """
from core.service import SecretStorage, TokenVault
from core.secrets import upstream_token_key
store = TokenVault().store_sync(SecretStorage.ENCRYPTED_FILE)
print(store.get_sync(upstream_token_key("lab")))
"""
