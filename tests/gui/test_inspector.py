"""The request inspector, driven by the real app and the real kubectl through the demo
in inspect mode: exec (WebSocket and SPDY, and with a terminal), port-forward, ``logs``,
``logs -f`` and ``get -w`` each show as a row with its fields; an exec's detail shows its
command, exit code, bytes per channel, terminal sizes and headers (the credential
redacted); the filters, the copy commands and the link between a stream and its request
work."""

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


def _exec_in_a_terminal(home: Path) -> subprocess.CompletedProcess[str]:
    """``exec -it`` under ``script``, a real terminal of 100x30: kubectl sends its size."""
    remote = "sh -c 'stty size; exit 4'"
    command = f"stty cols 100 rows 30; {KUBECTL} --context wicket-demo exec -it web -- {remote}"
    return subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        env=kubectl_env(home),
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _key_where(window: MainWindow, path_end: str, word: str, *, has: bool = True) -> str | None:
    """The key of a request whose path ends with ``path_end`` and whose query has
    ``word`` (or, ``has=False``, has it not)."""
    for row in window.inspector.model.rows:
        if (row.view.path or "").endswith(path_end) and (word in (row.view.query or "")) == has:
            return row.key
    return None


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
        jsonpath = '{.users[?(@.name=="wicket-demo")].user.token}'
        raw = await kubectl(home, "config", "view", "--raw", "-o", f"jsonpath={jsonpath}")
        token = raw.stdout.strip()
        assert len(token) > 20, raw  # what kubectl presents: it must never show
        clipboard = QGuiApplication.clipboard()
        assert clipboard is not None

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
            assert re.search(r"channel_bytes\s+\S*\berror=[1-9]", detail), detail
            assert "\n  Authorization: Bearer <redacted>\n" in detail, detail
            assert re.search(r"response headers\n(  .*\n)*  Upgrade: ", detail, re.I), detail
            assert token not in detail
            inspector.detail.copy_kubectl.click()
            assert clipboard.text() == (  # no -i: kubectl sent no stdin
                "kubectl --context wicket-demo exec web -c web -n default -- sh -c 'exit 3'"
            )
            inspector.detail.copy_curl.click()
            assert "$WICKET_ENDPOINT_TOKEN" in clipboard.text()
            assert "/api/v1/namespaces/default/pods/web/exec" in clipboard.text()

        # exec with a terminal: its size arrives on the resize channel.
        monkeypatch.delenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
        tty = await asyncio.to_thread(_exec_in_a_terminal, home)
        assert tty.returncode == 4, (tty.stdout, tty.stderr)  # the size: below, as decoded
        await wait_until(
            lambda: _key_where(window, "/pods/web/exec", "tty=true") is not None, 10, what="tty"
        )
        tty_key = _key_where(window, "/pods/web/exec", "tty=true")
        assert tty_key is not None and inspector.select(tty_key)
        # The session ends in the record after kubectl exits: wait for its exit code
        # too, so the channel counts read below are the final ones.
        await wait_until(
            lambda: (
                "resizes" in (text := inspector.detail.text.toPlainText())
                and re.search(r"exit_code\s+4", text) is not None
            ),
            10,
            what="resizes and the exit code",
        )
        detail = inspector.detail.text.toPlainText()
        assert re.search(r"resizes\s+\d+: 100x30\b", detail), detail
        assert re.search(r"channel_bytes\s+stdin=\d+,stdout=[1-9]\d*,.*resize=[1-9]", detail)
        assert re.search(r"exit_code\s+4", detail) and token not in detail, detail
        inspector.detail.copy_kubectl.click()
        assert clipboard.text() == (
            "kubectl --context wicket-demo exec -it web -c web -n default -- "
            "sh -c 'stty size; exit 4'"
        )

        # logs without -f copies without it.
        done = await kubectl(home, "--context", "wicket-demo", "logs", "ticker", "--tail=2")
        assert done.returncode == 0, done.stderr
        await wait_until(
            lambda: _key_where(window, "/pods/ticker/log", "follow", has=False) is not None,
            10,
            what="logs",
        )
        logs_key = _key_where(window, "/pods/ticker/log", "follow", has=False)
        assert logs_key is not None and inspector.select(logs_key)
        inspector.detail.copy_kubectl.click()
        words = clipboard.text().split()
        assert words[:4] == ["kubectl", "--context", "wicket-demo", "logs"], words
        assert "-f" not in words and "--tail=2" in words, words
        assert words[-3:] == ["ticker", "-n", "default"], words
        assert token not in inspector.detail.text.toPlainText()

        # port-forward (a GET through it), logs -f and get -w.
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
        await wait_until(
            lambda: _key_where(window, "/pods/ticker/log", "follow=true") is not None,
            10,
            what="logs -f",
        )
        await wait_until(
            lambda: any(p.endswith("/pods") and c == "kubectl get" for p, _, _, c in _rows(window)),
            10,
            what="get -w",
        )
        pf = _find(window, "/pods/web/portforward")
        assert pf is not None and inspector.select(pf)
        await wait_until(lambda: "connection" in inspector.detail.text.toPlainText(), 10, what="pf")
        assert re.search(r"ports\s+80", inspector.detail.text.toPlainText())
        log_key = _key_where(window, "/pods/ticker/log", "follow=true")
        assert log_key is not None and inspector.select(log_key)
        assert re.search(r"lines\s+\d+", inspector.detail.text.toPlainText())
        inspector.detail.copy_kubectl.click()
        assert "-f" in clipboard.text().split()
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
        query="command=sh&command=-c&command=exit+3&container=web&stdin=true&stdout=true",
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
        "kubectl --context wicket-lab exec -i web -c web -n default -- sh -c 'exit 3'"
    )
    curl = as_curl(exec_row)
    assert curl.startswith("curl -X GET --cacert ") and "Bearer $WICKET_ENDPOINT_TOKEN" in curl
    assert f"'https://127.0.0.1:6443/api/v1/namespaces/default/pods/web/exec?{exec_.query}'" in curl
    (missing_row,) = [r for r in model.rows if r.key == missing.key]
    assert as_kubectl(missing_row) == "kubectl --context wicket-lab get pods nope -n default"

    seen: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: seen.append((a.column(), b.column())))
    moved = dataclasses.replace(exec_, bytes_up=exec_.bytes_up + 1)
    model.apply_rows(stream_rows(snapshot([stream(1), moved, missing])))
    assert seen == [REQUESTS.ticking]


POD = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(
    ("method", "path", "query", "detail", "command"),
    [
        ("GET", "/version", "", (), "get --raw /version"),
        ("GET", "/openapi/v3", "hash=ab", (), "get --raw '/openapi/v3?hash=ab'"),
        ("GET", "/api/v1/namespaces", "limit=500", (), "get namespaces"),
        ("GET", "/api/v1/namespaces/default", "", (), "get namespaces default"),
        ("GET", "/api/v1/pods", "limit=500", (), "get pods -A"),  # all namespaces
        ("GET", "/api/v1/nodes", "", (), "get nodes"),
        (
            "GET",
            "/api/v1/namespaces/kube-system/pods",
            "labelSelector=app%3Dweb&resourceVersion=5&watch=true",
            (),
            "get pods -l app=web -w -n kube-system",
        ),
        (  # the decoder's word is not the query: no watch asked, no -w
            "GET",
            POD,
            "fieldSelector=status.phase%3DRunning",
            (("kind", "watch"),),
            "get pods --field-selector status.phase=Running -n default",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/web/deployments/front",
            "",
            (),
            "get deployments.apps front -n web",
        ),
        ("GET", f"{POD}/ticker/log", "", (("kind", "log"),), "logs ticker -n default"),
        ("GET", f"{POD}/ticker/log", "follow=false", (), "logs ticker -n default"),
        (
            "GET",
            f"{POD}/ticker/log",
            "container=ticker&follow=true",
            (("kind", "log"),),
            "logs -f -c ticker ticker -n default",
        ),
        (
            "GET",
            f"{POD}/ticker/log",
            "tailLines=5&sinceSeconds=60&timestamps=true&previous=true&limitBytes=100",
            (),
            "logs -p --timestamps --tail=5 --since=60s --limit-bytes=100 ticker -n default",
        ),
        (
            "GET",
            f"{POD}/ticker/log",
            "sinceTime=2025-01-02T03%3A04%3A05Z",
            (),
            "logs --since-time=2025-01-02T03:04:05Z ticker -n default",
        ),
        (  # ports from the decoded streams (kubectl's are not in the query), local ones free
            "GET",
            f"{POD}/web/portforward",
            "",
            (("ports", "80,443"),),
            "port-forward pod/web -n default :80 :443",
        ),
        (
            "GET",
            f"{POD}/web/portforward",
            "ports=8080",
            (),
            "port-forward pod/web -n default :8080",
        ),
        ("GET", f"{POD}/web/portforward", "", (), "port-forward pod/web -n default :PORT"),
        (
            "GET",
            f"{POD}/web/exec",
            "command=ls&command=-l&container=web&stdout=true&stderr=true",
            (("command", "echo from the decoder"),),
            "exec web -c web -n default -- ls -l",
        ),
        (
            "GET",
            f"{POD}/web/exec",
            "command=sh&container=web&stdin=true&stdout=true&tty=true",
            (),
            "exec -it web -c web -n default -- sh",
        ),
        ("GET", f"{POD}/web/exec", "command=date&tty=true", (), "exec -t web -n default -- date"),
        (
            "POST",
            f"{POD}/chat/attach",
            "container=chat&stdin=true&stdout=true",
            (),
            "attach -i chat -c chat -n default",
        ),
        ("POST", f"{POD}/chat/attach", "command=ignored", (), "attach chat -n default"),
        ("DELETE", f"{POD}/web", "", (), "delete pods web -n default"),
        (
            "GET",
            "/apis/apps/v1/namespaces/web/deployments/front/scale",
            "",
            (),
            "get --raw /apis/apps/v1/namespaces/web/deployments/front/scale",
        ),
    ],
)
def test_copy_as_kubectl(
    method: str, path: str, query: str, detail: tuple[tuple[str, str], ...], command: str
) -> None:
    """Per path shape: flags come from the request's query (never assumed)."""
    view = stream(1, method=method, path=path, query=query, status=200, detail=detail)
    (row,) = stream_rows(snapshot([view]))
    assert as_kubectl(row) == f"kubectl --context wicket-lab {command}"


def test_copy_as_kubectl_without_a_verb() -> None:
    view = stream(1, method="PATCH", path="/api/v1/namespaces/default/pods/web/status", status=200)
    (row,) = stream_rows(snapshot([view]))
    assert as_kubectl(row).startswith("# PATCH /api/v1/namespaces/default/pods/web/status")
