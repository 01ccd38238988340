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

#: Modules that each add one or more sub-commands (``register(subparsers)``).
COMMAND_MODULES: tuple[str, ...] = (
    "core.cli.secrets",
    "core.cli.agent_bundle",
    "core.cli.agent_health",
    "core.cli.cluster",
    "core.cli.demo",
    "core.cli.desktop",
    "core.cli.kubeconfig",
    "core.cli.relay_bundle",
    "core.cli.status",
    "core.cli.tunnel",
    "core.cli.up",
)


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


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a headless sub-command; returns the process exit status."""
    parser = build_parser()
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
