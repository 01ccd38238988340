"""The relay's cluster registry: registration, conflicts, removal, and its lookup cache
(the first two on both engines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError, RegistryError
from core.registry.sqlite import DB_FILE, SqliteStore
from core.registry.state import RelayState
from tests.support.registry import Registry


def test_register_conflict_unregister(registry: Registry) -> None:
    state = registry.state()
    state.register_cluster("prod", 16443)
    state.register_cluster("lab", None)
    with pytest.raises(ConfigError, match="already used by cluster prod"):
        state.register_cluster("stage", 16443)
    assert state.register_cluster("prod", None).public_port == 16443  # kept
    assert state.unregister_cluster("lab") is True
    assert state.unregister_cluster("lab") is False
    assert set(state.clusters()) == {"prod"}
    if registry.engine == "sqlite":
        assert (registry.state_dir / DB_FILE).stat().st_mode & 0o777 == 0o600


def test_a_change_by_another_process_is_seen(registry: Registry) -> None:
    """At once in SQLite (``data_version``); in PostgreSQL as the notification arrives."""
    running = registry.state()  # the relay's own instance, with its cache
    assert running.clusters() == {}
    generation = running.store.generation()
    registry.state().register_cluster("prod", None)  # `wicket relay join-token`
    assert registry.soon(lambda: set(running.clusters()) == {"prod"})
    assert running.store.generation() != generation
    other = registry.state()
    other.register_cluster("lab", None)
    assert registry.soon(lambda: set(running.clusters()) == {"prod", "lab"})
    other.register_cluster("lab", 16444)
    assert registry.soon(lambda: running.clusters()["lab"].public_port == 16444)
    running.unregister_cluster("prod")  # its own change: seen at once
    assert set(running.clusters()) == {"lab"}


def test_an_unchanged_registry_is_not_read_again(tmp_path: Path) -> None:
    """The relay looks clusters up per stream: one cheap pragma then, no table read."""
    running = RelayState(tmp_path)
    running.register_cluster("prod", None)
    running.clusters()
    store = running.store
    assert isinstance(store, SqliteStore)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    for _ in range(3):
        assert set(running.clusters()) == {"prod"}
    assert statements == ["PRAGMA data_version"] * 3
    RelayState(tmp_path).register_cluster("lab", None)
    assert set(running.clusters()) == {"prod", "lab"}
    assert any(s.startswith("SELECT") for s in statements[3:])


def test_a_broken_registry_is_a_clear_error(tmp_path: Path) -> None:
    state = RelayState(tmp_path)
    (tmp_path / "clusters.json").write_text("{not json")
    (tmp_path / "clusters.json").chmod(0o600)
    with pytest.raises(ConfigError, match="not a valid clusters file"):
        state.clusters()
    assert [p.name for p in tmp_path.iterdir()] == ["clusters.json"]


def test_a_second_store_in_the_process_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """The desktop app opens the registry beside its embedded relay's own connection.
    Opening it must not drop the relay's locks on the file (closing any descriptor of it
    drops all of the process's POSIX locks), or another process could, for one, take
    the live registry out of WAL mode under a reader."""
    relay = RelayState(tmp_path)
    relay.register_cluster("prod", None)
    store = relay.store
    assert isinstance(store, SqliteStore)
    store._conn.execute("BEGIN")
    store._conn.execute("SELECT count(*) FROM clusters").fetchall()  # a read in progress
    beside = RelayState(tmp_path)
    assert set(beside.clusters()) == {"prod"}
    beside.close()
    change = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "conn.execute('PRAGMA journal_mode=DELETE')\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", change, str(tmp_path / DB_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    store._conn.execute("COMMIT")
    relay.close()
    assert other.returncode != 0 and "database is locked" in other.stderr, other


def test_a_registry_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.write_bytes(b"")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / DB_FILE).symlink_to(elsewhere)
    with pytest.raises(RegistryError, match="not a regular file"):
        RelayState(state).clusters()
    assert elsewhere.read_bytes() == b""


def test_a_closed_registry_is_not_reopened_by_a_late_lookup(tmp_path: Path) -> None:
    """A lookup in flight when the relay stopped (a worker thread's) must not reopen the
    registry the stop closed: nothing would close it again (its files stayed open)."""

    def registry_fds() -> int:  # this test's (others' may still be open in the process)
        return sum(fd.resolve().is_relative_to(tmp_path) for fd in Path("/proc/self/fd").iterdir())

    state = RelayState(tmp_path / "relay")
    state.register_cluster("prod", None)
    state.close()
    assert registry_fds() == 0
    with pytest.raises(RegistryError, match="closed"):
        state.clusters()
    with pytest.raises(RegistryError, match="closed"):
        state.identity_revoked("00" * 32)
    assert registry_fds() == 0
    assert set(state.open().clusters()) == {"prod"}  # a start opens it again
    state.close()
