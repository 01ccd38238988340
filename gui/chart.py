"""A small live traffic chart per cluster, painted with QPainter (no QtCharts).

``TrafficHistory`` keeps, per cluster, the last minute of up/down rates summed over the
cluster's kubectl-side streams; ``TrafficChart`` paints one cluster's history (or all
clusters summed) with the palette's colours, so it follows light and dark themes.
"""

from __future__ import annotations

import collections

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.service import ServiceSnapshot
from gui.format import human_rate
from gui.models import StreamRow, stream_rows

POINTS = 300  # one minute at 5 Hz
UP_COLOR = QColor("#3b82f6")
DOWN_COLOR = QColor("#22a06b")


class TrafficHistory:
    """Rates per cluster over time, fed once per snapshot."""

    def __init__(self, points: int = POINTS) -> None:
        self.points = points
        self.series: dict[str, collections.deque[tuple[float, float]]] = {}

    def add(self, snap: ServiceSnapshot, rows: list[StreamRow] | None = None) -> None:
        totals: dict[str, tuple[float, float]] = {c.name: (0.0, 0.0) for c in snap.clusters}
        for row in stream_rows(snap) if rows is None else rows:
            if row.hop != "kubectl" or not row.open:
                continue
            up, down = totals.get(row.view.cluster, (0.0, 0.0))
            totals[row.view.cluster] = (up + row.view.rate_up, down + row.view.rate_down)
        for name, value in totals.items():
            series = self.series.setdefault(name, collections.deque(maxlen=self.points))
            series.append(value)
        for name in set(self.series) - set(totals):
            self.series[name].append((0.0, 0.0))

    def values(self, cluster: str | None) -> list[tuple[float, float]]:
        if cluster is not None:
            return list(self.series.get(cluster, ()))
        length = max((len(s) for s in self.series.values()), default=0)
        out = [(0.0, 0.0)] * length
        for series in self.series.values():
            offset = length - len(series)
            for i, (up, down) in enumerate(series):
                a, b = out[offset + i]
                out[offset + i] = (a + up, b + down)
        return out


class TrafficChart(QWidget):
    """Paints a ``TrafficHistory``. Signals: none."""

    def __init__(self, history: TrafficHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.cluster: str | None = None
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("Traffic chart")

    def sizeHint(self) -> QSize:
        return QSize(400, 140)

    def set_cluster(self, name: str | None) -> None:
        self.cluster = name
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        values = self.history.values(self.cluster)
        pal = self.palette()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        area = QRectF(self.rect()).adjusted(8, 22, -8, -8)
        grid = pal.color(QPalette.ColorRole.Mid)
        grid.setAlpha(90)
        p.setPen(QPen(grid, 1))
        for i in range(5):
            y = area.top() + area.height() * i / 4
            p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        peak = max((max(u, d) for u, d in values), default=0.0)
        scale = max(peak * 1.15, 1024.0)
        for index, color in ((0, UP_COLOR), (1, DOWN_COLOR)):
            if len(values) < 2:
                break
            path = QPainterPath()
            step = area.width() / (self.history.points - 1)
            x0 = area.right() - step * (len(values) - 1)
            for i, pair in enumerate(values):
                point = QPointF(x0 + i * step, area.bottom() - area.height() * pair[index] / scale)
                if i == 0:
                    path.moveTo(point)
                else:
                    path.lineTo(point)
            p.setPen(QPen(color, 2))
            p.drawPath(path)
        up, down = values[-1] if values else (0.0, 0.0)
        title = self.cluster or "all clusters"
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(
            QRectF(8, 2, self.width() - 16, 18),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            f"Traffic — {title}   peak {human_rate(peak)}",
        )
        metrics = p.fontMetrics()
        x = float(self.width() - 8)
        for text, color in (
            (f"↓ {human_rate(down)}", DOWN_COLOR),
            (f"↑ {human_rate(up)}", UP_COLOR),
        ):
            width = metrics.horizontalAdvance(text)
            x -= width
            p.setPen(color)
            p.drawText(QPointF(x, 2 + metrics.ascent()), text)
            x -= 16
        p.end()
