"""A table view for models whose counters change on every tick."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

Index = QModelIndex | QPersistentModelIndex


class LiveTableView(QTableView):
    """Repaints only the visible cells of a changed range. Signals: QTableView's.

    Every tick the streams proxy reports one range over all its rows (the counter
    columns); for a range taller than the viewport Qt repaints the whole viewport, every
    column. Clipping the range to the visible rows first keeps the repaint to the cells
    that changed: a few dozen, whatever the number of streams.
    """

    def dataChanged(
        self,
        topLeft: Index,
        bottomRight: Index,
        roles: Sequence[int] = (),
    ) -> None:
        first, last = topLeft.row(), bottomRight.row()
        if first != last and topLeft.isValid() and bottomRight.isValid():
            model = self.model()
            top = self.rowAt(0)
            bottom = self.rowAt(self.viewport().height() - 1)
            if top < 0:
                return  # no row visible at all
            first, last = max(first, top), min(last, bottom if bottom >= 0 else last)
            if first > last:
                return
            parent = topLeft.parent()
            topLeft = model.index(first, topLeft.column(), parent)
            bottomRight = model.index(last, bottomRight.column(), parent)
        super().dataChanged(topLeft, bottomRight, list(roles))


def live_table(
    model: QAbstractItemModel, name: str, widths: Sequence[int], newest_first: int
) -> LiveTableView:
    """A live table as the window's tables are: one selected row, sortable (by the
    column ``newest_first``, descending, to begin with), one line per cell, columns of
    the given initial ``widths``, the last one stretching."""
    table = LiveTableView()
    table.setModel(model)
    table.setAccessibleName(name)
    table.setSortingEnabled(True)
    table.sortByColumn(newest_first, Qt.SortOrder.DescendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)  # one line per cell: cheaper to lay out at 5 Hz
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    for position, width in enumerate(widths):
        table.setColumnWidth(position, width)
    return table
