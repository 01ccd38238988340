"""The foundation: entry point, exception tree, display check."""

from __future__ import annotations

import pytest

from core import errors
from gui.display import check_display
from tests.support.cli import run_python, run_wicket


def test_every_error_is_a_wicket_error() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ]
    assert len(classes) > 20
    for cls in classes:
        assert issubclass(cls, errors.WicketError), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} missing from the tree drawing"


def test_builtin_meanings_are_kept() -> None:
    assert issubclass(errors.OpenTimeout, TimeoutError)
    assert issubclass(errors.StreamReset, ConnectionResetError)
    assert issubclass(errors.StreamRefused, ConnectionRefusedError)
    assert issubclass(errors.SessionClosed, ConnectionError)
    assert issubclass(errors.ConfigError, ValueError)
    err = errors.KubeconfigParseError("/tmp/k", 7, "bad indent")
    assert str(err) == "/tmp/k:7: bad indent"


def test_no_display_is_a_clear_error() -> None:
    with pytest.raises(errors.DisplayUnavailable, match="no display"):
        check_display({}, platform="linux")
    check_display({"DISPLAY": ":0"}, platform="linux")
    check_display({"QT_QPA_PLATFORM": "offscreen"}, platform="linux")


def test_wicket_without_display_fails_clearly() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    proc = run_python(
        "-c", "import sys; from gui.launcher import main; sys.exit(main([]))", env=env
    )
    assert proc.returncode == 2
    assert "no display found" in proc.stderr


def test_wicket_help_is_headless() -> None:
    code = (
        "import sys; from gui.launcher import main; rc = main(['--version']) "
        "if False else None; import core.cli; "
        "assert 'PySide6' not in sys.modules"
    )
    run_python("-c", code, check=True)
    proc = run_wicket("--version")
    assert proc.returncode == 0
    assert "wicket" in proc.stdout
