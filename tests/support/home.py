"""A throwaway HOME for a test: no test touches the developer's files or keyring."""

from __future__ import annotations

from pathlib import Path

import pytest


def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, keyring: bool = True) -> Path:
    """``tmp_path/home`` as HOME, XDG data/config dirs and KUBECONFIG below it;
    ``keyring=False`` makes every keyring call fail (a machine without one)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("KUBECONFIG", str(home / ".kube" / "config"))
    if not keyring:
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    return home
