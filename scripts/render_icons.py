"""Render the desktop's PNG icons from ``resources/wicket.svg`` (hicolor, every size the
icon theme spec expects of an application).

``.venv/bin/python scripts/render_icons.py``

The renders are committed (``resources/icons/hicolor/<N>x<N>/apps/``): the build stays
plain setuptools with no Qt among its build requirements, and the wheel, the .deb and
the bundle ship the same pixels. ``tests/gui/test_desktop_icons.py`` renders them again
and fails when they no longer match the SVG: run this after changing it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))
    from PySide6.QtGui import QGuiApplication

    from core.resources import APP_ID
    from core.service.freedesktop import ICON_SIZES, SCALABLE_SOURCE
    from gui.icons import render_png

    _app = QGuiApplication([sys.argv[0]])
    resources = REPO / "resources"
    for size in ICON_SIZES:
        target = resources / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(render_png(resources / SCALABLE_SOURCE, size))
        print(f"{target.relative_to(REPO)}  {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
