"""Private files in a state directory: 0700 directory, 0600 files, atomic replacement.

Keys and token hashes are written with a temp file created 0600 from the start (never
chmod'ed after the fact, so there is no window where it is readable), fsync'ed, then
renamed over the target: a crash leaves the old file or the new one, never half of
either. ``OSError`` becomes ``PKIError`` naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core import fsutil
from core.errors import PKIError

MAX_FILE_SIZE = 1024 * 1024


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700, or tighten an existing one to 0700."""
    try:
        return fsutil.ensure_private_dir(path)
    except OSError as exc:
        raise PKIError(f"{path}: cannot create private directory: {exc.strerror}") from exc


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600, in a private directory."""
    ensure_private_dir(path.parent)
    try:
        fsutil.replace_atomic(path, data)
    except OSError as exc:
        raise PKIError(f"{path}: cannot write: {exc.strerror}") from exc


def read_file(path: Path, *, private: bool = False, max_size: int = MAX_FILE_SIZE) -> bytes:
    """Read a small state file; ``private`` refuses files others can read (like ssh)."""
    try:
        st = path.stat()
        if private and os.name == "posix" and st.st_mode & 0o077:
            raise PKIError(
                f"{path}: permissions {stat.S_IMODE(st.st_mode):o} are too open (want 600)"
            )
        if st.st_size > max_size:
            raise PKIError(f"{path}: file too large ({st.st_size} bytes)")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PKIError(f"{path}: missing") from exc
    except OSError as exc:
        raise PKIError(f"{path}: cannot read: {exc.strerror}") from exc
