"""Is there a display Qt can use? Asked before Qt is, so a failure is a sentence, not an abort.

Qt answers a platform plugin that cannot start with ``qFatal``, which aborts the process
after printing advice that is often beside the point (a dead ``DISPLAY`` reads
"xcb-cursor0 is needed"). So the app checks first that a display is named
(:func:`check_display`) and that it answers (:func:`probe_display`: a connect to the X
server's or the Wayland compositor's socket); whatever Qt still refuses is caught by
:func:`fatal_qt_messages`, which prints one line and exits 2 instead of aborting.

This module imports no Qt at import time.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import DisplayUnavailable

CONNECT_TIMEOUT = 2.0
X11_TCP_BASE = 6000
X11_SOCKETS = "/tmp/.X11-unix"  # noqa: S108  (where X servers listen, by convention)
ADVICE = (
    "Start Wicket from a desktop session, or run it without a window (`wicket up`); "
    "QT_QPA_PLATFORM=offscreen runs the app without a screen."
)


def check_display(environ: Mapping[str, str] | None = None, platform: str = sys.platform) -> None:
    """Fail early, with a message a person can act on, when no display is named."""
    env = os.environ if environ is None else environ
    if platform != "linux" or env.get("QT_QPA_PLATFORM"):
        return
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return
    raise DisplayUnavailable(
        "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set). "
        "Start Wicket from a desktop session, or use the headless commands "
        "(`wicket --help`); QT_QPA_PLATFORM=offscreen runs the app without a screen."
    )


def probe_display(environ: Mapping[str, str] | None = None, platform: str = sys.platform) -> None:
    """Fail when none of the platforms Qt would try has a display that answers.

    Only the X11 (``xcb``) and Wayland platforms are probed; others (``offscreen``,
    ``vnc``, ``eglfs``…) are left to Qt, and to :func:`fatal_qt_messages`.
    """
    env = os.environ if environ is None else environ
    if platform != "linux":
        return
    problems = []
    for name in qt_platforms(env):
        problem = _display_problem(name, env)
        if problem is None:
            return
        problems.append(problem)
    if problems:
        raise DisplayUnavailable(f"{'; '.join(problems)}. {ADVICE}")


def qt_platforms(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order (``QT_QPA_PLATFORM`` may list several)."""
    explicit = env.get("QT_QPA_PLATFORM", "")
    if explicit:
        return [p.split(":")[0].strip() for p in explicit.split(";") if p.strip()]
    named = (("wayland", "WAYLAND_DISPLAY"), ("xcb", "DISPLAY"))
    return [name for name, variable in named if env.get(variable)]


def _display_problem(platform: str, env: Mapping[str, str]) -> str | None:
    if platform == "xcb":
        return x11_problem(env.get("DISPLAY", ""))
    if platform.startswith("wayland"):
        return wayland_problem(env)
    return None


def x11_problem(display: str) -> str | None:
    """Why no X server answers on ``display`` (None when one does)."""
    if not display:
        return "Qt is asked for X11 (xcb) but DISPLAY is not set"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY={display} is not an X display name"
    if host.startswith("/"):
        return None  # a launchd socket path: nothing to probe the same way
    if host in ("", "unix"):
        path = f"{X11_SOCKETS}/X{number}"
        targets: list[Any] = [f"\0{path}", path]  # the abstract socket, then the file
        family = socket.AF_UNIX
    else:
        targets, family = [(host, X11_TCP_BASE + int(number))], socket.AF_INET
    if any(_answers(family, t) for t in targets):
        return None
    return f"no X server answers on DISPLAY={display}"


def wayland_problem(env: Mapping[str, str]) -> str | None:
    """Why no Wayland compositor answers (None when one does)."""
    name = env.get("WAYLAND_DISPLAY") or "wayland-0"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if not Path(name).is_absolute() and not runtime:
        return f"Qt is asked for Wayland but XDG_RUNTIME_DIR is not set (WAYLAND_DISPLAY={name})"
    path = Path(runtime, name)
    if _answers(socket.AF_UNIX, str(path)):
        return None
    return f"no Wayland compositor answers on {path}"


def _answers(family: socket.AddressFamily, address: Any) -> bool:
    """Whether something accepts a connection at ``address`` (closed again at once)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(address)
    except OSError:
        return False
    finally:
        sock.close()
    return True


@contextmanager
def fatal_qt_messages() -> Iterator[None]:
    """While Qt starts, turn a fatal platform message into one line and exit status 2.

    Qt's warnings from this time are held back: if start-up fails they are the reason
    (the first is used in the line); if it succeeds they are printed as Qt would have.
    """
    from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler

    held: list[str] = []

    def handler(kind: QtMsgType, _context: QMessageLogContext, message: str) -> None:
        if kind != QtMsgType.QtFatalMsg:
            held.append(message)
            return
        reason = (held[0] if held else message).rstrip(".")
        print(f"wicket: Qt cannot open a display ({reason}). {ADVICE}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)  # Qt aborts as soon as this returns

    qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(None)
        for message in held:
            print(message, file=sys.stderr)
