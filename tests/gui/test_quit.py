"""Quit with a live kubectl exec through the demo asks first; the shutdown logs no error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from gui.aio import wait_until
from gui.shell import WicketApp
from tests.gui.conftest import started_app
from tests.gui.kubectl import kubectl


def open_count(app: WicketApp) -> int:
    """The open streams as the window shows them (Quit asks about these)."""
    snap = app.window.last_snapshot
    return snap.open_streams if snap is not None else 0


def quitting(app: WicketApp) -> bool:
    return app.quitting  # a call: mypy would keep an attribute narrowed by an assert


def quit_box(app: WicketApp) -> QMessageBox:
    (box,) = app.quit_boxes
    assert box.isVisible()
    return box


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_quit_with_a_live_exec_asks_first(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = await started_app(tmp_path, home)
    exec_run = None
    try:
        window = app.window
        assert window.tabs.currentWidget() is window.try_it  # no stream has run yet
        exec_run = asyncio.ensure_future(
            kubectl(home, "--context", "wicket-demo", "exec", "web", "--", "sleep", "60")
        )
        # kubectl holds two streams or more: the upgraded exec, the kept-alive GET of the
        # pod (and discovery's, on a first run).
        await wait_until(lambda: open_count(app) >= 2, 20, what="the exec's streams open")
        await asyncio.sleep(1)  # the exec runs
        live = open_count(app)
        assert f"{live} streams open" in window.status.text()
        window.quit_action.trigger()  # Ctrl+Q
        box = quit_box(app)
        assert box.text() == f"{live} streams are open through Wicket. Quit anyway?"
        assert "exec" in box.informativeText()
        box.button(QMessageBox.StandardButton.Cancel).click()
        assert not quitting(app) and not app.quit_boxes
        assert not exec_run.done()

        app.tray.quit_action.trigger()  # the tray's Quit asks the same
        box = quit_box(app)
        (quit_button,) = [b for b in box.buttons() if b.text() == "&Quit"]
        quit_button.click()
        assert quitting(app)
    finally:
        await app.shutdown()
    assert exec_run is not None
    result = await asyncio.wait_for(exec_run, 30)
    assert result.returncode != 0  # cut by the quit it was asked about
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
