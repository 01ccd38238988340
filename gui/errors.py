"""Errors nobody awaited (async slots, Qt virtual methods) become a visible dialog.

qasync hands an exception raised in an ``@asyncSlot`` to ``sys.excepthook``; the
default hook prints it to a terminal the user does not see. ``ErrorReporter`` logs it,
keeps it, and shows it in a non-modal message box (never ``exec()``: a nested event
loop inside an asyncio task breaks qasync).
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import WicketError
from gui.widgets import show_kept

log = logging.getLogger("wicket.gui")


def describe_error(exc: BaseException) -> str:
    """One line for people: Wicket's own errors carry their message, others their type."""
    if isinstance(exc, WicketError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ErrorReporter(QObject):
    """Shows unhandled exceptions. Signals: ``error_reported(str summary, str details)``."""

    error_reported = Signal(str, str)

    def __init__(self, parent_widget: QWidget | None = None, *, show_dialogs: bool = True):
        super().__init__()
        self.parent_widget = parent_widget
        self.show_dialogs = show_dialogs
        self.reported: list[str] = []
        self._previous = sys.excepthook
        self._boxes: list[QMessageBox] = []
        self.error_reported.connect(self._show)

    def install(self) -> None:
        sys.excepthook = self.excepthook

    def uninstall(self) -> None:
        if sys.excepthook == self.excepthook:
            sys.excepthook = self._previous

    def excepthook(
        self,
        kind: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        details = "".join(traceback.format_exception(kind, exc, tb))
        log.error("unhandled error: %s", details)
        self.report(describe_error(exc), details)

    def report(self, summary: str, details: str = "") -> None:
        """Record an error and show it (callable from any thread)."""
        self.reported.append(summary)
        self.error_reported.emit(summary, details)

    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        if not self.show_dialogs:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Wicket", summary, parent=self.parent_widget)
        if details:
            box.setDetailedText(details)
        box.setModal(False)
        show_kept(box, self._boxes, QMessageBox.deleteLater)
