"""The leak check every async suite uses: no task and no file descriptor left behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> dict[int, str]:
    """What each open descriptor is (a path, ``socket:[inode]``, ``pipe:[inode]``)."""
    targets = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return targets


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Every test ends with no task left running and no file descriptor left open.

    Closing is asynchronous (transports close on the next loop passes), so the check
    waits up to two seconds for things to settle before it fails.
    """
    before = open_fds()
    targets = fd_targets()
    yield
    for _ in range(40):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not pending and open_fds() <= before:
            break
        await asyncio.sleep(0.05)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not pending, f"leaked tasks: {pending}"
    if open_fds() > before:
        new = {fd: t for fd, t in fd_targets().items() if targets.get(fd) != t}
        raise AssertionError(f"leaked file descriptors: {open_fds() - before}: {new}")
