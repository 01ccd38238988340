"""Typed helpers around qasync (which ships no type hints).

``async_slot`` is ``qasync.asyncSlot``: a coroutine method of a QObject becomes a Qt
slot that runs as a task on the GUI's qasync loop; an exception it raises reaches
``sys.excepthook`` (which ``gui.errors`` turns into a dialog).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import PySide6  # noqa: F401  (qasync must see PySide6 first)
import qasync

P = ParamSpec("P")
T = TypeVar("T")


def async_slot(
    *types: type,
) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, asyncio.Task[None]]]:
    """``@async_slot(...)`` on a QObject method (never on a free function)."""
    return cast(
        Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, asyncio.Task[None]]],
        qasync.asyncSlot(*types),
    )


def qasync_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for ``asyncio.Runner`` running on the QApplication's event loop."""
    from PySide6.QtWidgets import QApplication

    def make() -> asyncio.AbstractEventLoop:
        app = QApplication.instance() or QApplication([])
        return cast(asyncio.AbstractEventLoop, qasync.QEventLoop(app))

    return make


async def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``predicate`` on the running loop (no nested Qt event loop) until it holds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 (state lives on another thread)
                await asyncio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout:g} s: {what or predicate!r}") from None


def spawn(coro: Awaitable[T], tasks: set[asyncio.Task[Any]]) -> asyncio.Task[T]:
    """A task kept alive in ``tasks`` until it finishes."""
    task: asyncio.Task[T] = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel the tasks ``spawn`` kept in ``tasks`` and wait until each has ended."""
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
