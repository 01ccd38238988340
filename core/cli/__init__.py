"""The headless ``wicket`` command line.

Each sub-command lives in its own module under ``core.cli`` and exposes
``register(subparsers)``; the module list below is the whole command set. The desktop
app is started by ``gui.launcher`` when no sub-command is given, so that ``core``
never imports the GUI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from core.aio.eventloop import LOOP_KINDS
from core.errors import WicketError
from core.logs import setup_logging

#: Each sub-command and the module that adds it (``register(subparsers)``): the whole
#: command set. A command line names one, and only its module is imported: kubectl runs
#: ``wicket credential`` for every request it makes, and importing every command's
#: dependencies (the relay, the endpoints, the demo apiserver) tripled its start-up.
#: tests/test_cli_commands.py checks this table against what the modules register.
COMMANDS: dict[str, str] = {
    "credential": "core.cli.secrets",
    "agent-bundle": "core.cli.agent_bundle",
    "agent-health": "core.cli.agent_health",
    "cluster": "core.cli.cluster",
    "demo": "core.cli.demo",
    "desktop": "core.cli.desktop",
    "kubeconfig": "core.cli.kubeconfig",
    "relay-bundle": "core.cli.relay_bundle",
    "status": "core.cli.status",
    "relay": "core.cli.tunnel",
    "agent": "core.cli.tunnel",
    "connect": "core.cli.tunnel",
    "up": "core.cli.up",
}

#: Every module that adds commands, in ``--help`` order.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))

#: ``wicket --autostart``: the app started at login, its window hidden (no sub-command).
AUTOSTART_FLAG = "--autostart"

#: The options before the sub-command that take a value (``--log-level debug``).
_GLOBAL_WITH_VALUE = ("--log-level", "--loop")


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    module_doc: str | None,
    **options: Any,
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` description is its module docstring's first
    paragraph (one text for both readers of the module)."""
    description = module_doc.split("\n\n")[0] if module_doc else None
    return sub.add_parser(name, description=description, **options)


class _Version(argparse.Action):
    """``--version``: the commit is looked up only when asked for (git, in a checkout)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from core.version import version_text

        print(f"wicket {version_text()}")
        parser.exit()


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command a command line names (the first word after the global options),
    or None when it names none, or one this table does not know."""
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``command``) of that command's module alone."""
    parser = argparse.ArgumentParser(
        prog="wicket",
        description="Wicket: tunnels to Kubernetes apiservers in private networks.",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version and commit, then exit"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=list(LOOP_KINDS),
        help="event loop (default auto: uvloop for relay and agent where installed,"
        " asyncio otherwise)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = COMMAND_MODULES if command not in COMMANDS else (COMMANDS[command],)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a headless sub-command; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except WicketError as exc:
        print(f"wicket: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result
