"""The frozen ``wicket`` (the PyInstaller bundle's entry point).

Same as the ``wicket`` console script (``gui.launcher:main``), plus one thing a frozen
app needs: core runs small Python programs as ``sys.executable -u -c CODE`` (the demo's
``chat`` pod, ``core/demo/exec.py``), and in the bundle ``sys.executable`` is this
program, not an interpreter. So ``wicket [-u] -c CODE [ARG...]`` runs CODE as Python
would. It grants nothing: whoever can start this program can start any program as
themselves.
"""

from __future__ import annotations

import sys


def _python_c(argv: list[str]) -> list[str] | None:
    """``[CODE, ARG...]`` when ``argv`` (without the program) is ``[-u] -c CODE ...``."""
    args = argv[1:] if argv[:1] == ["-u"] else argv
    return args[1:] if len(args) >= 2 and args[0] == "-c" else None


def main() -> int:
    code = _python_c(sys.argv[1:])
    if code is not None:
        sys.argv = ["-c", *code[1:]]
        sys.stdout.reconfigure(line_buffering=True)  # -u, as near as text streams get
        exec(compile(code[0], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        return 0
    from gui.launcher import main as wicket

    return wicket()


if __name__ == "__main__":
    sys.exit(main())
