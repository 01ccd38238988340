"""The ``wicket`` console entry point.

With a sub-command it runs the headless CLI (``core.cli``) without importing Qt or the
service layer (kubectl runs ``wicket credential`` for every request it makes); with
none (or ``--autostart``, how "Start at login" starts it) it starts the desktop app (or,
when the app already runs, raises its window).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.cli import AUTOSTART_FLAG
from core.cli import main as cli_main  # (its commands import what they use, no more)
from core.errors import AlreadyRunning, DisplayUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "app":
        args = args[1:]
    elif args and args[0] != AUTOSTART_FLAG:
        return cli_main(args)
    from gui.app import run_app  # Qt is imported only for the desktop app

    try:
        return run_app(args)
    except DisplayUnavailable as exc:
        print(f"wicket: {exc}", file=sys.stderr)
        return 2
    except AlreadyRunning as exc:
        print(f"wicket: {exc}", file=sys.stderr)
        return 1
