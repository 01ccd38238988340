"""The tunnel CLI's argument handling (the processes themselves: tests/tunnel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli.tunnel import host_port
from core.errors import ConfigError
from tests.support.cli import run_wicket


def test_token_commands_need_only_their_own_state_dir(tmp_path: Path) -> None:
    proc = run_wicket(
        *("relay", "join-token", "--state-dir", str(tmp_path)),
        *("--cluster", "prod", "--address", "relay.example.com:7443"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wicket-join-v1.")
    assert proc.stdout.strip() not in proc.stderr


def test_relay_without_state_dir_is_a_clear_error() -> None:
    proc = run_wicket("relay", "--listen", "127.0.0.1:0")
    assert proc.returncode == 1
    assert "--state-dir is required" in proc.stderr


def test_listen_addresses() -> None:
    assert host_port("127.0.0.1:0", any_port=True) == ("127.0.0.1", 0)
    assert host_port("[::1]:0", any_port=True) == ("::1", 0)
    assert host_port("[::1]:7443") == ("::1", 7443)
    assert host_port("localhost:16443") == ("localhost", 16443)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        host_port("127.0.0.1:0")
    with pytest.raises(ConfigError):
        host_port("no-port")
