"""Building the compiled hot path (``python -m core.compiled build``): mypyc, then the
C compiler, into ``core.compiled.build_dir()`` with the manifest the finder checks.

mypy (with mypyc) is a test dependency, imported only here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from core.compiled import GROUP, MANIFEST, MODULES, PACKAGE_ROOT, build_dir, digest, source_of


def compiler_available() -> str | None:
    """None if a C extension can be built here, else what is missing."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.is_file():
        return f"no Python headers ({header}; Debian: python3-dev)"
    return None


def build(jobs: int = 2) -> Path:
    """Compile ``MODULES`` with mypyc into ``build_dir()`` (replaced as a whole)."""
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    target = build_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = {name: source_of(name) for name in MODULES}
    digests = {name: digest(path) for name, path in sources.items()}
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        work = Path(tmp)
        cwd = os.getcwd()
        os.chdir(PACKAGE_ROOT)  # mypy names modules by the packages above each file
        try:
            extensions = mypycify(
                [str(p.relative_to(PACKAGE_ROOT)) for p in sources.values()],
                opt_level="3",
                group_name=GROUP,
                target_dir=str(work / "c"),
            )
        finally:
            os.chdir(cwd)
        # A bare Distribution: setup() would parse pyproject.toml, which is not about this.
        dist = Distribution({"name": GROUP, "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "temp")
        command.parallel = jobs
        dist.run_command("build_ext")
        built = work / "lib"
        files = {}
        for ext in extensions:
            path = built.joinpath(*ext.name.split("."))
            matches = sorted(path.parent.glob(path.name + ".*"))
            if not matches:
                raise RuntimeError(f"mypyc built no file for {ext.name}")
            files[ext.name] = str(matches[0].relative_to(built))
        manifest = {
            "python": sys.version.split()[0],
            "files": files,
            "sources": digests,
        }
        (built / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        old = work / "old"
        if target.exists():
            target.rename(old)
        built.rename(target)
    return target
