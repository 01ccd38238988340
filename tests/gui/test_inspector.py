"""The request inspector, driven by the real app and the real kubectl through the demo
in inspect mode: exec (WebSocket and SPDY), port-forward, ``logs -f`` and ``get -w`` each
show as a row with its fields; an exec's detail shows its command and exit code; the
filters, the copy commands and the link between a stream and its request work."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from core.service import Mode
from gui.aio import wait_until
from gui.backend import CLUSTERS_FILE, AppSettings
from gui.inspector import (
    REQUESTS,
    RequestsFilter,
    RequestsModel,
    as_curl,
    as_kubectl,
    request_column,
)
from gui.main_window import MainWindow
from gui.models import KEY_ROLE, stream_rows
from tests.gui.conftest import check_model, started_app
from tests.gui.kubectl import KUBECTL, kubectl, kubectl_env
from tests.gui.test_models import snapshot, stream

if TYPE_CHECKING:
    from pytestqt.modeltest import ModelTester

PATH, STATUS, UPGRADE, COMMAND = (
    request_column(t) for t in ("Path", "Status", "Upgrade", "Command")
)


def _in_background(home: Path, seconds: float, *args: str, then: object = None) -> str:
    """Run kubectl for ``seconds`` (a follow, a watch, a port-forward), then stop it;
    ``then(first_line)`` runs meanwhile (e.g. a GET through the forwarded port)."""
    proc = subprocess.Popen(
        [str(KUBECTL), "--context", "wicket-demo", *args],
        env=kubectl_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if callable(then):
            then(first)
        time.sleep(seconds)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    return first + out


def _get_through(first_line: str) -> None:
    match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 80", first_line)
    assert match is not None, first_line
    with urllib.request.urlopen(f"http://127.0.0.1:{match[1]}/one", timeout=10) as answer:
        assert b"You asked for /one" in answer.read()


def _has(window: MainWindow, path_end: str, upgrade: str = "") -> bool:
    return _find(window, path_end, upgrade) is not None


def _rows(window: MainWindow) -> list[tuple[str, str, str, str]]:
    proxy = window.inspector.proxy
    return [
        tuple(proxy.index(r, c).data() for c in (PATH, STATUS, UPGRADE, COMMAND))
        for r in range(proxy.rowCount())
    ]


def _find(window: MainWindow, path_end: str, upgrade: str = "") -> str | None:
    """The key of a request row whose path ends with ``path_end`` (and upgrade starts
    with ``upgrade``)."""
    proxy = window.inspector.proxy
    for r in range(proxy.rowCount()):
        path, up = proxy.index(r, PATH).data(), proxy.index(r, UPGRADE).data()
        if path.endswith(path_end) and up.startswith(upgrade):
            return str(proxy.index(r, 0).data(KEY_ROLE))
    return None


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_kubectl_requests_in_the_inspector(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    AppSettings.update(
        tmp_path / "app" / CLUSTERS_FILE, lambda c: setattr(c, "demo_mode", Mode.INSPECT)
    )
    app = await started_app(tmp_path, home)
    try:
        window = app.window
        inspector = window.inspector
        assert window.tabs.tabText(window.tabs.indexOf(inspector)) == "&Requests"
        window.tabs.setCurrentWidget(inspector)  # a hidden Requests tab does not follow

        # exec over WebSocket, then SPDY: exit code 3 each time.
        for websockets, upgrade in (
            ("true", "accepted · websocket"),
            ("false", "accepted · SPDY/3.1"),
        ):
            monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            done = await kubectl(
                home, "--context", "wicket-demo", "exec", "web", "--", "sh", "-c", "exit 3"
            )
            assert done.returncode == 3, done.stderr
            await wait_until(partial(_has, window, "/pods/web/exec", upgrade), 10, what=upgrade)
            key = _find(window, "/pods/web/exec", upgrade)
            assert key is not None and inspector.select(key)
            await wait_until(
                lambda: "exit_code" in inspector.detail.text.toPlainText(), 10, what="exit code"
            )
            detail = inspector.detail.text.toPlainText()
            assert re.search(r"command\s+sh -c 'exit 3'", detail), detail
            assert re.search(r"exit_code\s+3", detail), detail
            assert "status      101" in detail
            inspector.detail.copy_kubectl.click()
            clipboard = QGuiApplication.clipboard()
            assert clipboard is not None
            assert clipboard.text() == (
                "kubectl --context wicket-demo exec -i web -n default -- sh -c 'exit 3'"
            )
            inspector.detail.copy_curl.click()
            assert "$WICKET_ENDPOINT_TOKEN" in clipboard.text()
            assert "/api/v1/namespaces/default/pods/web/exec" in clipboard.text()

        # port-forward (a GET through it), logs -f and get -w.
        monkeypatch.delenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
        await asyncio.to_thread(
            _in_background,
            home,
            0.5,
            "port-forward",
            "--address",
            "127.0.0.1",
            "pod/web",
            ":80",
            then=_get_through,
        )
        logs = await asyncio.to_thread(_in_background, home, 1.5, "logs", "-f", "ticker")
        assert "tick" in logs
        await asyncio.to_thread(_in_background, home, 1.0, "get", "pods", "-w", "-o", "name")
        await wait_until(partial(_has, window, "/pods/web/portforward", "accepted"), 10, what="pf")
        await wait_until(partial(_has, window, "/pods/ticker/log"), 10, what="logs -f")
        await wait_until(
            lambda: any(p.endswith("/pods") and c == "kubectl get" for p, _, _, c in _rows(window)),
            10,
            what="get -w",
        )
        pf = _find(window, "/pods/web/portforward")
        assert pf is not None and inspector.select(pf)
        await wait_until(lambda: "connection" in inspector.detail.text.toPlainText(), 10, what="pf")
        assert re.search(r"ports\s+80", inspector.detail.text.toPlainText())
        log_key = _find(window, "/pods/ticker/log")
        assert log_key is not None and inspector.select(log_key)
        assert re.search(r"lines\s+\d+", inspector.detail.text.toPlainText())
        kinds = {r.view.detail_value("kind") for r in inspector.model.rows}
        assert {"exec", "portforward", "log", "watch"} <= kinds, kinds
        for _, status, _, command in _rows(window):
            assert status.isdigit() and command.startswith("kubectl ")

        # Filters: upgrades only, a status class, text.
        inspector.upgrades_only.setChecked(True)
        assert {u.split(" · ")[0] for _, _, u, _ in _rows(window)} == {"accepted"}
        inspector.upgrades_only.setChecked(False)
        inspector.status_class.setCurrentIndex(inspector.status_class.findText("2xx"))
        assert _rows(window) and all(s.startswith("2") for _, s, _, _ in _rows(window))
        inspector.status_class.setCurrentIndex(0)
        inspector.filter_edit.setText("portforward")
        assert [p for p, _, _, _ in _rows(window)] == [
            "/api/v1/namespaces/default/pods/web/portforward"
        ]
        inspector.filter_edit.clear()
        assert inspector.cluster.findData("demo") > 0

        # A request links to its stream and back.
        assert inspector.select(pf)
        inspector.detail.stream_button.click()
        assert window.tabs.currentIndex() == 0 and window.selected_stream_key() == pf
        (selected,) = window.table.selectionModel().selectedRows()
        inspector.table.clearSelection()
        window.table.doubleClicked.emit(selected)  # the stream's request, in Requests
        assert window.tabs.currentWidget() is inspector and inspector.selected_key() == pf
        window.tabs.setCurrentIndex(0)
        assert window.show_request(pf) and window.tabs.currentWidget() is inspector
        assert inspector.selected_key() == pf
        assert app.reporter.reported == []
    finally:
        await app.shutdown()


def test_the_requests_model_filters_and_copies(qtmodeltester: ModelTester) -> None:
    """Only inspected requests are rows; the filters; the copy commands never carry a
    credential; a tick that only moves bytes changes only the counter columns."""
    model, proxy = RequestsModel(), RequestsFilter()
    proxy.setSourceModel(model)
    exec_ = stream(
        2,
        method="GET",
        path="/api/v1/namespaces/default/pods/web/exec",
        status=101,
        kubectl_command="kubectl exec",
        upgrade="accepted",
        protocol="websocket",
        subprotocol="v5.channel.k8s.io",
        detail=(("kind", "exec"), ("command", "sh -c 'exit 3'"), ("exit_code", "3")),
    )
    missing = stream(3, method="GET", path="/api/v1/namespaces/default/pods/nope", status=404)
    model.apply_rows(stream_rows(snapshot([stream(1), exec_, missing])))
    check_model(qtmodeltester, model)  # one tester watches one model
    assert [r.key for r in model.rows] == ["endpoint:lab/2", "endpoint:lab/3"]  # not /1
    assert model.headerData(STATUS, Qt.Orientation.Horizontal) == "Status"
    assert model.index(0, UPGRADE).data() == "accepted · websocket · v5.channel.k8s.io"
    proxy.set_upgrades_only(True)
    assert proxy.rowCount() == 1
    proxy.set_upgrades_only(False)
    proxy.set_status_class((400, 499))
    assert [proxy.index(r, PATH).data() for r in range(proxy.rowCount())] == [missing.path]
    proxy.set_status_class(None)
    proxy.set_text("exit 3")  # decoded detail is searchable
    assert proxy.rowCount() == 1
    proxy.set_cluster("other")
    assert proxy.rowCount() == 0

    (exec_row,) = [r for r in model.rows if r.key == exec_.key]
    assert as_kubectl(exec_row) == (
        "kubectl --context wicket-lab exec -i web -n default -- sh -c 'exit 3'"
    )
    curl = as_curl(exec_row)
    assert curl.startswith("curl -X GET --cacert ") and "Bearer $WICKET_ENDPOINT_TOKEN" in curl
    assert "https://127.0.0.1:6443/api/v1/namespaces/default/pods/web/exec" in curl
    (missing_row,) = [r for r in model.rows if r.key == missing.key]
    assert as_kubectl(missing_row) == "kubectl --context wicket-lab get pods nope -n default"

    seen: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: seen.append((a.column(), b.column())))
    moved = dataclasses.replace(exec_, bytes_up=exec_.bytes_up + 1)
    model.apply_rows(stream_rows(snapshot([stream(1), moved, missing])))
    assert seen == [REQUESTS.ticking]


@pytest.mark.parametrize(
    ("method", "path", "detail", "command"),
    [
        ("GET", "/version", (), "get --raw /version"),
        ("GET", "/api/v1/namespaces", (), "get namespaces"),
        ("GET", "/api/v1/namespaces/default", (), "get namespaces default"),
        (
            "GET",
            "/api/v1/namespaces/kube-system/pods",
            (("kind", "watch"),),
            "get pods -n kube-system -w",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/web/deployments/front",
            (),
            "get deployments.apps front -n web",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/ticker/log",
            (("kind", "log"),),
            "logs -f ticker -n default",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/web/portforward",
            (("ports", "80,443"),),
            "port-forward pod/web -n default 80 443",
        ),
        ("POST", "/api/v1/namespaces/default/pods/web/attach", (), "attach -i web -n default"),
        ("DELETE", "/api/v1/namespaces/default/pods/web", (), "delete pods web -n default"),
        (
            "GET",
            "/apis/apps/v1/namespaces/web/deployments/front/scale",
            (),
            "get --raw /apis/apps/v1/namespaces/web/deployments/front/scale",
        ),
    ],
)
def test_copy_as_kubectl(
    method: str, path: str, detail: tuple[tuple[str, str], ...], command: str
) -> None:
    view = stream(1, method=method, path=path, status=200, detail=detail)
    (row,) = stream_rows(snapshot([view]))
    assert as_kubectl(row) == f"kubectl --context wicket-lab {command}"


def test_copy_as_kubectl_without_a_verb() -> None:
    view = stream(1, method="PATCH", path="/api/v1/namespaces/default/pods/web/status", status=200)
    (row,) = stream_rows(snapshot([view]))
    assert as_kubectl(row).startswith("# PATCH /api/v1/namespaces/default/pods/web/status")
