"""Replace a kubeconfig so that a crash leaves the old or the new file, byte for byte.

client-go rewrites in place; a kill mid-write leaves half a file. Here the new bytes go
to a temp file in the same directory (mode 0600, fsynced), ``os.replace`` swaps it in and
the directory is fsynced. Symlinks are resolved first so the link survives. The previous
bytes are kept as a few timestamped backups, because a correct write of a wrong edit is
still a loss to the user. Call with the kubeconfig lock held.
"""

from __future__ import annotations

import contextlib
import os
import time

from core import fsutil
from core.errors import KubeconfigError

BACKUP_MARK = ".wicket-backup-"
TEMP_MARK = fsutil.TEMP_MARK


def write_file(path: str, data: bytes, *, old: bytes | None, backups: int = 3) -> None:
    """Atomically make ``path`` (or its symlink target) hold ``data``."""
    target = os.path.realpath(path)
    directory, base = os.path.split(target)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fsutil.remove_stale_temps(target, siblings=(BACKUP_MARK,))
        if old is not None and backups > 0:
            fsutil.replace_atomic(
                os.path.join(directory, base + BACKUP_MARK + _stamp()), old, sync_dir=False
            )
            _prune(directory, base, backups)
        fsutil.replace_atomic(target, data)
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot write: {exc.strerror or exc}") from None


def backup_files(path: str) -> list[str]:
    """This file's backups, oldest first."""
    directory, base = os.path.split(os.path.realpath(path))
    names = sorted(n for n in os.listdir(directory) if n.startswith(base + BACKUP_MARK))
    return [os.path.join(directory, n) for n in names]


def _stamp() -> str:
    ns = time.time_ns()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _prune(directory: str, base: str, keep: int) -> None:
    for old in backup_files(os.path.join(directory, base))[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)
