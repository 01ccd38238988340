"""The instance lock between real processes: who holds it is named, a killed holder frees it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.errors import AlreadyRunning
from core.service.instance import LOCK_FILE, InstanceLock, hand_over
from tests.support.cli import run_wicket

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time; from pathlib import Path; "
    "from core.service.instance import InstanceLock; "
    "lock = InstanceLock.acquire(sys.argv[1], Path(sys.argv[2])); "
    "print('held', flush=True); time.sleep(120)"
)


@contextmanager
def holder(kind: str, directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock as ``kind`` (until it is killed or the block ends)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", HOLD, kind, str(directory)]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "held"
            yield proc
        finally:
            proc.kill()
            proc.wait(10)


def test_the_holder_is_named_and_a_sigkilled_holder_frees_the_lock(tmp_path: Path) -> None:
    directory = tmp_path / "wicket"
    with holder("up", directory) as proc:
        with pytest.raises(AlreadyRunning) as caught:
            InstanceLock.acquire("app", directory)
        assert (caught.value.kind, caught.value.pid) == ("up", proc.pid)
        assert f"`wicket up` is already running (pid {proc.pid})" in str(caught.value)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with InstanceLock.acquire("app", directory) as lock:  # nothing stale is left
            assert lock.held
            assert (directory / LOCK_FILE).read_text() == f"app {os.getpid()}\n"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / LOCK_FILE).stat().st_mode) == 0o600
    assert (directory / LOCK_FILE).read_text() == ""  # released: the record is cleared


def test_the_app_and_up_exclude_each_other_both_ways(tmp_path: Path) -> None:
    with (
        holder("app", tmp_path) as proc,
        pytest.raises(AlreadyRunning, match=f"desktop app is already running \\(pid {proc.pid}"),
    ):
        InstanceLock.acquire("up", tmp_path)
    with InstanceLock.acquire("up", tmp_path), pytest.raises(AlreadyRunning) as caught:
        InstanceLock.acquire("up", tmp_path)  # even from the same process
    assert caught.value.kind == "up"
    with pytest.raises(ValueError, match="unknown instance kind"):
        InstanceLock.acquire("demo", tmp_path)


def test_hand_over_without_a_listening_app_gives_up(tmp_path: Path) -> None:
    assert hand_over(tmp_path, timeout=0.3) is None


def test_wicket_up_refuses_to_run_beside_the_app(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    with InstanceLock.acquire("app", tmp_path / "wicket"):
        proc = run_wicket("up", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"wicket: the Wicket desktop app is already running (pid {os.getpid()}): only one "
        "Wicket serves your clusters at a time; quit it first"
    )
    assert not (tmp_path / ".local").exists()  # refused before it touched anything
