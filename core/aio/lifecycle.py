"""What every running part (relay, agent, client, endpoint, status server, heartbeat)
has in common: ``start()`` and ``stop()``, and one way to stop a background task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

#: How long a cancelled task may run on before it is cancelled again.
RECANCEL_INTERVAL = 0.5


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, so a stopped component leaves no
    task running; its ``CancelledError`` is the expected end, any other error is raised.

    The cancellation is repeated while the task runs on: on Python 3.11 a cancellation
    that arrives as an awaited result is ready can be swallowed (``asyncio.wait_for``
    returns the result instead, bpo-42130), and the task would then wait forever in its
    next await (seen: a relay client stopped just as its hello was answered).
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_INTERVAL)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


Step = Callable[[], Awaitable[None]]


def in_order(*parts: Component) -> tuple[Step, Step]:
    """``(start, stop)`` for several parts: started in order, stopped in reverse (what
    depends on an earlier part stops before it)."""

    async def start() -> None:
        for part in parts:
            await part.start()

    async def stop() -> None:
        for part in reversed(parts):
            await part.stop()

    return start, stop
