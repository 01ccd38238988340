"""The relay's cluster registry: registration, conflicts, removal, and its stat cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.registry.state import CLUSTERS_FILE, RelayState


def test_register_conflict_unregister(tmp_path: Path) -> None:
    state = RelayState(tmp_path)
    state.register_cluster("prod", 16443)
    state.register_cluster("lab", None)
    with pytest.raises(ConfigError, match="already used by cluster prod"):
        state.register_cluster("stage", 16443)
    assert state.register_cluster("prod", None).public_port == 16443  # kept
    assert state.unregister_cluster("lab") is True
    assert state.unregister_cluster("lab") is False
    assert set(state.clusters()) == {"prod"}
    assert (tmp_path / CLUSTERS_FILE).stat().st_mode & 0o777 == 0o600


def test_a_change_by_another_process_is_seen(tmp_path: Path) -> None:
    running = RelayState(tmp_path)  # the relay's own instance, with its cache
    assert running.clusters() == {}
    RelayState(tmp_path).register_cluster("prod", None)  # `wicket relay join-token`
    assert set(running.clusters()) == {"prod"}
    other = RelayState(tmp_path)
    other.register_cluster("lab", None)
    st = (tmp_path / CLUSTERS_FILE).stat()
    os.utime(tmp_path / CLUSTERS_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert set(running.clusters()) == {"prod", "lab"}


def test_a_broken_registry_is_a_clear_error(tmp_path: Path) -> None:
    state = RelayState(tmp_path)
    (tmp_path / CLUSTERS_FILE).write_text("{not json")
    (tmp_path / CLUSTERS_FILE).chmod(0o600)
    with pytest.raises(ConfigError, match="not a valid clusters file"):
        state.clusters()
