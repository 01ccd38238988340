"""GUI tests: a qasync loop for async tests, a watchdog, real in-process tunnels, and
the app started as a launch starts it."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QAbstractItemModel, QEvent
from PySide6.QtWidgets import QApplication

from core.kube import KubeconfigPaths
from gui.aio import qasync_loop_factory
from gui.backend import Backend
from gui.shell import WicketApp
from tests.support.home import fresh_home

T = TypeVar("T")
WATCHDOG_SECONDS = 150.0

if TYPE_CHECKING:
    from pytestqt.modeltest import ModelTester


def check_model(tester: ModelTester, model: QAbstractItemModel) -> None:
    """qtmodeltester with the Python tester (its messages explain failures)."""
    tester.check(model, force_py=True)  # type: ignore[no-untyped-call]


def resolve(future: asyncio.Future[T], value: T) -> None:
    """Set a future's result once (a signal may fire again)."""
    if not future.done():
        future.set_result(value)


async def started_app(tmp_path: Path, home: Path) -> WicketApp:
    """The app on ``tmp_path/app`` and the fresh ``home``'s kubeconfig, started as a
    launch starts it (no dialogs) and ready; the caller ends it with ``app.shutdown()``."""
    paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
    app = WicketApp(Backend(tmp_path / "app", paths), show_dialogs=False)
    ready = asyncio.get_running_loop().create_future()
    app.ready.connect(lambda: resolve(ready, None))
    await app.start()
    try:
        await asyncio.wait_for(ready, 60)
    except BaseException:
        await app.shutdown()
        raise
    return app


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test in tests/gui runs on a qasync loop over the QApplication."""
    make = qasync_loop_factory()

    def factory() -> asyncio.AbstractEventLoop:
        loop = make()
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        app.setQuitOnLastWindowClosed(False)  # as the app does: a hidden window is no quit
        return loop

    return {"qasync": factory}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """pytest-timeout stops watching a failed test; this watchdog also covers teardown."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
        collect_qt_garbage()


def collect_qt_garbage() -> None:
    """Destroy the test's unreachable Qt objects now, on the Qt thread.

    A closed qasync loop is cyclic garbage that owns QObjects: its ``_SimpleTimer`` still
    has Qt timers registered with this thread's event dispatcher (qasync's ``stop()``
    only flags them), plus its executor's QThreads. Left to the collector, they die in
    whichever thread allocates next, e.g. a worker thread of a later test: the QObject
    destructor cannot unregister timers from another thread, the dispatcher keeps them,
    and the next ``processEvents()`` (pytest-qt runs one after every test) delivers a
    timer event to freed memory: the segfault seen when other suites ran after this one.
    """
    gc.collect()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leftover = [
        t for t in set(threading.enumerate()) - before if t.is_alive() and t.name == "wicket-core"
    ]
    assert not leftover, f"core threads left running: {leftover}"


@pytest.fixture
def app() -> QApplication:
    instance = QApplication.instance()
    assert isinstance(instance, QApplication)
    return instance


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway HOME / XDG / KUBECONFIG so no test touches the developer's files."""
    return fresh_home(tmp_path, monkeypatch)
