"""``wicket cluster``: add, list, set and remove edit the desktop configuration and the
kubeconfig together; a refused add leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.format import utcnow
from core.pki.ca import create_ca
from core.service.config import DesktopConfig
from tests.support.home import fresh_home


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
