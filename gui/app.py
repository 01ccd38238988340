"""Desktop app start-up: display check, QApplication, the main window."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from core.errors import DisplayUnavailable


def check_display(environ: dict[str, str] | None = None, platform: str = sys.platform) -> None:
    """Fail early, with a message a person can act on, when there is no display."""
    env = os.environ if environ is None else environ
    if platform != "linux" or env.get("QT_QPA_PLATFORM"):
        return
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return
    raise DisplayUnavailable(
        "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). "
        "Start Wicket from a desktop session, or use the headless commands "
        "(`wicket --help`); QT_QPA_PLATFORM=offscreen runs the app without a screen."
    )


def run_app(argv: Sequence[str]) -> int:
    check_display()
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication([sys.argv[0], *argv])
    app.setApplicationName("Wicket")
    app.setOrganizationName("Wicket")
    window = MainWindow()
    window.show()
    return app.exec()
