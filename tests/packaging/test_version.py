"""One version source (core/__init__.py, which the distribution's metadata reads) and
``wicket --version`` with the commit: git's in a checkout, the build's record otherwise."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from core import __version__, version
from tests.support.cli import run_wicket

REPO = Path(__file__).resolve().parents[2]


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "core.__version__"
    assert f"## [{__version__}] - " in (REPO / "CHANGELOG.md").read_text()
    metainfo = (REPO / "resources" / "io.github.kubewicket.Wicket.metainfo.xml").read_text()
    assert f'<release version="{__version__}"' in metainfo


def test_wicket_version_in_a_checkout_names_its_head() -> None:
    if not (REPO / ".git").exists():  # pragma: no cover
        pytest.skip("not a git checkout (an unpacked sdist)")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = run_wicket("--version")
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.strip()
    assert said.startswith(f"wicket {__version__} (commit {head[:12]}"), said
    assert said.endswith((f"{head[:12]})", f"{head[:12]}-dirty)")), said


def test_outside_a_checkout_the_builds_record_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recorded_build.py").write_text('COMMIT = "0123456789ab"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(version, "ROOT", tmp_path)  # no .git there: an installed copy
    monkeypatch.setattr(version, "BUILD_INFO", "recorded_build")
    version.commit.cache_clear()
    try:
        assert version.version_text() == f"{__version__} (commit 0123456789ab)"
        monkeypatch.setattr(version, "BUILD_INFO", "no_such_build_record")
        version.commit.cache_clear()
        assert version.version_text() == __version__
    finally:
        version.commit.cache_clear()
