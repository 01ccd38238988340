"""Start at login: File → Start at login writes and removes the XDG autostart entry, and
the app started by it (``wicket --autostart``) keeps its window hidden where there is a
tray, and shows it where there is none."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from core.kube import KubeconfigPaths
from core.service import APP_ID, DesktopConfig
from core.service.config import config_path
from core.service.freedesktop import AUTOSTART_FLAG
from gui.backend import Backend
from gui.shell import WicketApp
from tests.gui.test_processes import app_env
from tests.support.cli import run_python
from tests.support.freedesktop import exec_argv, validate_entry


def wicket_app(tmp_path: Path, home: Path, **options: bool) -> WicketApp:
    """The app on a throwaway HOME, its demo off (nothing to start: the window is what
    these tests look at)."""
    state = tmp_path / "app"
    DesktopConfig.update(config_path(state), lambda c: setattr(c, "demo", False))
    paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
    return WicketApp(Backend(state, paths), show_dialogs=False, **options)


def test_the_action_writes_and_removes_the_autostart_entry(
    qapp: QApplication, tmp_path: Path, home: Path
) -> None:
    entry = home / ".config" / "autostart" / f"{APP_ID}.desktop"
    wicket = wicket_app(tmp_path, home)
    action = wicket.autostart_action
    assert action in wicket.window.file_menu.actions()
    assert action.isCheckable() and not action.isChecked()  # off by default

    action.trigger()
    assert action.isChecked()
    validate_entry(entry)
    command, flag = exec_argv(entry)
    assert flag == AUTOSTART_FLAG
    version = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("wicket ")  # the entry runs a real wicket
    assert wicket_app(tmp_path, home).autostart_action.isChecked()  # as the file says

    action.trigger()
    assert not action.isChecked()
    assert not entry.exists()
    assert wicket.reporter.reported == []


def test_a_failed_write_is_reported_and_the_action_stays_off(
    qapp: QApplication, tmp_path: Path, home: Path
) -> None:
    (home / ".config").mkdir()
    (home / ".config" / "autostart").write_text("a file where the folder should be")
    wicket = wicket_app(tmp_path, home)
    wicket.autostart_action.trigger()
    assert not wicket.autostart_action.isChecked()
    (report,) = wicket.reporter.reported
    assert report.startswith("Could not change Start at login: cannot write ")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tray", [True, False], ids=["with a tray", "without a tray"])
async def test_started_at_login_the_window_stays_hidden_where_there_is_a_tray(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, tray: bool
) -> None:
    # Fake at a boundary we do not own: the offscreen platform has no system tray.
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: tray))
    app = wicket_app(tmp_path, home, start_hidden=True)
    await app.start()
    try:
        assert app.window.isVisible() is not tray
        assert app.tray.icon.isVisible() is tray
        app.tray.open_action.trigger()  # the tray's Open shows it
        assert app.window.isVisible()
    finally:
        app.request_quit()
        await app.shutdown()


def test_wicket_autostart_starts_the_app_not_a_command(tmp_path: Path) -> None:
    """``wicket --autostart`` reaches the app (here stopped by a display it cannot use),
    not the command line's parser, which would refuse an unknown option."""
    env = app_env(tmp_path, QT_QPA_PLATFORM="nosuchplatform")
    code = f"from gui.launcher import main; raise SystemExit(main([{AUTOSTART_FLAG!r}]))"
    proc = run_python("-c", code, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("wicket: Qt cannot open a display"), proc.stderr
