"""One Wicket per user: the desktop app and ``wicket up`` exclude each other.

Both serve the user's clusters (the embedded relay's port, the demo and its
``wicket-demo`` context, the local endpoints' ports, the credential socket): two at once
would take each other's ports and rewrite each other's contexts, and the one that quits
last leaves kubectl pointing at a dead port. So each takes :class:`InstanceLock` first.

The lock is an ``flock`` on ``instance.lock`` in the user's private runtime directory
(``core.paths.runtime_dir``): the kernel drops it when its holder exits, however it exits
(SIGKILL included), so it is never stale. The holder writes ``<kind> <pid>`` into the
file, so a loser can say who runs. Other subcommands take no lock.

A running app also listens on ``app.sock`` beside the lock (a ``QLocalServer``): a
second launch of the app sends ``raise`` there (:func:`hand_over`), the first raises its
window and answers ``raised <pid>``, and the second exits 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from core import fsutil
from core.errors import AlreadyRunning, ConfigError
from core.paths import runtime_dir

LOCK_FILE = "instance.lock"
APP_SOCKET = "app.sock"
KINDS = ("app", "up")
RAISE_REQUEST = b"raise\n"
RAISED = "raised"
HAND_OVER_TIMEOUT = 10.0


def instance_dir() -> Path:
    """Where the lock and the app's socket live (0700, the user's only)."""
    return runtime_dir()


class InstanceLock:
    """The held lock of the one running app or ``wicket up`` (``release()`` or a ``with``)."""

    def __init__(self, fd: int, kind: str, directory: Path) -> None:
        self._fd = fd
        self.kind = kind
        self.directory = directory

    @classmethod
    def acquire(cls, kind: str, directory: Path | None = None) -> InstanceLock:
        """Take the lock as ``kind`` (``app`` or ``up``); ``AlreadyRunning`` names the holder."""
        if kind not in KINDS:
            raise ValueError(f"unknown instance kind {kind!r}")
        directory = directory or instance_dir()
        path = directory / LOCK_FILE
        try:
            fsutil.ensure_private_dir(directory)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, fsutil.PRIVATE_FILE_MODE)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open the instance lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder_kind, pid = _holder(fd)
            os.close(fd)
            raise AlreadyRunning(holder_kind, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{kind} {os.getpid()}\n".encode(), 0)
        return cls(fd, kind, directory)

    @property
    def socket_path(self) -> Path:
        return self.directory / APP_SOCKET

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Give the lock up (idempotent); the record is cleared first."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> tuple[str, int | None]:
    """The holder's ``(kind, pid)`` from the lock file (``("", None)`` if not written yet)."""
    try:
        kind, pid = os.pread(fd, 64, 0).decode("ascii").split()
        return kind, int(pid)
    except (OSError, ValueError):
        return "", None


def hand_over(directory: Path | None = None, timeout: float = HAND_OVER_TIMEOUT) -> int | None:
    """Ask the running app to raise its window; its pid, or None if it did not answer.

    Blocking (it runs before the second launch has an event loop). The first app may
    still be starting, its socket not yet listening: connecting is retried until
    ``timeout``.
    """
    path = str((directory or instance_dir()) / APP_SOCKET)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _ask_to_raise(path, max(deadline - time.monotonic(), 0.1))
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        except (OSError, ValueError):
            return None


def _ask_to_raise(path: str, timeout: float) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(RAISE_REQUEST)
        answer = sock.makefile("rb").readline(64).decode("ascii").split()
    if len(answer) != 2 or answer[0] != RAISED:
        raise ValueError(f"unexpected answer {answer!r}")
    return int(answer[1])
