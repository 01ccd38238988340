"""The core (``WicketService`` and everything it starts) on its own thread and loop.

The data plane must never wait for the UI, and the qasync loop costs about twice a plain
asyncio loop per round trip, so the core gets a stock asyncio loop on a thread of its
own. The GUI talks to it in two ways only:

* reads: ``latest`` is the service's last immutable ``ServiceSnapshot`` (an attribute
  read, no locking, no waiting); events and log records pile up in bounded deques the
  GUI drains on a timer;
* commands: ``submit(coro)`` runs a coroutine on the core loop and returns a
  ``concurrent.futures.Future``; ``await core.call(coro)`` wraps it for the GUI loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from core.service import ServiceEvent, ServiceSnapshot, WicketService

T = TypeVar("T")
log = logging.getLogger(__name__)
EVENT_BACKLOG = 2000
LOG_BACKLOG = 2000
START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0


class LogBuffer(logging.Handler):
    """Keeps formatted log records for the log view (thread-safe; never blocks a logger)."""

    def __init__(self, backlog: int = LOG_BACKLOG) -> None:
        super().__init__(logging.INFO)
        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=backlog)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def drain(self) -> list[logging.LogRecord]:
        out: list[logging.LogRecord] = []
        with contextlib.suppress(IndexError):
            while True:
                out.append(self.records.popleft())
        return out


class CoreThread:
    """Runs a ``WicketService`` on a private asyncio loop in a daemon thread."""

    def __init__(self, service: WicketService | None = None) -> None:
        self.service = service if service is not None else WicketService()
        self.events: collections.deque[ServiceEvent] = collections.deque(maxlen=EVENT_BACKLOG)
        self.log = LogBuffer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._events_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the thread and the service; returns once both run."""
        if self._thread is not None:
            raise RuntimeError("the core thread is already started")
        logging.getLogger("wicket").addHandler(self.log)
        self._thread = threading.Thread(target=self._run, name="wicket-core", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the core thread did not start")
        self.submit(self._start_service()).result(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the service and the loop, join the thread (idempotent; blocks the caller)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            self._detach()
            return
        try:
            self.submit(self._stop_service()).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._detach()

    async def stop_async(self, timeout: float = STOP_TIMEOUT) -> None:
        """``stop()`` for a caller on an event loop: the join happens in a worker thread."""
        await asyncio.to_thread(self.stop, timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- talking to the core -----------------------------------------------------------

    @property
    def latest(self) -> ServiceSnapshot:
        return self.service.latest

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the core thread is not running")
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the core loop (from any thread)."""
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except BaseException:
            coro.close()
            raise

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the core loop and await its result on the caller's loop."""
        return await asyncio.wrap_future(self.submit(coro))

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            _close_leftover_transports(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    async def _start_service(self) -> None:
        await self.service.start()
        self._events_task = asyncio.create_task(self._collect_events(), name="wicket-gui-events")

    async def _stop_service(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        await self.service.stop()

    async def _collect_events(self) -> None:
        async for event in self.service.subscribe():
            self.events.append(event)

    def _detach(self) -> None:
        logging.getLogger("wicket").removeHandler(self.log)


def _close_leftover_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Abort the socket transports still open on a loop about to close, and let them
    close their sockets. A connection the cancelled tasks left behind (seen: an agent's
    dial to a relay, cut mid-way as the loop stopped) kept its socket open past the
    loop's end: unclosed-socket warnings in a later test, a descriptor lost. The
    selector loop keeps its transports by descriptor (``_transports``, weak)."""
    transports = getattr(loop, "_transports", None)
    if not transports:
        return
    left = list(transports.values())
    for transport in left:
        if not transport.is_closing():
            log.debug("aborting a transport left open at the loop's end: %r", transport)
            transport.abort()
    if left:  # their connection_lost (pending ones too): the sockets close
        loop.run_until_complete(asyncio.sleep(0))
