"""Files that must never be seen half-written or readable by others.

Every state file Wicket owns (keys, token hashes, the encrypted secrets file, the demo's
PKI, kubeconfigs) is written by :func:`replace_atomic`: a temp file in the same
directory, created with its final mode from the first byte (never chmod'ed after the
fact, so there is no window where it is readable), fsynced, renamed over the target,
and the directory fsynced. A crash leaves the old file or the new one, never half of
either.

A file that more than one Wicket process writes (the relay's ``relay.json``, the
desktop configuration the app and ``wicket cluster`` share) is changed only through
:func:`update_locked`: read, change and replace under an exclusive ``flock`` on
``<file>.lock``, so writers take turns and none loses another's update. Readers need no
lock: they see the old file or the new one.

These functions raise ``OSError``; each caller translates it into the error of its
domain (``PKIError``, ``SecretStoreError``, ``KubeconfigError``) at its boundary.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
TEMP_MARK = ".wicket-tmp-"


def ensure_private_dir(path: Path | str) -> Path:
    """Create ``path`` (and parents) with mode 0700, or tighten an existing one to 0700."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def temp_name(target: Path | str) -> str:
    """A fresh temp file name beside ``target``: ``.<name>.wicket-tmp-<random>.tmp``."""
    directory, base = os.path.split(os.fspath(target))
    return os.path.join(directory, f".{base}{TEMP_MARK}{secrets.token_hex(4)}.tmp")


def replace_atomic(
    target: Path | str, data: bytes, *, mode: int = PRIVATE_FILE_MODE, sync_dir: bool = True
) -> None:
    """Make ``target`` hold ``data``: the old bytes or the new ones after any crash.

    ``target`` is replaced, not followed: resolve a symlink first if it must survive.
    ``sync_dir=False`` leaves the directory fsync to the caller (several renames, one sync).
    """
    temp = temp_name(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away
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
    if sync_dir:
        fsync_dir(os.path.dirname(os.fspath(target)) or ".")


@contextlib.contextmanager
def locked(target: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``<target>.lock`` (0600, created when missing).

    ``flock`` rather than an ``O_EXCL`` lock file: the kernel releases it when its holder
    exits, however it exits, so a lock is never stale.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(f"{os.fspath(target)}.lock", flags, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def update_locked(
    target: Path | str, change: Callable[[bytes | None], bytes], *, mode: int = PRIVATE_FILE_MODE
) -> bytes:
    """Read-modify-write ``target`` with one writer at a time; returns the new bytes.

    ``change`` gets the current bytes (``None`` when the file is missing) and returns
    the new ones; it runs with the lock held, so it sees every earlier writer's update.
    """
    with locked(target):
        try:
            old: bytes | None = Path(target).read_bytes()
        except FileNotFoundError:
            old = None
        new = change(old)
        if new != old:
            replace_atomic(target, new, mode=mode)
        return new


def fsync_dir(directory: Path | str) -> None:
    """Make a rename in ``directory`` durable; not every platform can open a directory."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(target: Path | str, *, siblings: tuple[str, ...] = ()) -> None:
    """Temp files a killed writer of ``target`` left behind (call with its lock held).

    ``siblings`` are suffixes of files written beside it (``.wicket-backup-…``) whose
    temp files are removed too.
    """
    directory, base = os.path.split(os.fspath(target))
    prefixes = tuple(f".{base}{mark}" for mark in (TEMP_MARK, *siblings))
    for name in os.listdir(directory or "."):
        if name.startswith(prefixes) and TEMP_MARK in name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
