"""The registry commands on a fleet's store: ``--store`` (before or after the
subcommand), no state directory needed, the password from a file only."""

from __future__ import annotations

import os
from pathlib import Path

from core.pki.tokens import parse
from tests.support.cli import run_wicket
from tests.support.postgres import PostgresServer
from tests.support.registry import Registry

ADDRESS = "fleet.example:443"


def _wicket(*args: str) -> str:
    proc = run_wicket(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_token_commands_on_either_store(registry: Registry) -> None:
    where = registry.store_args() or ["--state-dir", str(registry.state_dir)]
    token = _wicket("relay", "client-token", *where, "--name", "alice", "--address", ADDRESS,
                    "--cluster", "prod")  # fmt: skip
    assert parse(token.strip()).relay == ADDRESS
    (record,) = registry.open().tokens()
    assert (record.name, record.scope) == ("alice", frozenset({"prod"}))
    listing = _wicket("relay", *where, "list")  # the options before the subcommand
    assert listing.splitlines()[1:] == []  # no identity enrolled yet


def test_a_fleet_needs_no_state_dir_but_an_address(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    store = ["--store", postgres_database]
    password = ["--store-password-file", str(postgres_server.password_file(tmp_path))]
    proc = run_wicket("relay", "join-token", *store, *password, "--cluster", "prod")
    assert proc.returncode == 1
    assert "need --address HOST:PORT" in proc.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = str(tmp_path)  # no ~/.pgpass either
    args = ("relay", "join-token", *store, "--cluster", "prod", "--address", ADDRESS)
    proc = run_wicket(*args, env=env)
    assert proc.returncode == 1  # no password from anywhere: the server's refusal
    assert "password" in proc.stderr
    revoke = run_wicket("relay", "revoke", *store, *password, "--client", "nobody")
    assert revoke.returncode == 1
    assert "no unrevoked client identity named nobody" in revoke.stderr
