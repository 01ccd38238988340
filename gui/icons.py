"""Wicket's icons: SVGs from ``resources/`` (drawn by hand for Wicket), per state.

``resources/`` is the checkout's top-level folder, or its copy inside an installed wheel
(``core.service.resource_dir`` finds either). The desktop's PNG icons are renders of
``wicket.svg`` made by :func:`render_png` (scripts/render_icons.py).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from core.service import resource_dir

RESOURCES = resource_dir()
FALLBACK = {"online": "#2e9d5b", "degraded": "#d08a12", "offline": "#8a8f98"}


@cache
def state_icon(state: str) -> QIcon:
    """The app icon for ``online``, ``degraded`` or ``offline``."""
    path = RESOURCES / f"wicket-{state}.svg" if RESOURCES else None
    icon = QIcon(str(path)) if path is not None and path.exists() else QIcon()
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


def render_image(svg: Path, size: int) -> QImage:
    """``svg`` drawn on a transparent square of ``size`` pixels, antialiased."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"not an SVG Qt can draw: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(QColor(0, 0, 0, 0))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def render_png(svg: Path, size: int) -> bytes:
    """:func:`render_image` as PNG bytes (what the hicolor icon theme gets)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not render_image(svg, size).save(buffer, b"PNG"):
        raise ValueError(f"Qt could not encode {svg} at {size} px as PNG")
    buffer.close()
    return bytes(data.data())
