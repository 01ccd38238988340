"""When each identity's sessions began and ended, recorded without anyone waiting.

The registry commits every write to disk (an fsync: milliseconds, more on a busy disk).
The relay wrote one per session start and end on its loop, so while a fleet came back
after a restart the loop spent a third of its time waiting for the disk (the scale
benchmark: 2,000 sessions, tests/bench/scale_bench.py), holding pre-auth slots and
stalling everyone's handshakes; then in a thread, but each session still waited for its
own (and they queue on the store). Here a note costs a dict entry: one worker thread
writes the notes in turn (the latest per identity wins) through the relay's own store
(it is thread-safe), and no session waits for it.

Not a second connection: opening one in the same process closes a descriptor of the
database file, which drops every POSIX lock the process holds on it, the first
connection's too (``core.registry.sqlite._connect``); the registry then read as
"malformed" in tests/tunnel_security/test_attacks.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from core.errors import RegistryError
from core.registry.store import RegistryStore

log = logging.getLogger("wicket.relay")

#: How long ``stop()`` waits for what is still to be written.
FLUSH_TIMEOUT = 5.0


class LastSeen:
    """``note()`` from the loop; ``start()`` and ``stop()`` with the relay."""

    def __init__(self, store: Callable[[], RegistryStore]) -> None:
        self._store = store
        self._pending: dict[str, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._abandoned = False  # stop() gave up waiting: the store may be closed

    def start(self) -> None:
        self._abandoned = False
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wicket-seen")
        self._task = asyncio.get_running_loop().create_task(self._run())

    def note(self, fingerprint: str, when: dt.datetime) -> None:
        """Record that a session of this identity began or ended at ``when``."""
        if self._task is None or not fingerprint:
            return
        self._pending[fingerprint] = when
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            await loop.run_in_executor(self._pool, self._write, batch)

    def _write(self, batch: dict[str, dt.datetime]) -> None:
        """In the worker thread."""
        if self._abandoned:
            return  # never reopen a store its owner closed
        try:
            store = self._store()
            for fingerprint, when in batch.items():
                store.seen(fingerprint, when)
        except RegistryError as exc:  # a busy registry must not cost a session
            log.warning("cannot record when %d identities were last seen: %s", len(batch), exc)

    async def stop(self) -> None:
        """Write what is pending (at most ``FLUSH_TIMEOUT``); the store stays open."""
        task, pool = self._task, self._pool
        self._task = self._pool = None
        if task is None or pool is None:
            return
        task.cancel()  # a batch being written goes on; the rest follows it
        with contextlib.suppress(asyncio.CancelledError):
            await task
        batch, self._pending = self._pending, {}
        done = asyncio.wrap_future(pool.submit(self._write, batch))
        try:
            await asyncio.wait_for(asyncio.shield(done), FLUSH_TIMEOUT)
        except TimeoutError:
            self._abandoned = True
            log.warning("the last-seen times were not all written within %.0f s", FLUSH_TIMEOUT)
        pool.shutdown(wait=False)
