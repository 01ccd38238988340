"""``python -m core.compiled build [--if-compiler] | status | clean``."""

from __future__ import annotations

import os
import shutil
import sys

from core.compiled import build_dir, plan, state
from core.compiled.build import build, compiler_available


def main(argv: list[str] | None = None) -> int:
    """``python -m core.compiled build [--if-compiler] [--force] | status | clean``

    ``build`` does nothing when the build is current (``--force`` rebuilds); without a
    compiler it fails, or with ``--if-compiler`` says so and succeeds (pure Python runs).
    """
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    if command == "status":
        print(f"{state().reason}; build dir {build_dir()}")
        return 0
    if command == "clean":
        shutil.rmtree(build_dir(), ignore_errors=True)
        print(f"removed {build_dir()}")
        return 0
    if command != "build":
        print(main.__doc__, file=sys.stderr)
        return 2
    if plan(build_dir(), {})[0] and "--force" not in args:
        print(f"core.compiled: up to date ({build_dir()})")
        return 0
    missing = compiler_available()
    if missing is not None:
        print(f"core.compiled: {missing}: the pure-Python modules run", file=sys.stderr)
        return 0 if "--if-compiler" in args else 1
    print(f"core.compiled: built {build(jobs=os.cpu_count() or 1)}")
    return 0


sys.exit(main())
