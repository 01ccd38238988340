"""The display probe against real sockets: an X server on TCP, a Wayland socket, neither."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.errors import DisplayUnavailable
from gui.display import X11_TCP_BASE, probe_display, qt_platforms, wayland_problem, x11_problem


@contextmanager
def fake_x_server() -> Iterator[int]:
    """A listener where X display ``:n`` on 127.0.0.1 would be; yields ``n``."""
    for number in range(40, 200):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", X11_TCP_BASE + number))
        except OSError:
            sock.close()
            continue
        with sock:
            sock.listen()
            yield number
        return
    pytest.skip("no free port for a fake X display")


def test_qt_platforms_in_the_order_qt_tries_them() -> None:
    assert qt_platforms({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert qt_platforms({"QT_QPA_PLATFORM": "xcb:dpi=96"}) == ["xcb"]
    assert qt_platforms({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert qt_platforms({}) == []


def test_an_x_server_answers_or_is_named_as_missing() -> None:
    with fake_x_server() as number:
        display = f"127.0.0.1:{number}.0"
        assert x11_problem(display) is None
        probe_display({"QT_QPA_PLATFORM": "xcb", "DISPLAY": display}, platform="linux")
    assert x11_problem(display) == f"no X server answers on DISPLAY={display}"
    with pytest.raises(DisplayUnavailable, match=f"no X server answers on DISPLAY={display}"):
        probe_display({"QT_QPA_PLATFORM": "xcb", "DISPLAY": display}, platform="linux")
    assert x11_problem("") == "Qt is asked for X11 (xcb) but DISPLAY is not set"
    assert x11_problem("nonsense") == "DISPLAY=nonsense is not an X display name"


def test_a_wayland_socket_answers_and_another_platform_is_left_to_qt(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "WAYLAND_DISPLAY": "wl-test"}
    assert wayland_problem(env) == f"no Wayland compositor answers on {tmp_path / 'wl-test'}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "wl-test"))
        server.listen()
        assert wayland_problem(env) is None
        # the first platform that answers is enough
        probe_display({**env, "QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":1"}, "linux")
    assert "XDG_RUNTIME_DIR is not set" in (wayland_problem({"WAYLAND_DISPLAY": "w"}) or "")
    probe_display({"QT_QPA_PLATFORM": "offscreen"}, platform="linux")
    probe_display({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}, platform="darwin")
