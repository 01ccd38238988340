"""``wicket credential`` as kubectl runs it: a real subprocess, and a real kubectl."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from keyring.backends import SecretService

from core.cli.secrets import exec_credential, parse_exec_info
from core.errors import ConfigError
from core.secrets import Fallback, encrypted_file_store, open_secret_store, upstream_token_key
from core.secrets.encrypted_file import ScryptCost
from tests.secrets.fakes import new_backend

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).parents[2]
TOKEN = "upstream-tok-5f3a9c"
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
FAIL = "keyring.backends.fail.Keyring"


def _env(tmp_path: Path, backend: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHON_KEYRING_BACKEND": backend,
        "LANG": "C.UTF-8",
    }
    if "DBUS_SESSION_BUS_ADDRESS" in os.environ:
        env["DBUS_SESSION_BUS_ADDRESS"] = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    env.update(extra)
    return env


def _credential(env: dict[str, str], cluster: str = "prod") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "credential", "--cluster", cluster],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def _store_token_in_keyring() -> None:
    store = open_secret_store(Fallback.NOT_REMEMBERING, backend=new_backend(SecretService.Keyring))
    store.set_sync(upstream_token_key("prod"), TOKEN)


def test_exec_info_parsing() -> None:
    assert parse_exec_info(None, stdin_is_tty=False).api_version.endswith("/v1")
    info = parse_exec_info(
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",'
        ' "spec": {"interactive": true}}',
        stdin_is_tty=False,
    )
    assert info.api_version.endswith("/v1beta1")
    assert info.interactive
    for bad in ("{", "[]", '{"apiVersion": "client.authentication.k8s.io/v2"}'):
        with pytest.raises(ConfigError):
            parse_exec_info(bad, stdin_is_tty=True)
    assert json.loads(exec_credential("t")) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "t"},
    }


def test_plugin_reads_the_token_from_the_real_keyring(secret_service: str, tmp_path: Path) -> None:
    _store_token_in_keyring()
    proc = _credential(_env(tmp_path, SECRET_SERVICE))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN},
    }
    assert TOKEN not in proc.stderr

    info = '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}'
    proc = _credential(_env(tmp_path, SECRET_SERVICE, KUBERNETES_EXEC_INFO=info))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_missing_token_is_a_clear_error(secret_service: str, tmp_path: Path) -> None:
    proc = _credential(_env(tmp_path, SECRET_SERVICE), cluster="unknown")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no token stored for cluster 'unknown'" in proc.stderr


def test_no_keyring_and_no_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = _credential(_env(tmp_path, FAIL))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no secure keyring" in proc.stderr


def test_bad_exec_info_is_refused(tmp_path: Path) -> None:
    proc = _credential(_env(tmp_path, FAIL, KUBERNETES_EXEC_INFO='{"apiVersion": "x/v9"}'))
    assert proc.returncode == 1
    assert "unsupported ExecCredential apiVersion" in proc.stderr


def _encrypted_file_with_token(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "wicket" / "secrets.enc"
    store = encrypted_file_store("file-passphrase", path, cost=ScryptCost(12, 8, 1))
    store.set_sync(upstream_token_key("prod"), TOKEN)
    return path


def test_encrypted_file_needs_a_terminal(tmp_path: Path) -> None:
    _encrypted_file_with_token(tmp_path)
    proc = _credential(_env(tmp_path, FAIL))
    assert proc.returncode == 1
    assert "interactiveMode: IfAvailable" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, seconds: float) -> bytes:
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


def test_encrypted_file_with_passphrase_on_the_terminal(tmp_path: Path) -> None:
    _encrypted_file_with_token(tmp_path)
    info = '{"apiVersion": "client.authentication.k8s.io/v1", "spec": {"interactive": true}}'
    env = _env(tmp_path, FAIL, KUBERNETES_EXEC_INFO=info)
    command = f"{sys.executable} -m core.cli credential --cluster prod"
    # script(1) gives the plugin a controlling terminal, as kubectl's own would be.
    with subprocess.Popen(
        ["script", "-qec", command, "/dev/null"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stdin is not None
            prompt = _read_until(proc, b"Passphrase for", 15)
            proc.stdin.write(b"file-passphrase\n")
            proc.stdin.flush()
            output = prompt + _read_until(proc, b"}", 15)
            proc.stdin.close()
            assert proc.wait(timeout=10) == 0, output
        finally:
            proc.kill()
    assert b"file-passphrase" not in output, "the passphrase was echoed"
    reply = json.loads(output[output.index(b"{") :])
    assert reply["status"] == {"token": TOKEN}


def test_kubectl_uses_the_plugin(
    secret_service: str, tmp_path: Path, fake_apiserver: tuple[str, Path, list[str | None]]
) -> None:
    kubectl = ROOT / ".venv" / "bin" / "kubectl"
    if not kubectl.exists():
        kubectl = Path(shutil.which("kubectl") or "/nonexistent")
    if not kubectl.exists():
        pytest.skip("kubectl missing: run scripts/install-kubectl.sh")
    _store_token_in_keyring()
    url, ca_path, seen = fake_apiserver
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": url, "certificate-authority": str(ca_path)}}
        ],
        "users": [
            {
                "name": "wicket-prod",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": ["-m", "core.cli", "credential", "--cluster", "prod"],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "wicket-prod"}}],
        "current-context": "prod",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(path), "get", "--raw", "/version"],
        env=_env(tmp_path, SECRET_SERVICE),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["minor"] == "33"
    assert seen and set(seen) == {f"Bearer {TOKEN}"}
    assert TOKEN not in path.read_text()
