"""Wicket's icons: SVGs from ``resources/`` (drawn by hand for Wicket), per state."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
FALLBACK = {"online": "#2e9d5b", "degraded": "#d08a12", "offline": "#8a8f98"}


@cache
def state_icon(state: str) -> QIcon:
    """The app icon for ``online``, ``degraded`` or ``offline``."""
    path = RESOURCES / f"wicket-{state}.svg"
    icon = QIcon(str(path)) if path.exists() else QIcon()
    if icon.pixmap(32, 32).isNull():
        icon = _disc(32, 4, QColor(FALLBACK.get(state, "#8a8f98")))
    return icon


@cache
def dot_icon(color: str) -> QIcon:
    return _disc(12, 1, QColor(color), QColor(color).darker(130))


def _disc(size: int, margin: int, fill: QColor, outline: QColor | None = None) -> QIcon:
    """An antialiased disc on a transparent square (outlined in the default pen if None)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(fill)
    if outline is not None:
        painter.setPen(outline)
    painter.drawEllipse(margin, margin, size - 2 * margin, size - 2 * margin)
    painter.end()
    return QIcon(pixmap)


def overall_state(states: list[str]) -> str:
    """The tray's state: online if every cluster is, offline if none is (the caller
    leaves out the clusters the user disconnected: that is a choice, not a fault)."""
    if not states or not any(s == "online" for s in states):
        return "offline"
    return "online" if all(s == "online" for s in states) else "degraded"
