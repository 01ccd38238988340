"""The live streams table shows an exec stream with its upgrade state (inspect mode).

A demo stack in inspect mode runs on the core thread; the real kubectl execs through it,
over WebSocket and then over SPDY; the main window's table shows each request with its
upgrade, protocol and subprotocol, and the detail pane the decoded command and exit code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.demo.embedded import DemoStack
from core.kube import KubeconfigPaths
from core.service import WicketService
from gui.aio import wait_until
from gui.backend import Backend
from gui.core_thread import CoreThread
from gui.main_window import MainWindow
from gui.models import KEY_ROLE, column
from tests.gui.kubectl import kubectl

REQUEST, UPGRADE = column("Request"), column("Upgrade")


class _Running:
    """The stack owns the endpoint; the service only publishes its snapshot."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def _start(service: WicketService, state: Path) -> DemoStack:
    stack = DemoStack(state, port=0, mode="inspect")
    await stack.start()
    assert stack.endpoint is not None
    await service.add("endpoint:demo", _Running(), stack.endpoint.snapshot)
    return stack


@pytest.mark.slow
async def test_exec_streams_show_their_upgrade(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = CoreThread(WicketService(publish_hz=10))
    core.start()
    stack = core.submit(_start(core.service, tmp_path / "demo")).result(60)
    try:
        monkeypatch.setenv("KUBECONFIG", str(stack.kubeconfig_path))
        paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
        window = MainWindow(Backend(tmp_path / "app", paths, core))
        window.start()
        window.show()
        try:
            expected = {
                "true": "accepted · websocket · v5.channel.k8s.io",
                "false": "accepted · SPDY/3.1 · v4.channel.k8s.io",
            }
            for websockets, upgrade in expected.items():
                monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
                done = await kubectl(home, "exec", "web", "--", "sh", "-c", "exit 3")
                assert done.returncode == 3, done.stderr

                def row_with(text: str) -> int:
                    for r in range(window.proxy.rowCount()):
                        if window.proxy.index(r, UPGRADE).data() == text:
                            return r
                    return -1

                await wait_until(lambda u=upgrade: row_with(u) >= 0, 10, what=upgrade)  # type: ignore[misc]
                r = row_with(upgrade)
                assert window.proxy.index(r, REQUEST).data().endswith("/pods/web/exec  101")
                assert window.select_stream(window.proxy.index(r, 0).data(KEY_ROLE))
                # The row shows at the upgrade; the exit code is decoded a tick or two later.
                await wait_until(
                    lambda: "exit_code" in window.detail.text.toPlainText(), 10, what="exit code"
                )
                detail = window.detail.text.toPlainText()
                assert "exit_code" in detail and "3" in detail, detail
        finally:
            window.close()
            window.stop()
    finally:
        core.submit(stack.stop()).result(30)
        core.stop()
