"""``wicket kubeconfig``: messages and exit status for scripts."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from core.cli import main
from tests.kube.helpers import CA_PEM, WICKET_BIN, foreign_kubeconfig


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    path.write_text(foreign_kubeconfig(2))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ca.pem").write_bytes(CA_PEM)
    (tmp_path / "ca.b64").write_bytes(base64.b64encode(CA_PEM))
    return path


def _add(*extra: str) -> list[str]:
    return [
        *("kubeconfig", "add", "--cluster=prod", "--port=7443"),
        "--tls-server-name=kubernetes.default.svc",
        *extra,
    ]


def test_add_list_use_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = config.parent
    args = _add(f"--ca-data-file={tmp}/ca.b64", "--public-server=https://k.example")
    assert main([*args, "--exec-credential", f"--wicket-command={WICKET_BIN}"]) == 0
    assert f"wrote {config}" in capsys.readouterr().out
    assert main([*args, "--exec-credential", f"--wicket-command={WICKET_BIN}"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert main(["kubeconfig", "use", "wicket-prod"]) == 0
    capsys.readouterr()
    assert main(["kubeconfig", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["current_context"] == "wicket-prod"
    rows = {row["name"]: row for row in listing["contexts"]}
    assert rows["wicket-prod"]["current"] and rows["wicket-prod"]["wicket"]
    assert rows["wicket-prod-public"]["server"] == "https://k.example"
    assert not rows["ctx-0"]["wicket"] and rows["ctx-0"]["source"] == str(config)
    assert main(["kubeconfig", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["CURRENT", "WICKET", "NAME", "SERVER"]
    assert any(line.split()[:3] == ["*", "yes", "wicket-prod"] for line in table)
    assert main(["kubeconfig", "remove", "--cluster=prod"]) == 0
    assert "now unset" in capsys.readouterr().out


def test_user_reference(config: Path) -> None:
    tmp = config.parent
    assert main([*_add(f"--ca-file={tmp}/ca.pem"), "--user=u1"]) == 0
    assert "user: u1" in config.read_text()
    assert "exec" not in config.read_text().split("wicket-prod")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kubeconfig", "use", "nope"], "no context 'nope'"),
        (["kubeconfig", "remove", "--cluster=bad name"], "invalid cluster name"),
        (["kubeconfig", "add", "--cluster=prod", "--port=1", "--ca-file=/nonexistent",
          "--tls-server-name=x", "--user=u0"], "/nonexistent: cannot read"),
        (["kubeconfig", "list", "--kubeconfig=/nonexistent"], "no such kubeconfig"),
    ],
)  # fmt: skip
def test_errors_exit_1_with_a_message(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = config.read_bytes()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("wicket: ") and message in err
    assert config.read_bytes() == before


def test_foreign_collision_is_refused(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = config.read_text().replace("name: ctx-1", "name: wicket-prod")
    config.write_text(text)
    tmp = config.parent
    assert main([*_add(f"--ca-file={tmp}/ca.pem"), "--user=u0"]) == 1
    assert "not written by Wicket" in capsys.readouterr().err
    assert config.read_text() == text
