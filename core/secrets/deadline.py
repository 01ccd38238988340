"""Run a blocking backend call in a daemon thread, with a deadline.

A locked SecretService can block forever inside ``set_password`` (it waits for an
unlock prompt nobody answers). The default executor would then hold a worker that
``asyncio.run`` and interpreter exit wait for, so every call gets its own *daemon*
thread instead: the caller gets :class:`~core.errors.SecretTimeout` at the deadline,
and a thread that never returns does not keep the process alive.

A thread that is still stuck is remembered: while one is alive, new calls fail fast
instead of piling up more stuck threads (and more D-Bus connections) behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from core.errors import SecretTimeout

T = TypeVar("T")


class _Outcome(Generic[T]):
    """What the worker thread produced: a value or an exception, set once."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class DeadlineRunner:
    """Runs calls to one backend with a deadline; fails fast while one call is stuck."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._stuck: list[threading.Thread] = []

    @property
    def stuck(self) -> bool:
        """True while an earlier call that timed out has still not returned."""
        with self._lock:
            self._stuck = [t for t in self._stuck if t.is_alive()]
            return bool(self._stuck)

    def _start(
        self, what: str, fn: Callable[[], T], notify: Callable[[], None] | None
    ) -> tuple[threading.Thread, _Outcome[T]]:
        if self.stuck:
            raise SecretTimeout(f"{self._name}: an earlier call is still hanging; {what} refused")
        outcome: _Outcome[T] = _Outcome()

        def work() -> None:
            try:
                outcome.value = fn()
            except BaseException as exc:  # handed to the caller, re-raised there
                outcome.error = exc
            finally:
                outcome.done.set()
                if notify is not None:
                    notify()

        thread = threading.Thread(target=work, name=f"wicket-secrets-{what}", daemon=True)
        thread.start()
        return thread, outcome

    def _timed_out(self, thread: threading.Thread, what: str, timeout: float) -> SecretTimeout:
        with self._lock:
            self._stuck.append(thread)
        return SecretTimeout(f"{self._name}: {what} did not return within {timeout:g} s")

    def call(self, what: str, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` in a daemon thread; wait at most ``timeout`` seconds for it."""
        thread, outcome = self._start(what, fn, None)
        if not outcome.done.wait(timeout):
            raise self._timed_out(thread, what, timeout)
        return outcome.result()

    async def acall(self, what: str, fn: Callable[[], T], limit: float) -> T:
        """Like :meth:`call` (``limit`` is the timeout), but the loop keeps running."""
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(finished.set)

        thread, outcome = self._start(what, fn, notify)
        try:
            async with asyncio.timeout(limit):
                await finished.wait()
        except TimeoutError:
            raise self._timed_out(thread, what, limit) from None
        return outcome.result()
