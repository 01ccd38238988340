"""Wicket in the desktop's menus and at login (freedesktop.org specifications).

One installation is the desktop entry (``applications/<APP_ID>.desktop``), the icon in
the hicolor theme at every size the icon theme spec lists plus the scalable SVG, and the
AppStream metainfo (``metainfo/<APP_ID>.metainfo.xml``), all below a ``share`` folder:

- for the user (``wicket desktop install``): ``$XDG_DATA_HOME``, the entry's ``Exec=``
  the absolute path of the running ``wicket`` (a pipx install need not be on PATH);
  ``update-desktop-database`` and ``gtk-update-icon-cache`` refresh the caches that
  exist there, where those tools are installed (:func:`refresh_caches`);
- staged for a system package (``wicket desktop install --system-root DIR``):
  ``DIR/usr/share``, ``Exec=wicket``, files 0644 and folders 0755; no cache is
  refreshed (the package manager's triggers do that on the target machine).

Uninstalling removes exactly those files (and the autostart entry), then the folders
they leave empty. "Start at login" is the XDG autostart entry
``$XDG_CONFIG_HOME/autostart/<APP_ID>.desktop``, whose command starts the app with
:data:`AUTOSTART_FLAG` (the window hidden, only the tray icon).

Qt-free: the app's menu and the CLI call the same functions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core import cli, fsutil
from core.errors import ConfigError
from core.paths import config_home, data_home, wicket_command
from core.resources import APP_ID, resource

#: The hicolor sizes the icon theme spec expects of an application icon.
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
#: ``wicket --autostart``: the app started at login, its window hidden.
AUTOSTART_FLAG = cli.AUTOSTART_FLAG
ENTRY_NAME = f"{APP_ID}.desktop"
METAINFO_NAME = f"{APP_ID}.metainfo.xml"
#: The scalable icon's source (the PNGs are renders of it: scripts/render_icons.py).
SCALABLE_SOURCE = "wicket.svg"
FILE_MODE = 0o644
DIR_MODE = 0o755
TOOL_SECONDS = 30.0
#: Characters that make the Desktop Entry spec's Exec key quote an argument.
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


@dataclass(frozen=True)
class Layout:
    """Where an installation's files go below one ``share`` folder; uninstalling
    removes the folders they leave empty up to ``top`` (never ``top`` itself)."""

    share: Path
    top: Path

    @property
    def entry(self) -> Path:
        return self.share / "applications" / ENTRY_NAME

    @property
    def metainfo(self) -> Path:
        return self.share / "metainfo" / METAINFO_NAME

    @property
    def hicolor(self) -> Path:
        return self.share / "icons" / "hicolor"

    def icon(self, size: int | None) -> Path:
        """The PNG at ``size`` pixels, or the scalable SVG for None."""
        if size is None:
            return self.hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
        return self.hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"

    def files(self) -> list[Path]:
        icons = [self.icon(size) for size in (*ICON_SIZES, None)]
        return [self.entry, *icons, self.metainfo]


def user_layout() -> Layout:
    return Layout(data_home(), data_home())


def system_layout(root: Path) -> Layout:
    return Layout(root / "usr" / "share", root)


def autostart_path() -> Path:
    return config_home() / "autostart" / ENTRY_NAME


# -- the desktop entry -----------------------------------------------------------------


def launcher_path() -> str:
    """The absolute path of the running ``wicket`` (the one the kubeconfig's credential
    entries run too: ``core.paths.wicket_command``)."""
    command = wicket_command()
    if not (os.path.isfile(command) and os.access(command, os.X_OK)):
        raise ConfigError(
            f"cannot tell where the wicket command is ({command} is not it): "
            "run this from the installed `wicket`"
        )
    return command


def exec_argument(arg: str) -> str:
    """One argument of an ``Exec=`` value, quoted and escaped as the Desktop Entry spec
    asks (quoting, then the string type's own backslash escape)."""
    if "\n" in arg or "\r" in arg:
        raise ConfigError(f"a desktop entry cannot run a command with a line break: {arg!r}")
    text = arg.replace("%", "%%")
    if _RESERVED & set(text):
        for char in '\\"`$':
            text = text.replace(char, "\\" + char)
        text = f'"{text}"'
    return text.replace("\\", "\\\\")


def desktop_entry(command: str, *args: str) -> str:
    """The packaged desktop entry with ``Exec=`` running ``command`` with ``args``."""
    lines = resource(ENTRY_NAME).read_text(encoding="utf-8").splitlines()
    execs = [i for i, line in enumerate(lines) if line.startswith("Exec=")]
    if len(execs) != 1:
        raise ConfigError(f"the packaged {ENTRY_NAME} must have one Exec= line")
    lines[execs[0]] = "Exec=" + " ".join(exec_argument(a) for a in (command, *args))
    return "\n".join(lines) + "\n"


# -- installing ------------------------------------------------------------------------


def install(layout: Layout, command: str, *, system: bool = False) -> list[Path]:
    """Write the entry (``Exec=`` runs ``command``), the icons and the metainfo; return
    the files written. ``system``: 0644/0755 whatever the umask (a package's files)."""
    contents: dict[Path, bytes] = {layout.entry: desktop_entry(command).encode()}
    for size in ICON_SIZES:
        png = resource("icons", "hicolor", f"{size}x{size}", "apps", f"{APP_ID}.png")
        contents[layout.icon(size)] = png.read_bytes()
    contents[layout.icon(None)] = resource(SCALABLE_SOURCE).read_bytes()
    contents[layout.metainfo] = resource(METAINFO_NAME).read_bytes()
    for path, data in contents.items():
        _write(path, data, system=system)
    return list(contents)


def uninstall(layout: Layout) -> list[Path]:
    """Remove what :func:`install` wrote (the files there were) and the folders it
    leaves empty, up to ``layout.top``; return the files removed."""
    removed = []
    for path in layout.files():
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        removed.append(path)
    for path in layout.files():
        _remove_empty_parents(path.parent, layout.top)
    return removed


def install_user(command: str | None = None) -> list[Path]:
    """``wicket desktop install``: the entry, icons and metainfo in the user's XDG data
    folder, then the desktop's caches refreshed."""
    layout = user_layout()
    written = install(layout, command or launcher_path())
    refresh_caches(layout)
    return written


def uninstall_user() -> list[Path]:
    """``wicket desktop uninstall``: what ``install_user`` wrote, and the autostart entry."""
    layout = user_layout()
    removed = uninstall(layout)
    if set_autostart(False) is not None:
        removed.append(autostart_path())
    refresh_caches(layout)
    return removed


def stage_system(root: Path) -> list[Path]:
    """``wicket desktop install --system-root ROOT``: the system-wide files under
    ``ROOT/usr/share`` for a package (``Exec=wicket``, found on PATH)."""
    return install(system_layout(root), "wicket", system=True)


def refresh_caches(layout: Layout) -> None:
    """Refresh the desktop's caches that exist there, with their tools where installed.

    A cache that does not exist is not created (the folders are scanned without one):
    install and uninstall leave no file but Wicket's own. A tool's failure never fails
    them either: the files are in place, and a stale cache is ignored by its readers
    once the folder is newer (touched here).
    """
    commands = []
    if (layout.entry.parent / "mimeinfo.cache").is_file():
        commands.append(["update-desktop-database", "-q", str(layout.entry.parent)])
    if (layout.hicolor / "icon-theme.cache").is_file():
        commands.append(["gtk-update-icon-cache", "-q", "-f", "-t", str(layout.hicolor)])
    for name, *args in commands:
        tool = shutil.which(name)
        if tool is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                run = [tool, *args]
                subprocess.run(run, check=False, capture_output=True, timeout=TOOL_SECONDS)
    if layout.hicolor.is_dir():
        with contextlib.suppress(OSError):
            os.utime(layout.hicolor)  # a running desktop rescans a theme whose folder changed


# -- start at login --------------------------------------------------------------------


def autostart_enabled() -> bool:
    return autostart_path().is_file()


def set_autostart(enabled: bool, command: str | None = None) -> Path | None:
    """Write (``enabled``) or remove the XDG autostart entry; return its path when it
    was written or removed, None when there was nothing to remove."""
    path = autostart_path()
    if enabled:
        entry = desktop_entry(command or launcher_path(), AUTOSTART_FLAG)
        _write(path, entry.encode(), system=False)
        return path
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    _remove_empty_parents(path.parent, config_home())
    return path


# -- files -----------------------------------------------------------------------------


def _write(path: Path, data: bytes, *, system: bool) -> None:
    try:
        _make_dirs(path.parent, system=system)
        fsutil.replace_atomic(path, data, mode=FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _make_dirs(path: Path, *, system: bool) -> None:
    missing = []
    for parent in (path, *path.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    path.mkdir(parents=True, exist_ok=True)
    if system:
        for created in missing:
            created.chmod(DIR_MODE)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours to remove): what it holds stays
        folder = folder.parent
