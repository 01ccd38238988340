"""First run: the demo runs and is selected, 'Try it' works with kubectl, the tray
switches contexts (checked with kubectl) and connects clusters, Quit stops everything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gui.aio import wait_until
from gui.models import HOP_ROLE, KEY_ROLE, column
from tests.gui.conftest import resolve, started_app
from tests.gui.kubectl import kubectl

FOREIGN = """apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: other
  user: {token: not-a-real-token}
contexts:
- name: other
  context: {cluster: other, user: other}
current-context: other
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_first_run_demo_try_it_exec_and_tray(tmp_path: Path, home: Path) -> None:
    kubeconfig = home / ".kube" / "config"
    kubeconfig.parent.mkdir(mode=0o700)
    kubeconfig.write_text(FOREIGN)
    app = await started_app(tmp_path, home)
    try:
        assert app.reporter.reported == []
        window, tray = app.window, app.tray
        assert app.demo is not None
        assert window.selected_cluster == "demo"
        assert window.tabs.currentWidget() is window.try_it  # the first screen: no stream yet
        commands = window.try_it.commands
        assert commands[0] == "kubectl --context wicket-demo get pods"

        got = await kubectl(home, *commands[0].split()[1:])
        assert got.returncode == 0, got.stderr
        assert "web" in got.stdout and "ticker" in got.stdout

        # A long exec shows live in the table, open, from the kubectl side.
        exec_run = asyncio.ensure_future(
            kubectl(
                home,
                "--context",
                "wicket-demo",
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo started; sleep 2; echo done",
            )
        )

        def open_exec_rows() -> list[str]:
            proxy = window.proxy
            return [
                proxy.index(r, 0).data(KEY_ROLE)
                for r in range(proxy.rowCount())
                if proxy.index(r, column("State")).data() == "open"
                and proxy.index(r, 0).data(HOP_ROLE) == "kubectl"
                and proxy.index(r, column("Cluster")).data() == "demo"
            ]

        await wait_until(lambda: bool(open_exec_rows()), 15, what="an open exec stream")
        key = open_exec_rows()[0]
        assert window.select_stream(key)
        assert "cluster     demo" in window.detail.text.toPlainText()
        result = await exec_run
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["started", "done"]
        await wait_until(
            lambda: (row := window.streams.row_for_key(key)) is not None and not row.open,
            10,
            what="the exec stream closed",
        )

        # The tray: contexts as a radio list, Wicket's marked, the current one checked.
        await wait_until(lambda: "wicket-demo" in tray.context_actions, 10, what="contexts")
        actions = tray.context_actions
        assert actions["other"].isChecked() and not actions["wicket-demo"].isChecked()
        assert "Wicket" in actions["wicket-demo"].text() and "Wicket" not in actions["other"].text()
        assert tray.menu.actions()[0] is tray.open_action
        switched = asyncio.get_running_loop().create_future()
        tray.context_switched.connect(lambda n: resolve(switched, n))
        actions["wicket-demo"].trigger()
        assert await asyncio.wait_for(switched, 15) == "wicket-demo"
        current = await kubectl(home, "config", "current-context")
        assert current.stdout.strip() == "wicket-demo"
        assert tray.context_actions["wicket-demo"].isChecked()
        got = await kubectl(home, "get", "pods", "-o", "name")  # now the default context
        assert "pod/web" in got.stdout, got.stderr

        # Per-cluster disconnect and connect from the tray.
        window.tick()
        assert tray.cluster_actions["demo"].isChecked()
        tray.cluster_actions["demo"].trigger()
        await wait_until(lambda: not app.backend.is_connected("demo"), 15, what="disconnect")
        tray.cluster_actions["demo"].trigger()
        await wait_until(lambda: app.backend.is_connected("demo"), 30, what="reconnect")

        def demo_state() -> str | None:
            cluster = app.backend.latest.cluster("demo")
            return cluster.state if cluster is not None else None

        await wait_until(lambda: demo_state() == "online", 15, what="online again")
        # The tray follows the window's 5 Hz tick, not the snapshot itself.
        await wait_until(lambda: tray.state == "online", 5, what="the tray online")
        assert app.reporter.reported == []
        app.request_quit()  # no stream is open: Quit does not ask
        assert app.quitting and not app.quit_boxes
    finally:
        app.request_quit()
        await app.shutdown()
    assert not app.backend.core.running
