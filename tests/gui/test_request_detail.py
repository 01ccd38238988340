"""The request detail pane's text: the target with its query, what was decoded, then the
headers both ways as the core recorded them (redacted there), with what was cut."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.service import RecordedHeaders
from gui.inspector import RequestDetail, describe
from gui.models import stream_rows
from tests.gui.test_models import snapshot, stream

if TYPE_CHECKING:
    from pytestqt.qtbot import QtBot

HEADERS = RecordedHeaders(
    (("Authorization", "Bearer <redacted>"), ("User-Agent", "kubectl/v1.33.0")),
    cut_lines=2,
    cut_bytes=40,
)


def test_the_detail_shows_the_target_decoding_and_headers(qtbot: QtBot) -> None:
    view = stream(
        1,
        method="GET",
        path="/api/v1/namespaces/default/pods/web/exec",
        query="command=sh&command=-c&command=echo+hi%3B+exit+3&stdin=true&tty=true",
        status=101,
        detail=(
            ("kind", "exec"),
            ("exit_code", "0"),
            ("channel_bytes", "stdin=3,stdout=10,error=0,resize=26"),
            ("resizes", "1: 80x24"),
        ),
        request_headers=HEADERS,
    )
    (row,) = stream_rows(snapshot([view]))
    text = describe(row)
    lines = text.splitlines()
    assert lines[:2] == [
        "request     GET /api/v1/namespaces/default/pods/web/exec",
        "query       command=sh command=-c command='echo hi; exit 3' stdin=true tty=true",
    ]
    assert "channel_bytes stdin=3,stdout=10,error=0,resize=26" in lines
    assert "resizes     1: 80x24" in lines
    headers = lines[lines.index("request headers") :]
    assert headers == [
        "request headers",
        "  Authorization: Bearer <redacted>",
        "  User-Agent: kubectl/v1.33.0",
        "  (2 more lines (40 characters) not recorded)",
        "",
        "response headers",
        "  —",  # none recorded (yet)
    ]
    pane = RequestDetail()
    qtbot.addWidget(pane)
    pane.show_row(row)
    assert pane.text.toPlainText() == text
    pane.show_row(None)
    assert pane.text.toPlainText() == ""
    (plain,) = stream_rows(snapshot([stream(2, method="GET", path="/version", status=200)]))
    assert describe(plain).splitlines()[1] == "status      200"  # no query, no query line
