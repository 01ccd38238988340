"""The build steps pyproject.toml cannot declare (everything else is declared there).

- ``build_py`` puts the top-level ``resources/`` folder (icons, the desktop entry, the
  AppStream metainfo) into the wheel as ``core/resources/``, where ``core.resources``
  finds it in an installed copy, and writes ``core/_build_info.py`` with the commit the
  build was made from (``core.version``).
- ``sdist`` writes the same ``core/_build_info.py`` into the source archive, so a wheel
  built from it, where there is no git, carries the commit too.
- Every by-product (``build/``, ``*.egg-info``) goes to a temporary directory removed when
  the build ends: building leaves the work tree as it was.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core.version import git_commit  # noqa: E402 (the tree's own code, found above)

RESOURCES = HERE / "resources"
SKIPPED = {".keep"}


def commit() -> str | None:
    return git_commit(HERE) if (HERE / ".git").exists() else None


def write_build_info(package_dir: Path) -> None:
    found = commit()
    if found is None:
        return  # an sdist's tree: its core/_build_info.py is copied as any module is
    text = f'"""Written by setup.py at build time."""\n\nCOMMIT = "{found}"\n'
    (package_dir / "_build_info.py").write_text(text)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        core = Path(self.build_lib, "core")
        target = core / "resources"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(RESOURCES, target, ignore=lambda _d, names: SKIPPED & set(names))
        write_build_info(core)


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        write_build_info(Path(base_dir, "core"))


scratch = tempfile.mkdtemp(prefix="kubewicket-build-")
atexit.register(shutil.rmtree, scratch, ignore_errors=True)

setup(
    cmdclass={"build_py": BuildPy, "sdist": Sdist},
    options={
        "build": {"build_base": str(Path(scratch, "build"))},
        "egg_info": {"egg_base": scratch},
    },
)
