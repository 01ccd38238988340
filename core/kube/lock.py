"""client-go's kubeconfig lock files, so Wicket and kubectl never interleave writes.

kubectl creates ``<file>.lock`` with O_CREAT|O_EXCL for every file of the load
precedence, in sorted order, and deletes it afterwards; it fails at once when a lock
exists. Wicket takes the same files (and the symlink target's, for tools that name the
target) but waits a bounded time, then names the lock so the user can remove a stale
one. A process-wide mutex in front keeps threads of one process from polling each other.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator

from core.errors import KubeconfigError, KubeconfigLockError

_THREADS = threading.Lock()
_POLL = 0.01


def lock_paths(files: Iterable[str]) -> list[str]:
    """The lock files for ``files``: kubectl's name for each, plus the symlink target's."""
    names = set()
    for path in files:
        names.add(path + ".lock")
        names.add(os.path.realpath(path) + ".lock")
    return sorted(names)


@contextlib.contextmanager
def hold(files: Iterable[str], *, timeout: float) -> Iterator[None]:
    """Hold the locks of ``files`` (sorted order, so lockers never deadlock)."""
    deadline = time.monotonic() + timeout
    if not _THREADS.acquire(timeout=timeout):
        raise KubeconfigLockError(f"another thread kept the kubeconfig busy for {timeout:g}s")
    taken: list[str] = []
    try:
        for lock in lock_paths(files):
            _acquire(lock, deadline, timeout)
            taken.append(lock)
        yield
    finally:
        for lock in reversed(taken):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
        _THREADS.release()


def _acquire(lock: str, deadline: float, timeout: float) -> None:
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise KubeconfigLockError(
                    f"{lock}: lock file still exists after {timeout:g}s; if no kubectl or "
                    "wicket is writing this kubeconfig it is stale: delete it"
                ) from None
            time.sleep(_POLL)
            continue
        except OSError as exc:
            raise KubeconfigError(f"{lock}: cannot create lock file: {exc.strerror}") from None
        os.close(fd)
        return
