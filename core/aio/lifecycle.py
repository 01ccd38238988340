"""What every running part (relay, agent, client, endpoint, status server, heartbeat)
has in common: ``start()`` and ``stop()``, and one way to stop a background task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, so a stopped component leaves no
    task running; its ``CancelledError`` is the expected end, any other error is raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
