"""Where Wicket keeps its files on this machine (XDG base directories)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from core import fsutil
from core.errors import KubeconfigError

APP_NAME = "wicket"


def data_home() -> Path:
    """``$XDG_DATA_HOME``, default ``~/.local/share`` (a relative value is ignored, as the
    XDG spec asks)."""
    return _xdg("XDG_DATA_HOME", ".local", "share")


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, default ``~/.config`` (a relative value is ignored)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def _xdg(variable: str, *default: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home().joinpath(*default)


def data_dir(*parts: str) -> Path:
    """``$XDG_DATA_HOME/wicket/<parts>`` (default ``~/.local/share/wicket/<parts>``)."""
    return data_home().joinpath(APP_NAME, *parts)


def frozen_executable() -> str | None:
    """The bundle's own executable when this is a frozen build (PyInstaller), else None.

    kubeconfig exec entries must name a program that exists without a Python: in the
    bundle ``sys.executable`` is that program (its real path, symlinks resolved), and
    ``sys.argv[0]`` or ``$PATH`` could name another install's ``wicket``.
    """
    return sys.executable if getattr(sys, "frozen", False) else None


def wicket_command() -> str:
    """The absolute path of the ``wicket`` kubectl runs for credentials (and a desktop
    entry launches): the bundle itself when frozen, the ``wicket`` this process was
    started as, the one beside this Python (a venv or pipx install), else ``$PATH``'s."""
    if frozen := frozen_executable():
        return frozen
    if os.path.basename(sys.argv[0]) == "wicket" and os.path.isfile(sys.argv[0]):
        return os.path.abspath(sys.argv[0])
    beside = Path(sys.executable).parent / "wicket"
    if beside.is_file():
        return str(beside)
    found = shutil.which("wicket")
    if found is None:
        raise KubeconfigError("cannot find the `wicket` executable (is Wicket installed?)")
    return os.path.abspath(found)


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/wicket``, else ``data_dir("run")``; created 0700 if missing.

    For files that live only while Wicket runs (the credential socket, the instance
    lock). The XDG runtime dir is per-user, private and emptied at logout; without it
    (no systemd login, WSL, ssh) the data dir stands in. A relative
    ``$XDG_RUNTIME_DIR`` is ignored, as the XDG spec asks. Only the owner may enter the
    directory: its 0700 mode is what keeps other users off the sockets inside.
    """
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    path = Path(base, APP_NAME) if os.path.isabs(base) else data_dir("run")
    return fsutil.ensure_private_dir(path)
