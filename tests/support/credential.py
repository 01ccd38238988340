"""``wicket credential`` as kubectl runs it, for the secrets tests: the plugin's
environment, the plugin as a process, any command on a real terminal (script(1)), and the
real kubectl reading the kubeconfig entries Wicket writes."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.kube import ClusterSpec, ExecCredential, KubeconfigPaths, add_cluster_contexts

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl", path=str(ROOT / ".venv" / "bin")) or shutil.which("kubectl")
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
FAIL = "keyring.backends.fail.Keyring"
EXEC_V1 = '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}'
#: The context :func:`write_kubeconfig` writes (Wicket's for a cluster called ``prod``).
CONTEXT = "wicket-prod"
#: What the plugin tells the user to do when only the encrypted file is left, no terminal.
NO_TERMINAL = "start Wicket (wicket up, or the app), or run kubectl in a terminal"
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="run scripts/install-kubectl.sh")


def plugin_env(home: Path, backend: str | None, **extra: str) -> dict[str, str]:
    """Fresh HOME, XDG data and runtime dirs below ``home``; the keyring ``backend``
    (None: keyring's own choice); no D-Bus session unless the test process has one (the
    ``secret_service`` fixture's)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_RUNTIME_DIR": str(home / "xdg-run"),
        "LANG": "C.UTF-8",
    }
    if backend is not None:
        env["PYTHON_KEYRING_BACKEND"] = backend
    if "DBUS_SESSION_BUS_ADDRESS" in os.environ:
        env["DBUS_SESSION_BUS_ADDRESS"] = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    env.update(extra)
    return env


def run_credential(
    env: dict[str, str], cluster: str = "prod", exec_info: str | None = EXEC_V1
) -> subprocess.CompletedProcess[str]:
    """``wicket credential --cluster NAME`` as kubectl runs it without a terminal: stdin
    not a tty, ``KUBERNETES_EXEC_INFO`` set to ``exec_info`` (None: unset)."""
    if exec_info is not None:
        env = {**env, "KUBERNETES_EXEC_INFO": exec_info}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "credential", "--cluster", cluster],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def read_until(proc: subprocess.Popen[bytes], marker: bytes, seconds: float) -> bytes:
    """Everything ``proc`` wrote up to and including ``marker`` (fails after ``seconds``)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"EOF before {marker!r} in {seen!r}"
            seen += chunk
    return seen


def on_a_terminal(
    command: str, env: dict[str, str], answers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """Run the shell ``command`` under script(1), a real controlling terminal: for each
    ``(prompt, answer)`` wait for the prompt and type the answer. Returns the exit
    status and everything the terminal showed (an echoed answer would be in it)."""
    with subprocess.Popen(
        ["script", "-qec", command, "/dev/null"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stdin is not None
            seen = b""
            for prompt, answer in answers:
                seen += read_until(proc, prompt, 15)
                proc.stdin.write(answer + b"\n")
                proc.stdin.flush()
            rest, _ = proc.communicate(timeout=20)  # up to the command's exit
        finally:
            proc.kill()
    return proc.returncode, seen + rest


def wicket_command(directory: Path) -> Path:
    """An executable ``wicket`` in ``directory`` running this checkout's CLI with this
    interpreter: kubectl needs an absolute command, as Wicket writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "wicket"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m core.cli "$@"\n')
    path.chmod(0o755)
    return path


def write_kubeconfig(path: Path, server: str, ca_file: Path, command: Path) -> None:
    """The entries Wicket writes for a cluster ``prod`` with its exec credential plugin,
    pointed at ``server`` (an ``https://127.0.0.1:PORT`` whose certificate names that
    address), through core.kube as the app writes them."""
    port = urlsplit(server).port
    assert port is not None, server
    spec = ClusterSpec(
        "prod", port, ca_file.read_bytes(), "127.0.0.1", ExecCredential(str(command))
    )
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": str(path)}, home=str(path.parent))
    add_cluster_contexts(paths, spec)


def kubectl_command(kubeconfig: Path, *args: str) -> list[str]:
    """kubectl on Wicket's ``prod`` context in ``kubeconfig``."""
    assert KUBECTL is not None, "kubectl missing: run scripts/install-kubectl.sh"
    return [KUBECTL, "--kubeconfig", str(kubeconfig), "--context", CONTEXT, *args]


def run_kubectl(
    env: dict[str, str], kubeconfig: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """kubectl on Wicket's ``prod`` context, without a terminal."""
    return subprocess.run(
        kubectl_command(kubeconfig, *args),
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
