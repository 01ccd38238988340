"""``wicket desktop install|uninstall``: Wicket in the desktop's applications menu.

``install`` puts the desktop entry, the icons (hicolor, every size plus the SVG) and the
AppStream metainfo into ``$XDG_DATA_HOME`` (default ``~/.local/share``), the entry
running this ``wicket`` by its absolute path; ``uninstall`` removes them and the "Start
at login" entry. ``--system-root DIR`` stages the system-wide files under
``DIR/usr/share`` instead (``Exec=wicket``), for a distribution package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import add_command
from core.service import freedesktop


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        sub, "desktop", __doc__, help="add Wicket to (or remove it from) the applications menu"
    )
    actions = parser.add_subparsers(dest="desktop_command", metavar="ACTION", required=True)
    for name, func, what in (
        ("install", _install, "install the desktop entry, icons and metainfo"),
        ("uninstall", _uninstall, "remove what install put, and the autostart entry"),
    ):
        action = actions.add_parser(name, help=what, description=what)
        action.add_argument(
            "--system-root",
            type=Path,
            metavar="DIR",
            help="the system-wide layout under DIR/usr/share (for a package), not the user's",
        )
        action.set_defaults(func=func)


def _install(args: argparse.Namespace) -> int:
    if args.system_root is not None:
        written = freedesktop.stage_system(args.system_root)
        _show(f"Staged under {args.system_root} (Exec=wicket):", written)
        return 0
    command = freedesktop.launcher_path()
    written = freedesktop.install_user(command)
    _show(f"Installed for this user (Exec={command}):", written)
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    if args.system_root is not None:
        removed = freedesktop.uninstall(freedesktop.system_layout(args.system_root))
    else:
        removed = freedesktop.uninstall_user()
    if removed:
        _show("Removed:", removed)
    else:
        print("Nothing to remove: Wicket's desktop files were not installed there.")
    return 0


def _show(title: str, paths: list[Path]) -> None:
    print(title)
    for path in paths:
        print(f"  {path}")
