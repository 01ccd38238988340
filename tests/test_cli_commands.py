"""The command set: a command line imports its own command's module and no other (kubectl
runs ``wicket credential`` for every request it makes), and the table that says which
module adds which command is the truth."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path

import pytest

from core.cli import COMMAND_MODULES, COMMANDS, build_parser, command_of
from tests.support.cli import run_python


def _registered(module: str) -> list[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    return list(sub.choices)


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_the_table_names_what_each_module_registers(module: str) -> None:
    assert _registered(module) == [c for c, m in COMMANDS.items() if m == module]


def test_every_command_module_is_in_the_table() -> None:
    modules = {p.stem for p in Path(importlib.import_module("core.cli").__path__[0]).glob("*.py")}
    with_register = {
        f"core.cli.{m}"
        for m in modules - {"__init__", "__main__"}
        if hasattr(importlib.import_module(f"core.cli.{m}"), "register")
    }
    assert with_register == set(COMMAND_MODULES)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["credential", "--cluster", "x"], "credential"),
        (["--log-level", "debug", "relay", "--listen", "x"], "relay"),
        (["--log-level=debug", "--loop", "asyncio", "agent"], "agent"),
        (["--loop", "relay", "up"], "up"),  # an option's value is not the command
        (["--help"], None),
        ([], None),
        (["nonsense", "credential"], None),  # unknown: the full parser says so
    ],
)
def test_the_command_a_line_names(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_one_command_parses_as_in_the_full_parser() -> None:
    argv = ["--log-level", "warning", "relay", "--state-dir", "/x", "--listen", "127.0.0.1:1"]
    alone = vars(build_parser(command_of(argv)).parse_args(argv))
    full = vars(build_parser().parse_args(argv))
    assert alone == full


def test_help_lists_every_command() -> None:
    proc = run_python("-m", "core.cli", "--help")
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout
    unknown = run_python("-m", "core.cli", "frobnicate")
    assert unknown.returncode == 2 and "invalid choice: 'frobnicate'" in unknown.stderr


def test_wicket_credential_imports_its_command_only(tmp_path: Path) -> None:
    """Through the console entry point, as kubectl runs it: none of the relay, the
    endpoints, the demo apiserver, the service layer or Qt is imported."""
    script = (
        "import json, sys\n"
        "from gui.launcher import main\n"
        "status = main(['credential', '--cluster', 'lab'])\n"
        "print(json.dumps([status, sorted(sys.modules)]))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    env.pop("WICKET_PASSPHRASE_FILE", None)
    proc = run_python("-c", script, env=env, cwd=tmp_path)
    status, modules = json.loads(proc.stdout.splitlines()[-1])
    assert status == 1 and "no token stored for cluster 'lab'" in proc.stderr
    assert "core.cli.secrets" in modules
    heavy = ("core.service", "core.aio.relay", "core.aio.endpoint", "core.demo", "PySide6")
    assert [m for m in modules if m.startswith(heavy)] == []
