"""Running the ``wicket`` command line (or this interpreter) as a child process, the one
way tests do it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict, Unpack


class RunOptions(TypedDict, total=False):
    env: Mapping[str, str] | None
    cwd: Path | None
    timeout: float
    check: bool


def run_wicket(*args: str, **options: Unpack[RunOptions]) -> subprocess.CompletedProcess[str]:
    """``wicket ARGS…`` to completion, its output captured as text."""
    return run_python("-m", "core.cli", *args, **options)


def run_python(*args: str, **options: Unpack[RunOptions]) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``ARGS…`` to completion (60 s at most, a failure is not
    raised unless ``check``), its output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        env=options.get("env"),
        cwd=options.get("cwd"),
        capture_output=True,
        text=True,
        timeout=options.get("timeout", 60),
        check=options.get("check", False),
    )
