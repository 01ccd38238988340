"""The desktop's PNG icons (committed, resources/icons/hicolor) are renders of
resources/wicket.svg: rendered again here, they must still match (run
scripts/render_icons.py after changing the SVG)."""

from __future__ import annotations

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from core.service import APP_ID, resource_dir
from core.service.freedesktop import ICON_SIZES, SCALABLE_SOURCE
from gui.icons import render_image

#: Per channel, out of 255: room for another Qt's antialiasing, none for another drawing.
TOLERANCE = 6


def pixels(image: QImage) -> bytes:
    return bytes(image.convertToFormat(QImage.Format.Format_ARGB32).constBits())


def test_the_committed_pngs_are_renders_of_the_svg(qapp: QApplication) -> None:
    resources = resource_dir()
    assert resources is not None
    for size in ICON_SIZES:
        path = resources / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        committed = QImage(str(path))
        assert (committed.width(), committed.height()) == (size, size), path
        assert committed.hasAlphaChannel(), path
        fresh = pixels(render_image(resources / SCALABLE_SOURCE, size))
        assert any(fresh[3::4]), "the render is empty"
        worst = max(abs(a - b) for a, b in zip(pixels(committed), fresh, strict=True))
        assert worst <= TOLERANCE, f"{path} differs from the SVG's render by {worst}/255"
