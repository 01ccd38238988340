"""Last-seen times go to the real registry from a worker thread, never from the loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from pathlib import Path

import pytest

from core.aio.lastseen import LastSeen
from core.errors import RegistryError
from core.format import utcnow
from core.pki.identity import Role
from core.pki.tokens import parse
from core.registry.state import RelayState
from core.registry.store import IdentityRecord, RegistryStore

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _identities(state: RelayState, count: int) -> list[str]:
    """``count`` agent identities in a real registry; their fingerprints."""
    now = utcnow()
    fingerprints = []
    for i in range(count):
        token = parse(state.join_token(f"c{i}", "127.0.0.1:7443", None, now))
        fp = f"{i:064x}"
        record = IdentityRecord(
            f"{i:x}", Role.AGENT, f"c{i}", fp, now, now + dt.timedelta(days=1), token.token_id
        )
        state.store.add_identity(record)
        fingerprints.append(fp)
    return fingerprints


def _seen(state: RelayState) -> dict[str, dt.datetime | None]:
    return {i.fingerprint: i.last_seen for i in state.identities()}


async def test_notes_are_written_by_a_worker_thread_the_latest_winning(tmp_path: Path) -> None:
    state = RelayState(tmp_path)
    a, b = _identities(state, 2)
    writers: set[str] = set()

    def store() -> RegistryStore:
        writers.add(threading.current_thread().name)
        return state.store

    seen = LastSeen(store)
    seen.start()
    try:
        seen.note(a, T0)
        seen.note(b, T0)
        seen.note(a, T0 + dt.timedelta(seconds=5))  # before the write: it wins
        async with asyncio.timeout(5):
            while None in _seen(state).values():
                await asyncio.sleep(0.01)
        seen.note(b, T0 + dt.timedelta(seconds=9))
    finally:
        await seen.stop()  # writes what is still pending
    assert _seen(state) == {a: T0 + dt.timedelta(seconds=5), b: T0 + dt.timedelta(seconds=9)}
    assert writers and all(name.startswith("wicket-seen") for name in writers), writers
    seen.note(a, T0)  # after stop: nothing, no error
    assert state.store is not None  # still open: it is the relay's
    state.close()


async def test_a_refusing_registry_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> RegistryStore:
        raise RegistryError("registry.db: database is locked")

    seen = LastSeen(broken)
    seen.start()
    seen.note("ab" * 32, T0)
    with caplog.at_level(logging.WARNING, logger="wicket.relay"):
        async with asyncio.timeout(5):
            while not caplog.records:
                await asyncio.sleep(0.01)
        await seen.stop()
    assert "cannot record when 1 identities were last seen" in caplog.records[0].getMessage()
