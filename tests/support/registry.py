"""One registry, on either engine: the contract tests run against SQLite and PostgreSQL.

``registry`` is parametrized over both; the PostgreSQL case takes a fresh database on
the session's server (tests/support/postgres.py), which is started only if a test asks.
``open()`` gives a new connection each time, as each process (relay, CLI) has its own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.format import utcnow
from core.registry.location import StoreLocation
from core.registry.state import RelayState
from core.registry.store import RegistryStore
from tests.support.postgres import PostgresServer

ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Registry:
    engine: str
    state_dir: Path
    location: StoreLocation
    server: PostgresServer | None = None
    opened: list[RegistryStore | RelayState] = field(default_factory=list)

    def open(self, now: dt.datetime | None = None) -> RegistryStore:
        """A store on a connection of its own (closed after the test)."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = self.location.open(self.state_dir, now or utcnow())
        self.opened.append(store)
        return store

    def state(self, state_dir: Path | None = None) -> RelayState:
        """A ``RelayState`` on this registry (in its own state dir if given: a member)."""
        state = RelayState(state_dir or self.state_dir, self.location)
        self.opened.append(state)
        return state

    def soon(self, check: Callable[[], bool]) -> bool:
        """Whether ``check`` holds after another connection's commit: at once in SQLite
        (``data_version``), once the notification arrived in PostgreSQL."""
        return check() if self.engine == "sqlite" else eventually(check)

    def close(self) -> None:
        for opened in self.opened:
            opened.close()

    def store_args(self) -> list[str]:
        """The command-line options that name this registry (none for the default)."""
        if self.location.url is None:
            return []
        return ["--store", self.location.url, "--store-password-file",
                str(self.location.password_file)]  # fmt: skip


@pytest.fixture(params=ENGINES)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    state_dir = tmp_path / "state"
    if request.param == "sqlite":
        found = Registry("sqlite", state_dir, StoreLocation())
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url: str = request.getfixturevalue("postgres_database")
        location = StoreLocation(url, server.password_file(tmp_path))
        found = Registry("postgresql", state_dir, location, server)
    try:
        yield found
    finally:
        found.close()


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Whether ``check`` holds within ``timeout`` (another process's change reaches a
    PostgreSQL store by notification, a few milliseconds after its commit)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
