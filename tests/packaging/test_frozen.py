"""A frozen ``wicket`` (the PyInstaller bundle) writes its own executable into kubeconfig
exec entries: not ``sys.argv[0]``, not another ``wicket`` found on ``$PATH``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.errors import KubeconfigError
from core.paths import frozen_executable, wicket_command


def test_a_source_run_is_not_frozen() -> None:
    assert frozen_executable() is None


def test_a_source_run_names_the_wicket_beside_its_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "wicket").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/pytest"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert wicket_command() == str(venv / "wicket")
    (venv / "wicket").unlink()
    with pytest.raises(KubeconfigError, match="cannot find the `wicket` executable"):
        wicket_command()


def test_a_frozen_run_names_the_bundles_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "opt" / "wicket" / "wicket"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle))
    monkeypatch.setattr(sys, "argv", ["wicket", "kubeconfig", "add"])
    other = tmp_path / "bin"
    other.mkdir()
    (other / "wicket").write_text("#!/bin/sh\n")
    (other / "wicket").chmod(0o755)
    monkeypatch.setenv("PATH", str(other))  # another install's wicket, first on PATH
    assert frozen_executable() == str(bundle)
    assert wicket_command() == str(bundle)
