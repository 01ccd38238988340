"""``wicket cluster``: add, list, set and remove edit the desktop configuration and the
kubeconfig together; a refused add leaves nothing behind; a public server adds the
``wicket-NAME-public`` context (as the real kubectl reads it) and clearing it removes
exactly that."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.cli import main
from core.format import utcnow
from core.pki.ca import create_ca
from core.service.config import DesktopConfig
from tests.support.cli import run_wicket
from tests.support.home import fresh_home

REPO = Path(__file__).resolve().parents[1]
KUBECTL = shutil.which("kubectl", path=str(REPO / ".venv" / "bin")) or shutil.which("kubectl")
PUBLIC = "https://relay.example:7443"
FOREIGN = """apiVersion: v1
kind: Config
clusters:
- name: other  # kept as it is
  cluster: {server: "https://10.9.9.9:6443"}
users:
- name: other
  user: {token: not-a-real-token}
contexts:
- name: other
  context: {cluster: other, user: other}
current-context: other
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = fresh_home(tmp_path, monkeypatch, keyring=False)
    monkeypatch.delenv("WICKET_PASSPHRASE_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(create_ca(utcnow(), common_name="lab CA").cert_pem)
    return home


def config(home: Path) -> DesktopConfig:
    return DesktopConfig.load(home / ".local" / "share" / "wicket" / "app" / "clusters.json")


def kubeconfig(home: Path) -> str:
    path = home / ".kube" / "config"
    return path.read_text() if path.exists() else ""


def add(tmp_path: Path, name: str, *extra: str) -> int:
    ca = str(tmp_path / "ca.pem")
    return main(["cluster", "add", name, "--target", "10.0.0.1:6443", "--ca-file", ca, *extra])


def test_add_set_list_remove(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(tmp_path, "lab", "--port", "41001", "--join-token-out", "jt") == 0
    out = capsys.readouterr().out
    assert "kubectl --context wicket-lab" in out
    assert "wicket agent --token-file jt --target 10.0.0.1:6443" in out
    assert (tmp_path / "jt").stat().st_mode & 0o077 == 0
    assert "127.0.0.1:41001" in kubeconfig(home)
    assert config(home).relay_listen  # the embedded relay's address, picked and saved
    assert add(tmp_path, "lab") == 1  # the name is taken
    assert "already has a cluster called 'lab'" in capsys.readouterr().err
    assert add(tmp_path, "edge", "--public-server", "https://relay.example/k8s") == 1
    assert "--public-server: public server 'https://relay.example/k8s'" in capsys.readouterr().err
    assert config(home).cluster("edge") is None and "wicket-edge" not in kubeconfig(home)
    assert add(tmp_path, "edge", "--public-server", PUBLIC) == 0
    assert f"kubectl --context wicket-edge-public ({PUBLIC})" in capsys.readouterr().out
    assert config(home).cluster("edge").public_server == PUBLIC  # type: ignore[union-attr]
    assert main(["cluster", "list"]) == 0
    assert PUBLIC in capsys.readouterr().out
    assert main(["cluster", "set", "edge", "--mode", "inspect"]) == 0
    assert "no public context in inspect mode" in capsys.readouterr().out
    assert config(home).cluster("edge").public_server == PUBLIC  # type: ignore[union-attr]
    assert main(["cluster", "set", "edge", "--mode", "passthrough"]) == 0
    assert "wicket-edge-public" in kubeconfig(home)
    assert main(["cluster", "set", "edge", "--public-server", "http://relay.example"]) == 1
    assert "public server 'http://relay.example': not an https://" in capsys.readouterr().err
    assert config(home).cluster("edge").public_server == PUBLIC  # type: ignore[union-attr]
    assert main(["cluster", "set", "edge", "--no-public-server"]) == 0
    assert "wicket-edge-public" not in kubeconfig(home) and "wicket-edge" in kubeconfig(home)
    assert config(home).cluster("edge").public_server == ""  # type: ignore[union-attr]
    assert main(["cluster", "remove", "edge"]) == 0
    assert "wicket-edge" not in kubeconfig(home)

    assert main(["cluster", "set", "lab", "--port", "41002"]) == 0
    assert "127.0.0.1:41002" in kubeconfig(home) and "41001" not in kubeconfig(home)
    assert main(["cluster", "set", "lab", "--mode", "inspect"]) == 0
    assert "no kubectl context is written for inspect mode" in capsys.readouterr().out
    assert "wicket-lab" not in kubeconfig(home)

    assert main(["cluster", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["clusters"]
    assert (row["name"], row["port"], row["mode"], row["relay"]) == (
        "lab",
        41002,
        "inspect",
        "embedded",
    )
    assert main(["cluster", "list"]) == 0
    assert "lab" in capsys.readouterr().out

    assert main(["cluster", "remove", "lab"]) == 0
    assert config(home).clusters == []
    assert main(["cluster", "remove", "lab"]) == 1
    assert "no cluster 'lab'" in capsys.readouterr().err


def test_a_token_with_nowhere_to_go_adds_nothing(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    assert add(tmp_path, "lab", "--upstream-token-file", str(tmp_path / "token")) == 1
    err = capsys.readouterr().err
    assert "WICKET_PASSPHRASE_FILE" in err and "s3cret" not in err
    assert config(home).clusters == []
    assert "wicket-lab" not in kubeconfig(home)


def server_of(context: str) -> str:
    """The server the real kubectl resolves for ``context`` (its KUBECONFIG: the test's)."""
    assert KUBECTL is not None
    got = subprocess.run(
        [KUBECTL, "config", "view", "--minify", "--context", context, "-o",
         "jsonpath={.clusters[0].cluster.server}"],
        capture_output=True, text=True, timeout=30, check=False, env=dict(os.environ),
    )  # fmt: skip
    return got.stdout if got.returncode == 0 else f"error: {got.stderr.strip()}"


@pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (make test-deps)")
def test_a_public_server_is_a_context_of_its_own(tmp_path: Path, home: Path) -> None:
    kubeconfig = home / ".kube" / "config"
    kubeconfig.parent.mkdir(mode=0o700)
    kubeconfig.write_text(FOREIGN)
    ca = str(tmp_path / "ca.pem")
    added = run_wicket(
        "cluster", "add", "lab", "--target", "10.0.0.1:6443", "--ca-file", ca, "--port", "41001"
    )
    assert added.returncode == 0, added.stderr
    before = kubeconfig.read_text()
    assert server_of("wicket-lab") == "https://127.0.0.1:41001"
    assert server_of("wicket-lab-public").startswith("error:")

    got = run_wicket("cluster", "set", "lab", "--public-server", PUBLIC)
    assert got.returncode == 0, got.stderr
    assert f"kubectl --context wicket-lab-public ({PUBLIC})" in got.stdout
    assert server_of("wicket-lab-public") == PUBLIC
    assert server_of("wicket-lab") == "https://127.0.0.1:41001"
    assert server_of("other") == "https://10.9.9.9:6443"
    listed = run_wicket("cluster", "list", "--json")
    (row,) = json.loads(listed.stdout)["clusters"]
    assert row["public_server"] == PUBLIC

    got = run_wicket("cluster", "set", "lab", "--public-server", "")
    assert got.returncode == 0, got.stderr
    assert server_of("wicket-lab-public").startswith("error:")
    assert kubeconfig.read_text() == before  # every other entry as it was, byte for byte
    assert config(home).cluster("lab").public_server == ""  # type: ignore[union-attr]
