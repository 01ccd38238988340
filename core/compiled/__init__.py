"""The optional compiled hot path: mypyc builds of the modules every byte goes through.

The modules in ``MODULES`` are plain ``mypy --strict`` Python and stay the reference
implementation. ``python -m core.compiled build`` compiles them with mypyc (part of mypy,
a test dependency; needs a C compiler) into ``core/compiled/out/<python tag>/``, with a
manifest of the sources it was built from (``core.compiled.build``). When ``core`` is
first imported, ``install()`` puts a finder in front of the import system that loads those builds in
place of the sources, but only if

* the build exists for this interpreter,
* every source is byte for byte the one it was built from (sha256 in the manifest): an
  edited module runs as the source, never as a stale build, and
* ``WICKET_PURE_PYTHON`` is not set (to ``1``), which forces the pure modules.

Otherwise nothing changes: the pure modules are the fallback, and both are run by the
test suite (``tests/test_compiled.py``). ``state()`` says which one this process runs,
and why. ``python -m core.compiled status`` prints it.

Why these modules: per connection and per round trip the relay and the agent spend most
of their user-space time in the mux session, its frame decoder, the asyncio adapter,
the splice, the preamble and the per-stream setup of the public endpoint, the dialer and
the agent (tests/bench/README.md, "Per connection"); mypyc turns their attribute accesses
and the calls between them into C.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

#: The compiled set. Classes here are never subclassed outside it: an interpreted class
#: cannot inherit from a compiled one.
MODULES = (
    "core.protocol.mux.config",
    "core.protocol.mux.events",
    "core.protocol.mux.frames",
    "core.protocol.mux.session",
    "core.protocol.mux.stats",
    "core.protocol.mux.transitions",
    "core.protocol.preamble",
    "core.protocol.tls_hello",
    "core.aio.mux",
    "core.aio.splice",
    "core.aio.tunnel",
    "core.aio.public",
    "core.aio.agent",
)
GROUP = "wicket_compiled"  # mypyc's shared library: ``wicket_compiled__mypyc``
PURE_ENV = "WICKET_PURE_PYTHON"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding ``core``
MANIFEST = "manifest.json"


def build_dir() -> Path:
    """Where the build for this interpreter lives (one per ABI: ``cpython-311-x86_64…``)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or importlib.machinery.EXTENSION_SUFFIXES[0]
    tag = suffix.removeprefix(".").removesuffix(".so").removesuffix(".pyd")
    return Path(__file__).resolve().parent / "out" / tag


def source_of(module: str) -> Path:
    return PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class State:
    """What this process runs: ``compiled`` True means every module in ``MODULES``."""

    compiled: bool
    reason: str


_installed: list[State] = []


def state() -> State:
    """Which variant this process runs (the first ``install()`` decided it)."""
    return _installed[0] if _installed else State(False, "pure Python (not installed)")


def plan(
    directory: Path, environ: dict[str, str] | os._Environ[str]
) -> tuple[dict[str, Path], str]:
    """The files to load in place of the sources (empty: run pure), and why."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return {}, f"pure Python ({PURE_ENV}={environ[PURE_ENV]})"
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        return {}, "pure Python (no compiled build: python -m core.compiled build)"
    try:
        manifest = json.loads(manifest_file.read_text())
        files = {name: directory / rel for name, rel in manifest["files"].items()}
        digests: dict[str, str] = manifest["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {}, f"pure Python (unreadable build manifest: {exc})"
    if sorted(digests) != sorted(MODULES):
        return {}, "pure Python (the build is of another module list: rebuild)"
    for module in MODULES:
        source = source_of(module)
        if not source.is_file() or digest(source) != digests[module]:
            return {}, f"pure Python (stale build: {source.name} changed since; rebuild)"
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        return {}, f"pure Python (incomplete build: {missing[0]} is missing)"
    return files, f"compiled (mypyc, {len(MODULES)} modules)"


class _Finder(importlib.abc.MetaPathFinder):
    """Loads the compiled module files in place of their sources."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def install() -> State:
    """Use the compiled build if it is there, current and not refused (idempotent)."""
    if _installed:
        return _installed[0]
    files, reason = plan(build_dir(), os.environ)
    if files:
        sys.meta_path.insert(0, _Finder(files))
    _installed.append(State(bool(files), reason))
    return _installed[0]


def loaded_compiled() -> list[str]:
    """The modules of ``MODULES`` imported so far from a compiled file."""
    return [
        name
        for name in MODULES
        if (module := sys.modules.get(name)) is not None
        and not str(getattr(module, "__file__", "")).endswith(".py")
    ]
