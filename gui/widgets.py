"""Small widget helpers the windows, panels and the wizard share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QDialog, QMessageBox, QPlainTextEdit, QWidget

D = TypeVar("D", bound=QDialog)


def mono_font() -> QFont:
    """The system's fixed-width font: commands, tokens, manifests and logs line up."""
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def mono_text(*, read_only: bool) -> QPlainTextEdit:
    edit = QPlainTextEdit()
    edit.setReadOnly(read_only)
    edit.setFont(mono_font())
    return edit


def show_kept(dialog: D, kept: list[D], closed: Callable[[D], object] | None = None) -> None:
    """Show a non-modal dialog, listed in ``kept`` until it finishes, then ``closed(it)``.

    Never ``exec()``: a nested event loop inside an asyncio task breaks qasync. The list
    is what keeps a dialog that nothing else references alive while it is open.
    """

    def finished(_code: int) -> None:
        if dialog in kept:
            kept.remove(dialog)
        if closed is not None:
            closed(dialog)

    dialog.finished.connect(finished)
    kept.append(dialog)
    dialog.show()


def confirm(
    parent: QWidget,
    kept: list[QMessageBox],
    text: str,
    *,
    details: str,
    action: str,
    then: Callable[[], object],
) -> QMessageBox:
    """Ask ``text`` with an ``action`` button and Cancel (the default); ``then()`` runs
    only when ``action`` was chosen. Window-modal, never ``exec()`` (see ``show_kept``)."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Wicket", text, parent=parent)
    box.setInformativeText(details)
    chosen = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.setWindowModality(Qt.WindowModality.WindowModal)

    def answered(_box: QMessageBox) -> None:
        if box.clickedButton() is chosen:
            then()
        box.deleteLater()

    show_kept(box, kept, answered)
    return box
