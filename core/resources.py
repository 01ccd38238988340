"""Wicket's resource files: the icons, the desktop entry, the AppStream metainfo.

They live in the top-level ``resources/`` folder of a checkout; setup.py copies that
folder into the wheel as ``core/resources/``. :func:`resource_dir` finds either, the
installed copy first.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError

#: Wicket's application id (freedesktop.org and AppStream): the desktop entry, the icon
#: and the metainfo are named after it, and the app gives it to the window system.
APP_ID = "io.github.kubewicket.Wicket"
#: A file only Wicket's resources have, so no other ``resources/`` folder is taken.
MARKER = f"{APP_ID}.desktop"
_CORE = Path(__file__).resolve().parent
CANDIDATES = (_CORE / "resources", _CORE.parent / "resources")


def resource_dir() -> Path | None:
    """The folder of Wicket's resources, or None in an installation without them."""
    return next((d for d in CANDIDATES if (d / MARKER).is_file()), None)


def resource(*parts: str) -> Path:
    """A resource file that must exist; ConfigError says what is missing otherwise."""
    base = resource_dir()
    if base is None:
        raise ConfigError(
            "this installation of Wicket has no resource files (icons, desktop entry): "
            "install it from its wheel or run it from a checkout"
        )
    path = base.joinpath(*parts)
    if not path.is_file():
        raise ConfigError(f"a resource file of Wicket is missing: {path}")
    return path
