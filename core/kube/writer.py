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
import secrets
import time

from core.errors import KubeconfigError

BACKUP_MARK = ".wicket-backup-"
TEMP_MARK = ".wicket-tmp-"


def write_file(path: str, data: bytes, *, old: bytes | None, backups: int = 3) -> None:
    """Atomically make ``path`` (or its symlink target) hold ``data``."""
    target = os.path.realpath(path)
    directory, base = os.path.split(target)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _remove_temps(directory, base)
        if old is not None and backups > 0:
            _replace(os.path.join(directory, base + BACKUP_MARK + _stamp()), old)
            _prune(directory, base, backups)
        _replace(target, data)
        _fsync_dir(directory)
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


def _replace(target: str, data: bytes) -> None:
    directory, base = os.path.split(target)
    temp = os.path.join(directory, f".{base}{TEMP_MARK}{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits away
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _remove_temps(directory: str, base: str) -> None:
    """Temp files a killed writer left behind (safe: we hold the lock)."""
    ours = (f".{base}{TEMP_MARK}", f".{base}{BACKUP_MARK}")
    for name in os.listdir(directory):
        if name.startswith(ours) and TEMP_MARK in name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


def _prune(directory: str, base: str, keep: int) -> None:
    for old in backup_files(os.path.join(directory, base))[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
