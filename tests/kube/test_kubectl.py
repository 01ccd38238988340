"""Interoperation with the real kubectl: it reads what Wicket writes, and shares locks."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.cli import main
from core.kube import KubeconfigPaths, load_merged
from tests.kube.helpers import CA_PEM, WICKET_BIN, foreign_kubeconfig

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl", path=str(REPO / ".venv" / "bin")) or shutil.which("kubectl")
LONG_WAIT = "--lock-timeout=60"
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (make test-deps)")


def _env(home: Path, kubeconfig: str | None) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    return env


def _kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def _add_args(cluster: str, port: int, ca_file: Path) -> list[str]:
    return [
        "kubeconfig",
        "add",
        f"--cluster={cluster}",
        f"--port={port}",
        f"--ca-file={ca_file}",
        "--tls-server-name=kubernetes.default.svc",
        "--exec-credential",
        f"--wicket-command={WICKET_BIN}",
    ]


@pytest.mark.parametrize("layout", ["single", "several", "first-missing", "explicit", "home"])
def test_kubectl_sees_the_context_wicket_switched_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    a, b, missing = tmp_path / "a", tmp_path / "b", tmp_path / "missing"
    a.write_text(foreign_kubeconfig(1).replace("ctx-0", "ctx-a").replace("c0", "ca"))
    b.write_text(foreign_kubeconfig(3, current=1))
    home = tmp_path / "home"
    home.mkdir()
    kubeconfig: str | None = {
        "single": f"{b}",
        "several": f"{a}:{b}",
        "first-missing": f"{missing}:{b}",
        "explicit": f"{a}:{b}",
        "home": None,
    }[layout]
    if layout == "home":
        monkeypatch.delenv("KUBECONFIG", raising=False)
        (home / ".kube").mkdir()
        b = home / ".kube" / "config"
        b.write_text(foreign_kubeconfig(3, current=1))
    else:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("HOME", str(home))
    env = _env(home, kubeconfig)
    explicit = [f"--kubeconfig={b}"] if layout == "explicit" else []
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA_PEM)
    assert main([*_add_args("prod", 7443, ca_file), *explicit]) == 0
    for context in ("wicket-prod", "ctx-2", "wicket-prod"):
        assert main(["kubeconfig", "use", context, *explicit]) == 0
        result = _kubectl(env, *explicit, "config", "current-context")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == context
    assert main(["kubeconfig", "use", "nope", *explicit]) == 1
    assert _kubectl(env, *explicit, "config", "current-context").stdout.strip() == "wicket-prod"
    assert not missing.exists()


def test_kubectl_reads_wicket_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv("KUBECONFIG", str(config))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA_PEM)
    assert main(_add_args("prod", 7443, ca_file)) == 0
    result = _kubectl(
        _env(tmp_path, str(config)),
        *("config", "view", "--raw", "--minify", "--context=wicket-prod", "-o", "json"),
    )
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    cluster = view["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:7443"
    assert cluster["tls-server-name"] == "kubernetes.default.svc"
    assert "insecure-skip-tls-verify" not in cluster
    exec_ = view["users"][0]["user"]["exec"]
    assert exec_["command"] == WICKET_BIN
    assert exec_["args"] == ["credential", "--cluster", "prod"]
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_["interactiveMode"] == "IfAvailable"
    assert exec_.get("provideClusterInfo", False) is False


def _kubectl_writer(
    env: dict[str, str], config: Path, names: list[str], retries: list[str]
) -> None:
    """Once Wicket's writers are at work, ``kubectl config set-context`` each name.

    kubectl never waits for a lock: it fails, and this retries.
    """
    deadline = time.monotonic() + 60
    while b"wicket-" not in config.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.005)
    rng = random.Random()
    for name in names:
        while True:
            result = _kubectl(env, "config", "set-context", name, "--cluster=c0", "--user=u0")
            if result.returncode == 0:
                break
            assert "lock: file exists" in result.stderr, result.stderr
            assert time.monotonic() < deadline, "kubectl never got the lock"
            retries.append(name)
            time.sleep(rng.uniform(0.005, 0.05))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    """10 Wicket processes and 10 kubectl runs write one file at the same time.

    The kubectl runs go one at a time among themselves: kubectl reads the file before
    taking the lock and writes back what it read, so two racing kubectls can drop each
    other's contexts (its own limitation). Wicket's writes keep the lock briefly after
    the replace (``WriteOptions.settle``) so a kubectl that read the old file fails
    cleanly instead of reverting them.
    """
    config = tmp_path / "config"
    config.write_text(foreign_kubeconfig(5))
    config.chmod(0o600)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA_PEM)
    env = _env(tmp_path, str(config))
    retries: list[str] = []
    kubectl_names = [f"k{n}" for n in range(10)]
    writer = threading.Thread(target=_kubectl_writer, args=(env, config, kubectl_names, retries))
    wicket = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.cli",
                *_add_args(f"w{n}", 7000 + n, ca_file),
                "--lock-timeout=60",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(10)
    ]
    writer.start()
    for proc in wicket:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    writer.join(timeout=90)
    assert not writer.is_alive()
    assert retries, "kubectl never met a Wicket lock: the writers did not overlap"
    view = load_merged(KubeconfigPaths.resolve(env=env, home=str(tmp_path)))
    names = {ctx.name for ctx in view.contexts}
    assert names == {f"ctx-{n}" for n in range(5)} | set(kubectl_names) | {
        f"wicket-w{n}" for n in range(10)
    }
    owned = {ctx.wicket_cluster for ctx in view.contexts if ctx.wicket_cluster}
    assert owned == {f"w{n}" for n in range(10)}
    listed = _kubectl(env, "config", "get-contexts", "-o", "name").stdout.split()
    assert set(listed) == names
