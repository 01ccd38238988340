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


def test_a_client_token_needs_a_scope_and_out_writes_it_private(tmp_path: Path) -> None:
    state = ("--state-dir", str(tmp_path / "relay"))
    base = ("relay", "client-token", *state, "--name", "laptop", "--address", "r.test:7443")
    unscoped = run_wicket(*base)
    assert unscoped.returncode == 2
    assert "one of the arguments --cluster --all-clusters is required" in unscoped.stderr
    both = run_wicket(*base, "--cluster", "prod", "--all-clusters")
    assert both.returncode == 2
    out = tmp_path / "tokens" / "laptop.token"
    out.parent.mkdir(mode=0o755)
    proc = run_wicket(*base, "--cluster", "prod", "--cluster", "lab", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the token is in the file only
    assert out.read_text().startswith("wicket-client-v1.")
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.parent.stat().st_mode & 0o777 == 0o755  # the directory is left as it was
    listing = run_wicket("relay", "list", *state)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == [
        "ROLE",
        "NAME",
        "SCOPE",
        "LAST",
        "SEEN",
        "STATE",
    ]


def test_revoking_what_was_never_issued_is_a_clear_error(tmp_path: Path) -> None:
    state = ("--state-dir", str(tmp_path))
    proc = run_wicket("relay", "revoke", *state, "--client", "nobody")
    assert proc.returncode == 1
    assert "no unrevoked client identity named nobody" in proc.stderr


def test_a_token_file_that_is_not_text_is_a_clear_error(tmp_path: Path) -> None:
    token = tmp_path / "join.token"
    token.write_bytes(b"\xff\xfe wicket-join-v1.\x80")
    proc = run_wicket(
        "agent", "--token-file", str(token), "--target", "127.0.0.1:6443",
        "--state-dir", str(tmp_path / "agent"),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "is not a token (not text)" in proc.stderr
    assert "Traceback" not in proc.stderr
