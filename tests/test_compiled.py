"""The compiled hot path (``core.compiled``): used only when current, and both variants run.

The suite runs on whatever ``core`` chose at import: the mypyc build when it exists and
matches the sources (``make test`` builds it when a C compiler is there), else the pure
modules. ``test_the_other_variant_passes`` then runs the mux, preamble, splice, tunnel
and interop tests again in a subprocess on the other one (``WICKET_PURE_PYTHON=1``, or
not), so both variants are exercised whenever a build exists.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import compiled

ROOT = Path(__file__).resolve().parents[1]
#: The tests that drive the compiled modules, run once per variant.
BOTH_VARIANTS = [
    "tests/protocol",
    "tests/aio/test_mux_streams.py",
    "tests/aio/test_frp_regression.py",
    "tests/aio/test_mux_stop_reading.py",
    "tests/aio/test_splice_close.py",
    "tests/aio/test_agent_dial.py",
    "tests/tunnel_security/test_normal_closes.py",
    "tests/interop/test_wicket_interop.py",
]


def fake_build(directory: Path, **digest_changes: str) -> None:
    """A build dir whose manifest names every module with its current digest."""
    files = {name: f"{name}.so" for name in compiled.MODULES}
    for rel in files.values():
        (directory / rel).write_bytes(b"")
    sources = {name: compiled.digest(compiled.source_of(name)) for name in compiled.MODULES}
    sources.update(digest_changes)
    manifest = {"files": files, "sources": sources}
    (directory / compiled.MANIFEST).write_text(json.dumps(manifest))


def test_a_current_build_is_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    files, reason = compiled.plan(tmp_path, {})
    assert set(files) == set(compiled.MODULES)
    assert reason.startswith("compiled")


def test_pure_python_when_asked(tmp_path: Path) -> None:
    fake_build(tmp_path)
    files, reason = compiled.plan(tmp_path, {compiled.PURE_ENV: "1"})
    assert files == {}
    assert compiled.PURE_ENV in reason
    assert compiled.plan(tmp_path, {compiled.PURE_ENV: "0"})[0]


def test_no_build_means_pure_python(tmp_path: Path) -> None:
    assert compiled.plan(tmp_path, {}) == ({}, compiled.plan(tmp_path, {})[1])
    assert "no compiled build" in compiled.plan(tmp_path, {})[1]


def test_a_stale_build_is_never_run(tmp_path: Path) -> None:
    """One source edited since the build: every module runs as its source."""
    fake_build(tmp_path, **{"core.aio.mux": "0" * 64})
    files, reason = compiled.plan(tmp_path, {})
    assert files == {}
    assert "stale build: mux.py changed" in reason


def test_an_incomplete_or_unreadable_build_is_not_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    (tmp_path / "core.aio.splice.so").unlink()
    assert compiled.plan(tmp_path, {})[0] == {}
    (tmp_path / compiled.MANIFEST).write_text("{not json")
    files, reason = compiled.plan(tmp_path, {})
    assert files == {}
    assert "unreadable" in reason


def test_the_loaded_modules_are_the_variant_reported() -> None:
    for name in compiled.MODULES:
        importlib.import_module(name)
    loaded = compiled.loaded_compiled()
    if compiled.state().compiled:
        assert sorted(loaded) == sorted(compiled.MODULES)
    else:
        assert loaded == []


def test_the_other_variant_passes() -> None:
    """Runs ``BOTH_VARIANTS`` on the variant this process does not run."""
    if not compiled.plan(compiled.build_dir(), {})[0]:
        pytest.skip("no current compiled build (python -m core.compiled build): pure only")
    env = dict(os.environ)
    if compiled.state().compiled:
        env[compiled.PURE_ENV] = "1"
        other = "pure Python"
    else:
        env.pop(compiled.PURE_ENV, None)
        other = "compiled"
    probe = subprocess.run(
        [sys.executable, "-c", "from core import compiled; print(compiled.state().reason)"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert probe.stdout.startswith(other), probe.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", *BOTH_VARIANTS],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{other}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
