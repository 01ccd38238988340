"""Reading desktop entries as a launcher does, and the freedesktop.org validators."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

#: Accepted: the validators' notes that are not errors (the app id is given, CamelCase as
#: reverse-DNS ids commonly are; two main categories are what the product asks for).
ACCEPTED_DESKTOP_HINTS = {"contains more than one main category"}
ACCEPTED_APPSTREAM = {("P", "cid-contains-uppercase-letter")}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # pragma: no cover
        pytest.skip(f"{name} is not installed (scripts/install-system-test-deps.sh)")
    return found


def validate_entry(path: Path) -> None:
    """desktop-file-validate: no error or warning, only the accepted hints."""
    proc = subprocess.run(
        [tool("desktop-file-validate"), str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stdout.splitlines() if line.strip()]
    for note in notes:
        assert ": hint: " in note, note
        assert any(hint in note for hint in ACCEPTED_DESKTOP_HINTS), note


def appstream_issues(*args: str) -> set[tuple[str, str]]:
    """appstreamcli --strict --pedantic: (severity letter, tag) of every issue."""
    proc = subprocess.run(
        [tool("appstreamcli"), *args, "--no-net", "--strict", "--pedantic"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {(m[1], m[2]) for m in re.finditer(r"^\s*([EWIP]): \S+:\S*: (\S+)", proc.stdout, re.M)}


def exec_argv(entry: Path) -> list[str]:
    """The Exec= key read as the Desktop Entry spec says a launcher reads it: the string
    escapes first, then the quoting, then %% (a reader written from the spec, not from
    the writer)."""
    (value,) = [line[5:] for line in entry.read_text().splitlines() if line.startswith("Exec=")]
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    unescaped = re.sub(r"\\(.)", lambda m: escapes.get(m[1], "\\" + m[1]), value)
    argv: list[str] = []
    current: str | None = None
    chars = iter(unescaped)
    quoted = False
    for char in chars:
        if quoted and char == "\\":
            current = (current or "") + next(chars)
        elif char == '"':
            quoted = not quoted
            current = current or ""
        elif char == " " and not quoted:
            if current is not None:
                argv.append(current)
            current = None
        else:
            current = (current or "") + char
    assert not quoted, value
    if current is not None:
        argv.append(current)
    return [arg.replace("%%", "%") for arg in argv]
