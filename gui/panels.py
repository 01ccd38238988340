"""The main window's smaller panels: stream detail, 'Try it', log, debug (UI lag)."""

from __future__ import annotations

import logging
import shlex
import time

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.service import ServiceEvent
from gui.format import human_bytes, human_duration, human_rate
from gui.lag import LagMonitor
from gui.models import PASSTHROUGH_NOTE, StreamRow, alpn_meaning
from gui.widgets import mono_font, mono_text

LOG_LINES = 5000


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


class StreamDetail(QWidget):
    """Everything known about the selected stream. Signals: none."""

    def __init__(self) -> None:
        super().__init__()
        self.text = mono_text(read_only=True)
        self.text.setAccessibleName("Stream detail")
        self.text.setPlaceholderText("Select a stream to see its details.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        self.key: str | None = None

    def show_row(self, row: StreamRow | None) -> None:
        if row is None:
            if self.key is not None:
                self.text.clear()
            self.key = None
            return
        self.key = row.key
        v = row.view
        lines = [
            f"stream      {row.short_id}  ({v.key}, recorded at the {row.hop} side)",
            f"cluster     {v.cluster}",
            f"endpoint    {row.endpoint}",
            f"client      {v.client or '—'}",
            f"request     {row.request or '—'}",
            f"upgrade     {row.upgrade or '—'}",
            f"bytes       ↑ {human_bytes(v.bytes_up)} ({v.bytes_up})   "
            f"↓ {human_bytes(v.bytes_down)} ({v.bytes_down})",
            f"rate        ↑ {human_rate(v.rate_up)}   ↓ {human_rate(v.rate_down)}",
            f"opened      {_clock(v.opened_at)}   age {human_duration(row.age)}",
            f"closed      {_clock(v.closed_at) if v.closed_at else '—'}",
            f"state       {row.state_text}",
        ]
        if row.tls:
            lines.append(f"tls hello   SNI {v.sni or '—'}, ALPN {v.alpn}: {alpn_meaning(v.alpn)}")
        if v.kubectl_command:
            lines.append(f"kubectl     {v.kubectl_command}")
        lines += [f"{name:<11} {value}" for name, value in v.detail]  # decoded session
        if not (row.request or row.upgrade):
            lines += ["", PASSTHROUGH_NOTE]
        elif row.hop == "kubectl":
            lines += ["", "Double-click the row to see this request in Requests."]
        text = "\n".join(lines)
        if text != self.text.toPlainText():
            self.text.setPlainText(text)


class TryItPanel(QWidget):
    """Copyable kubectl commands for the demo cluster. Signals: ``copied(str)``."""

    copied = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.grid = QGridLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(self.grid)
        layout.addStretch(1)
        self.commands: list[str] = []
        self.set_context(None)

    def set_context(
        self, context: str | None, kubeconfig: str | None = None, server: str = ""
    ) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        if context is None:
            self.heading.setText("The demo cluster is starting…")
            self.commands = []
            return
        self.heading.setText(
            f"<b>Try it.</b> The built-in demo cluster runs behind Wicket's tunnel at "
            f"{server}. Paste these in a terminal and watch the streams appear."
        )
        base = ["kubectl", "--context", context]
        if kubeconfig:
            base += ["--kubeconfig", kubeconfig]
        examples = [
            ("List pods", ["get", "pods"]),
            ("Run a shell in a pod", ["exec", "-it", "web", "--", "sh"]),
            ("Follow a log", ["logs", "-f", "ticker"]),
            ("Watch pods", ["get", "pods", "--watch"]),
            ("Forward a port", ["port-forward", "pod/web", "8080:80"]),
            ("Attach to a process", ["attach", "-it", "chat"]),
        ]
        self.commands = [shlex.join(base + args) for _, args in examples]
        for row, ((label, _), command) in enumerate(zip(examples, self.commands, strict=True)):
            edit = QLineEdit(command)
            edit.setReadOnly(True)
            edit.setFont(mono_font())
            edit.setAccessibleName(label)
            button = QPushButton("Copy")
            button.setAccessibleName(f"Copy: {label}")
            button.clicked.connect(lambda _c=False, c=command: self.copy(c))
            self.grid.addWidget(QLabel(label), row, 0)
            self.grid.addWidget(edit, row, 1)
            self.grid.addWidget(button, row, 2)

    def copy(self, command: str) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(command)
        self.copied.emit(command)


class LogView(QWidget):
    """Core log records and service events, newest last. Signals: none."""

    def __init__(self) -> None:
        super().__init__()
        self.text = mono_text(read_only=True)
        self.text.setMaximumBlockCount(LOG_LINES)
        self.text.setAccessibleName("Log")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter new lines…")
        self.filter.setClearButtonEnabled(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.text)
        self._formatter = logging.Formatter("%(levelname)-7s %(name)s: %(message)s")

    def add(self, records: list[logging.LogRecord], events: list[ServiceEvent]) -> None:
        lines = [f"{_clock(r.created)} {self._formatter.format(r)}" for r in records]
        lines += [
            f"{_clock(e.at)} EVENT   {e.kind} {e.subject} {e.detail}".rstrip() for e in events
        ]
        wanted = self.filter.text().strip().lower()
        if wanted:
            lines = [line for line in lines if wanted in line.lower()]
        if lines:
            self.text.appendPlainText("\n".join(lines))


class DebugPanel(QWidget):
    """UI loop lag and update costs, for people checking that nothing blocks the UI."""

    def __init__(self, lag: LagMonitor) -> None:
        super().__init__()
        self.lag = lag
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout(self)
        for key, title in (
            ("lag", "UI loop lag (p50 / p99 / max)"),
            ("update", "Model update per tick (last / max)"),
            ("snapshot", "Snapshot age"),
            ("streams", "Streams in snapshot"),
            ("core", "Core thread"),
        ):
            label = QLabel("—")
            label.setAccessibleName(title)
            self.labels[key] = label
            form.addRow(title, label)
        reset = QPushButton("Reset lag statistics")
        reset.clicked.connect(lag.reset)
        row = QHBoxLayout()
        row.addWidget(reset)
        row.addStretch(1)
        form.addRow(row)

    def refresh(
        self,
        update_ms: float,
        max_update_ms: float,
        snapshot_age: float,
        streams: int,
        core: str,
    ) -> None:
        s = self.lag.stats()
        self.labels["lag"].setText(
            f"{s['p50'] * 1000:.1f} / {s['p99'] * 1000:.1f} / {s['max'] * 1000:.1f} ms "
            f"({int(s['samples'])} samples)"
        )
        self.labels["update"].setText(f"{update_ms:.2f} / {max_update_ms:.2f} ms")
        self.labels["snapshot"].setText(f"{snapshot_age * 1000:.0f} ms")
        self.labels["streams"].setText(str(streams))
        self.labels["core"].setText(core)
