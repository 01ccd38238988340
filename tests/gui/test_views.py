"""The streams table repaints only what changed, and asks the model once per cell."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QApplication, QStyledItemDelegate, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from gui.models import TICKING, StreamsFilter, StreamsModel, column
from gui.views import LiveTableView
from tests.gui.test_models import snapshot, stream


class PaintSpy(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.region = QRect()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, QPaintEvent):
            self.region = self.region.united(event.rect())
        return False


def test_counter_changes_repaint_only_visible_counter_cells(qtbot: QtBot) -> None:
    model = StreamsModel()
    proxy = StreamsFilter()
    proxy.setSourceModel(model)
    view = LiveTableView()
    qtbot.addWidget(view)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(column("ID"), Qt.SortOrder.DescendingOrder)
    view.resize(1000, 200)
    model.apply(snapshot([stream(n) for n in range(1, 201)]))
    view.show()
    qtbot.waitExposed(view)
    QApplication.processEvents()
    spy = PaintSpy()
    view.viewport().installEventFilter(spy)

    model.apply(snapshot([stream(n, bytes_up=n * 99) for n in range(1, 201)], now=111.0))
    QApplication.processEvents()

    header = view.horizontalHeader()
    first, last = TICKING  # Up, Down, Rate, Age
    left = header.sectionViewportPosition(first)
    right = header.sectionViewportPosition(last) + header.sectionSize(last)
    assert not spy.region.isEmpty()
    assert spy.region.left() >= left and spy.region.right() < right
    assert spy.region.bottom() < view.viewport().height()
    assert proxy.index(0, column("Up")).data() == "19.3 KiB"  # stream 200: 200 * 99 bytes


def test_multi_data_matches_data() -> None:
    model = StreamsModel()
    proxy = StreamsFilter()
    proxy.setSourceModel(model)
    failed = stream(2, closed_at=105.0, state="failed", close_reason="error: reset")
    model.apply(snapshot([stream(1), failed]))
    delegate = QStyledItemDelegate()
    for row in range(proxy.rowCount()):
        for col in range(proxy.columnCount()):
            index = proxy.index(row, col)
            option = QStyleOptionViewItem()
            delegate.initStyleOption(option, index)  # Qt asks through multiData()
            assert option.text == index.data()
            expected = index.data(Qt.ItemDataRole.TextAlignmentRole)
            if expected is not None:
                assert int(option.displayAlignment.value) == expected
