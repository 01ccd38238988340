"""The app as real processes: one instance (a second launch hands over and exits 0), the
app and ``wicket up`` exclude each other, and a display Qt cannot use is one sentence."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.service.instance import APP_SOCKET, LOCK_FILE, InstanceLock

REPO = Path(__file__).resolve().parents[2]
LAUNCH = "from gui.launcher import main; raise SystemExit(main([]))"


def app_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh user: HOME, XDG dirs and kubeconfig under ``home``; Qt offscreen."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "KUBECONFIG": str(home / ".kube" / "config"),
        "PYTHONPATH": str(REPO),
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "LANG": "C.UTF-8",
    }
    return {**env, **extra}


def launch(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def running_app(env: dict[str, str], lock: Path) -> Iterator[subprocess.Popen[str]]:
    """The app in its own process, until it holds the instance lock; SIGTERM at the end."""
    command = [sys.executable, "-c", LAUNCH]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while not _holds(lock, proc.pid):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the app did not take the instance lock"
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _holds(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text() == f"app {pid}\n"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_second_launch_raises_the_first_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    runtime = tmp_path / "r"
    runtime.mkdir(mode=0o700)
    env = app_env(home, XDG_RUNTIME_DIR=str(runtime))
    lock = runtime / "wicket" / LOCK_FILE
    lock.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as stale:  # as a SIGKILLed app leaves its socket
        stale.bind(str(lock.parent / APP_SOCKET))
    with running_app(env, lock) as first:
        second = launch(env)
        assert second.returncode == 0, second.stderr
        assert f"already runs (pid {first.pid}); its window was brought to the front" in (
            second.stdout
        )
        assert first.poll() is None  # the first answered the raise and runs on
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "Traceback" not in err, err  # a SIGTERM early in the start included
    assert lock.read_text() == ""  # released on the way out


@pytest.mark.timeout(60)
def test_the_app_does_not_start_while_wicket_up_runs(tmp_path: Path) -> None:
    env = app_env(tmp_path)
    no_runtime_dir = tmp_path / ".local" / "share" / "wicket" / "run"  # the fallback
    with InstanceLock.acquire("up", no_runtime_dir):
        proc = launch(env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"wicket: `wicket up` is already running (pid {os.getpid()}): only one Wicket "
        "serves your clusters at a time; quit it first"
    )


def _unused_x_display() -> str:
    number = next(
        n
        for n in range(70, 200)
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists()
    )
    return f":{number}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("platform", "says"),
    [
        ("xcb", "wicket: no X server answers on DISPLAY="),
        (
            "nosuchplatform",
            "wicket: Qt cannot open a display (Could not find the Qt platform plugin "
            '"nosuchplatform"',
        ),
    ],
)
def test_a_display_qt_cannot_use_is_one_sentence_and_status_2(
    tmp_path: Path, platform: str, says: str
) -> None:
    env = app_env(tmp_path, QT_QPA_PLATFORM=platform, DISPLAY=_unused_x_display())
    proc = launch(env)
    assert proc.returncode == 2, proc.stderr  # not an abort (-6)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(says)
    assert "wicket up" in lines[0]
    assert "xcb-cursor0" not in proc.stderr
