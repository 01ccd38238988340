"""What ``wicket --version`` says: the version and the commit the code was built from.

The version has one source, ``core.__version__``: the distribution's version is read from
it at build time (pyproject.toml's ``dynamic = ["version"]``). The commit comes from git
when the code runs from a checkout (so an edited tree never reports an older build's
commit), else from ``core/_build_info.py``, which setup.py writes into every wheel and
sdist built from a checkout (``-dirty`` when tracked files differed from the commit).
"""

from __future__ import annotations

import importlib
import subprocess
from functools import cache
from pathlib import Path

from core import __version__

#: The folder holding ``core/``: a checkout's root, or site-packages.
ROOT = Path(__file__).resolve().parent.parent
BUILD_INFO = "core._build_info"
GIT_SECONDS = 5.0


def git_commit(root: Path) -> str | None:
    """The checkout's HEAD as 12 hex digits, ``-dirty`` appended when tracked files
    differ from it; None where git or the checkout is missing."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_SECONDS,
            check=True,
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


@cache
def commit() -> str | None:
    """The commit this code is, when known (looked up once per process)."""
    if (ROOT / ".git").exists():
        return git_commit(ROOT)
    try:
        info = importlib.import_module(BUILD_INFO)
    except ImportError:
        return None
    found = getattr(info, "COMMIT", None)
    return found if isinstance(found, str) and found else None


def version_text() -> str:
    """``0.1.0 (commit 0123456789ab)``, or the version alone where no commit is known."""
    found = commit()
    return f"{__version__} (commit {found})" if found else __version__
