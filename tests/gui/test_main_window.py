"""The main window fed by a real relay, agent and endpoint on the core thread."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytestqt.modeltest import ModelTester


from core.kube import KubeconfigPaths
from gui.aio import wait_until
from gui.backend import Backend
from gui.main_window import MainWindow
from gui.models import KEY_ROLE, column
from tests.gui.conftest import check_model
from tests.gui.lab import running_lab


async def test_live_streams_clusters_detail_and_chart(
    tmp_path: Path, home: Path, qtmodeltester: ModelTester
) -> None:
    with running_lab(tmp_path) as lab:
        paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
        backend = Backend(tmp_path / "app", paths, lab.core)
        window = MainWindow(backend)
        check_model(qtmodeltester, window.proxy)
        window.start()
        window.show()
        try:
            await wait_until(lambda: window.clusters.row_of("lab") >= 0, 5, what="cluster row")
            assert window.selected_cluster == "lab"  # the only cluster gets selected
            assert "online" in window.clusters.index(0, 0).data()

            reader, writer = await asyncio.open_connection(*lab.endpoint)
            payload = os.urandom(4 << 20)

            async def pump() -> None:
                for i in range(0, len(payload), 64 * 1024):
                    writer.write(payload[i : i + 64 * 1024])
                    await writer.drain()
                    await asyncio.sleep(0.01)

            pumping = asyncio.create_task(pump())
            received = 0

            async def drain() -> None:
                nonlocal received
                while chunk := await reader.read(1 << 20):
                    received += len(chunk)

            draining = asyncio.create_task(drain())
            await wait_until(lambda: window.proxy.rowCount() == 1, 5, what="stream row")
            key = window.proxy.index(0, 0).data(KEY_ROLE)
            assert key.startswith("endpoint:lab/")
            assert window.select_stream(key)

            def rate() -> float:
                row = window.streams.row_for_key(key)
                return row.view.rate_up if row is not None else 0.0

            await wait_until(lambda: rate() > 0, 10, what="a live rate")
            assert window.proxy.index(0, column("State")).data() == "open"
            assert "cluster     lab" in window.detail.text.toPlainText()
            assert max(up for up, _ in window.history.values("lab")) > 0
            window.all_hops.setChecked(True)
            await wait_until(lambda: window.proxy.rowCount() == 3, 5, what="three hops")
            assert "1 stream open" in window.status.text()  # one stream, three hops
            window.all_hops.setChecked(False)

            await pumping
            writer.write_eof()
            await draining
            writer.close()
            assert received == len(payload)
            await wait_until(
                lambda: window.proxy.index(0, column("State")).data() == "closed",
                5,
                what="closed state",
            )
            assert window.proxy.index(0, column("Up")).data() == "4.0 MiB"
            assert window.update_ms < 50
            pixmap = window.grab()
            assert not pixmap.isNull()
        finally:
            window.stop()
            window.close()
