"""Stopping a background task: ``cancel_and_wait`` ends it even when a cancellation is
swallowed (Python 3.11's ``asyncio.wait_for`` can return a ready result instead)."""

from __future__ import annotations

import asyncio

import pytest

from core.aio.lifecycle import cancel_and_wait


async def test_a_swallowed_cancellation_is_repeated() -> None:
    forever = asyncio.get_running_loop().create_future()
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # as wait_for does when the result was ready
        await forever  # waits on, unless cancelled again

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.wait({stopping}, timeout=5)  # not cancelled from outside: it must end
    try:
        assert stopping.done(), "cancel_and_wait waits forever on a task that swallowed it"
        assert swallowed.is_set() and task.cancelled()
    finally:
        forever.cancel()
        stopping.cancel()
        await asyncio.gather(stopping, task, return_exceptions=True)


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_none_and_finished_tasks_are_fine() -> None:
    await cancel_and_wait(None)
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
