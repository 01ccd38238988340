"""Take the README's screenshots: main window with live traffic, the wizard (and its choice
of where a token is kept), the tray menu, the Cluster menu,
and the request inspector (the demo switched to inspect mode: the list, an exec's detail).

``.venv/bin/python scripts/screenshots.py [--out docs/screenshots]``

Runs the real app offscreen (``QT_QPA_PLATFORM=offscreen`` unless a display is set)
with a throwaway HOME: the demo cluster starts as on a first run, the real kubectl
drives traffic through it (an exec, a log follow, a watch, bulk port-forward data), and
``QWidget.grab()`` saves each picture. Nothing touches the user's kubeconfig or keyring.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gui.shell import WicketApp

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(home / ".kube" / "config"),
        "KUBECACHEDIR": str(home / ".kube" / "cache"),
    }


def _start(home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(KUBECTL), "--context", "wicket-demo", *args],
        env=_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _take(out: Path, home: Path) -> None:
    from core.kube import KubeconfigPaths
    from gui.backend import Backend
    from gui.shell import WicketApp

    paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
    app = WicketApp(Backend(home / "state", paths), show_dialogs=False)
    ready = asyncio.get_running_loop().create_future()
    app.ready.connect(lambda: None if ready.done() else ready.set_result(None))
    children: list[subprocess.Popen[bytes]] = []
    await app.start()
    try:
        await asyncio.wait_for(ready, 60)
        children += [
            _start(home, "exec", "-i", "chat", "--", "sh", "-c", "while sleep 1; do date; done"),
            _start(home, "logs", "-f", "ticker"),
            _start(home, "get", "pods", "--watch"),
            _start(home, "port-forward", "pod/web", "18099:9"),
        ]
        await _shoot_window(app, out)
        await _shoot_wizard(app, out)
        await _shoot_tray(app, out)
        await _shoot_cluster_menu(app, out)
        _stop(children)
        children.clear()
        await _shoot_inspector(app, out, home, children)
    finally:
        _stop(children)
        await app.shutdown()


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)


async def _shoot_window(app: WicketApp, out: Path) -> None:
    from PySide6.QtCore import Qt

    from gui.models import column

    window = app.window
    window.resize(1280, 800)
    await asyncio.sleep(2)
    bulk = asyncio.ensure_future(asyncio.to_thread(_bulk, 18099))
    window.tabs.setCurrentIndex(0)
    window.debug_dock.show()
    await asyncio.sleep(2.5)
    window.proxy.sort(column("Up"), Qt.SortOrder.DescendingOrder)  # the busiest stream first
    window.table.selectRow(0)
    await asyncio.sleep(0.5)
    window.grab().save(str(out / "main-window.png"))
    await bulk

    window.tabs.setCurrentWidget(window.try_it)
    window.debug_dock.hide()
    await asyncio.sleep(0.3)
    window.grab().save(str(out / "try-it.png"))


async def _shoot_inspector(
    app: WicketApp, out: Path, home: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """The demo in inspect mode (Cluster → Edit… does the same), kubectl's requests in
    the Requests tab, and the decoded detail of an exec in a terminal (under ``script``,
    so kubectl sends its size) with its headers."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QSplitter

    from gui.backend import DEMO
    from gui.inspector import request_column
    from gui.models import KEY_ROLE

    window = app.window
    await app.backend.edit_cluster(DEMO, mode="inspect")
    await asyncio.to_thread(
        subprocess.run, [str(KUBECTL), "--context", "wicket-demo", "get", "pods"], env=_env(home)
    )
    in_a_terminal = (
        f"stty cols 120 rows 40; {KUBECTL} --context wicket-demo exec -it web -- "
        "sh -c 'echo hello; exit 3'"
    )
    await asyncio.to_thread(
        subprocess.run,
        ["script", "-qec", in_a_terminal, "/dev/null"],
        env=_env(home),
        input=b"",
        stdout=subprocess.DEVNULL,
    )
    children += [
        _start(home, "logs", "-f", "ticker"),
        _start(home, "get", "pods", "--watch"),
        _start(home, "port-forward", "pod/web", "18099:80"),
    ]
    await asyncio.sleep(3)
    inspector = window.inspector
    window.tabs.setCurrentWidget(inspector)
    inspector.proxy.sort(request_column("Time"), Qt.SortOrder.AscendingOrder)
    for row in range(inspector.proxy.rowCount()):
        if inspector.proxy.index(row, request_column("Path")).data().endswith("/exec"):
            inspector.select(inspector.proxy.index(row, 0).data(KEY_ROLE))
    await asyncio.sleep(0.5)
    window.grab().save(str(out / "inspector.png"))
    split = inspector.findChild(QSplitter)
    if split is not None:
        split.setSizes([150, 650])  # room for the whole detail, headers included
    await asyncio.sleep(0.3)
    inspector.table.scrollTo(inspector.table.currentIndex())
    await asyncio.sleep(0.2)
    inspector.grab().save(str(out / "inspector-exec.png"))


async def _shoot_wizard(app: WicketApp, out: Path) -> None:
    app.open_wizard()
    wizard = app.wizards[-1]
    wizard.name_page.name.setText("staging-eu")
    wizard.next()
    wizard.next()
    page = wizard.apiserver_page
    page.target.setText("kubernetes.default.svc:443")
    page.server_name.setText("kubernetes.default.svc")
    page.ca.setPlainText("-----BEGIN CERTIFICATE-----\nMIIB…(the cluster CA)\n")
    await asyncio.sleep(0.3)
    wizard.grab().save(str(out / "wizard.png"))
    secrets = wizard.endpoint_page  # where the token is kept: keyring, file or session
    secrets.storage.setCurrentIndex(secrets.storage.findData("encrypted-file"))
    await asyncio.sleep(0.5)  # the page says what that store's state is
    secrets.resize(wizard.width(), secrets.heightForWidth(wizard.width()) + 40)
    await asyncio.sleep(0.3)
    secrets.grab().save(str(out / "wizard-secrets.png"))
    wizard.reject()


async def _shoot_cluster_menu(app: WicketApp, out: Path) -> None:
    from PySide6.QtCore import QPoint

    window = app.window
    window.cluster_list.setCurrentIndex(window.cluster_list.model().index(0, 0))
    await asyncio.sleep(0.3)
    menu = window.cluster_menu.menu
    menu.popup(QPoint(0, 0))
    await asyncio.sleep(0.3)
    menu.grab().save(str(out / "cluster-menu.png"))
    menu.hide()


async def _shoot_tray(app: WicketApp, out: Path) -> None:
    from PySide6.QtCore import QPoint

    menu = app.tray.menu
    await asyncio.sleep(0.5)
    menu.popup(QPoint(0, 0))
    await asyncio.sleep(0.3)
    menu.grab().save(str(out / "tray-menu.png"))
    menu.hide()


def _bulk(port: int) -> None:
    """Push 256 MiB into the demo's sink through port-forward (in a worker thread)."""
    import socket
    import time

    deadline = time.monotonic() + 8
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as s:
        chunk = b"\0" * (1 << 20)
        for _ in range(256):
            if time.monotonic() > deadline:
                break
            s.sendall(chunk)


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshots.py")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    sys.path.insert(0, str(REPO))
    from PySide6.QtWidgets import QApplication

    from gui.aio import qasync_loop_factory

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    with tempfile.TemporaryDirectory(prefix="wicket-shots-") as tmp:
        home = Path(tmp)
        os.environ.update(
            HOME=str(home),
            XDG_DATA_HOME=str(home / "data"),
            KUBECONFIG=str(home / ".kube" / "config"),
        )
        with asyncio.Runner(loop_factory=qasync_loop_factory()) as runner:
            runner.run(_take(out, home))
    for name in sorted(out.glob("*.png")):
        print(name.relative_to(REPO) if name.is_relative_to(REPO) else name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
