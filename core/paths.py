"""Where Wicket keeps its files on this machine (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "wicket"


def data_dir(*parts: str) -> Path:
    """``$XDG_DATA_HOME/wicket/<parts>`` (default ``~/.local/share/wicket/<parts>``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base, APP_NAME, *parts)
