"""The artifacts of ``make dist``, built once per session when missing or stale.

``packaging/build-bundle.sh`` and ``packaging/build-deb.sh`` skip the build while their
stamp matches the inputs, so a second session (or ``make dist`` before ``make test``)
pays nothing; a clean clone builds them here. They go to ``dist/``, which git ignores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
BUILD_TIMEOUT = 900  # PyInstaller on a busy 2-core machine
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


def _build(script: str) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "packaging" / script)],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    sys.stderr.write(f"\n{script}: {time.monotonic() - started:.1f} s\n")


@pytest.fixture(scope="session")
def bundle() -> Path:
    """``dist/bundle/wicket/wicket``, the frozen program."""
    _build("build-bundle.sh")
    program = DIST / "bundle" / "wicket" / "wicket"
    assert os.access(program, os.X_OK)
    return program


@pytest.fixture(scope="session")
def deb(bundle: Path) -> Path:
    """``dist/wicket_<version>_<arch>.deb``, made from that bundle."""
    _build("build-deb.sh")
    (found,) = DIST.glob("wicket_*.deb")
    return found


def bundle_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh user for the bundle: HOME and XDG dirs under ``home``, Qt offscreen, no
    PYTHONPATH (the bundle needs no checkout) and a keyring that stores nothing."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "KUBECONFIG": str(home / ".kube" / "config"),
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "LANG": "C.UTF-8",
    }
    return {**env, **extra}


@pytest.fixture
def user_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
