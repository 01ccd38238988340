"""The demo's mode, switched in the app (Cluster → Edit…) both ways, with the real kubectl.

Passthrough: kubectl's TLS goes to the demo apiserver. Inspect: it ends at Wicket, the
``wicket-demo`` context trusts Wicket's CA and presents the endpoint's token, and the
request shows in the streams table as a request. kubectl keeps working after each switch,
and the choice is saved (the next launch starts the demo in it).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from core.kube import KubeconfigPaths
from gui.aio import wait_until
from gui.backend import CLUSTERS_FILE, DEMO, AppSettings
from gui.cluster_dialogs import INSPECT_EXPLAINED, EditClusterDialog
from gui.models import column
from tests.gui.conftest import started_app
from tests.gui.kubectl import kubectl


def demo_ca(kubeconfig: Path) -> bytes:
    doc = YAML(typ="safe").load(kubeconfig.read_text())
    (cluster,) = [c["cluster"] for c in doc["clusters"] if c["name"] == "wicket-demo"]
    return base64.b64decode(cluster["certificate-authority-data"])


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_the_demo_switches_to_inspect_and_back(tmp_path: Path, home: Path) -> None:
    paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
    kubeconfig = Path(paths.default_file)
    app = await started_app(tmp_path, home)
    try:
        backend, window = app.backend, app.window
        menu = window.cluster_menu
        assert window.selected_cluster == DEMO and menu.edit_action.isEnabled()

        async def get_pods() -> None:
            got = await kubectl(home, "--context", "wicket-demo", "get", "pods", "-o", "name")
            assert got.returncode == 0, got.stderr
            assert "pod/web" in got.stdout

        def mode() -> str:
            return next((e.mode for e in backend.latest.endpoints if e.cluster == DEMO), "")

        await get_pods()
        passthrough_ca = demo_ca(kubeconfig)
        # A passthrough stream says what its TLS ClientHello said (kubectl offers h2).
        tls = column("TLS hello")
        await wait_until(
            lambda: any(
                window.streams.index(r, tls).data().startswith("h2,http/1.1 · ")
                for r in range(window.streams.rowCount())
            ),
            10,
            what="the TLS hello of an API connection",
        )
        done = await kubectl(home, "--context", "wicket-demo", "exec", "web", "--", "true")
        assert done.returncode == 0, done.stderr
        await wait_until(  # an exec's upgrade connection offers HTTP/1.1 only
            lambda: any(
                window.streams.index(r, tls).data().startswith("http/1.1 · ")
                for r in range(window.streams.rowCount())
            ),
            10,
            what="the TLS hello of an exec",
        )
        for wanted in ("inspect", "passthrough"):
            menu.edit_action.trigger()
            edit = menu.dialogs[-1]
            assert isinstance(edit, EditClusterDialog)
            assert not edit.port.isEnabled()  # the demo keeps its ports
            edit.mode.setCurrentText(wanted)
            if wanted == "inspect":
                assert edit.switch.text() == INSPECT_EXPLAINED  # what changes, before Save
            edit.accept()
            await wait_until(lambda w=wanted: mode() == w, 60, what=f"the demo in {wanted}")  # type: ignore[misc]
            await get_pods()
            assert (demo_ca(kubeconfig) == passthrough_ca) == (wanted == "passthrough")
            saved = AppSettings.load(tmp_path / "app" / CLUSTERS_FILE)
            assert saved.demo_mode.value == wanted
            if wanted == "inspect":
                await wait_until(
                    lambda: any(
                        (s.path or "").startswith("/api/v1/namespaces/default/pods")
                        for s in backend.latest.streams
                    ),
                    10,
                    what="the request in the snapshot",
                )
        assert app.reporter.reported == []
    finally:
        await app.shutdown()
