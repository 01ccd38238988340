"""Files the user asks the app to save (a join token, the agent's manifests)."""

from __future__ import annotations

from pathlib import Path

from core import fsutil
from core.errors import ConfigError


def save_user_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the user only (0600 from its
    first byte): a join token or manifests with a token in them are secrets."""
    try:
        fsutil.replace_atomic(path, text.encode())
    except OSError as exc:
        raise ConfigError(f"cannot save {path}: {exc.strerror or exc}") from exc
