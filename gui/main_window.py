"""The main window: clusters, live streams, stream detail, traffic, log, 'Try it', debug.

A 5 Hz timer reads the core's latest snapshot (an attribute read; the core runs on its
own thread) and, when it is new, hands it to the models, which apply batched diffs. The
window never receives per-byte signals and never waits for the core.
"""

from __future__ import annotations

import time

from PySide6.QtCore import (
    QItemSelection,
    QModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.service import ServiceSnapshot, version_text
from gui.aio import async_slot
from gui.backend import DEMO, Backend
from gui.chart import TrafficChart, TrafficHistory
from gui.cluster_menu import ClusterMenu
from gui.icons import state_icon
from gui.inspector import Inspector
from gui.lag import LagMonitor
from gui.models import (
    CLUSTER_ROLE,
    KEY_ROLE,
    STREAM_COLUMNS,
    ClustersModel,
    StreamRow,
    StreamsFilter,
    StreamsModel,
    column,
    online_count,
    stream_rows,
)
from gui.panels import DebugPanel, LogView, StreamDetail, TryItPanel
from gui.views import LiveTableView, live_table

TICK_MS = 200


class MainWindow(QMainWindow):
    """Wicket's main window.

    Signals: ``add_cluster_requested()``, ``quit_requested()``, ``ticked()`` (after each
    snapshot was applied), ``cluster_selected(str)``.
    """

    add_cluster_requested = Signal()
    quit_requested = Signal()
    ticked = Signal()
    cluster_selected = Signal(str)

    def __init__(self, backend: Backend, lag: LagMonitor | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.lag = lag or LagMonitor(parent=self)
        self.keep_running_in_tray = False
        self.setWindowTitle("Wicket")
        self.setWindowIcon(state_icon("online"))
        self.resize(1200, 760)

        self.clusters = ClustersModel()
        self.streams = StreamsModel()
        self.proxy = StreamsFilter()
        self.proxy.setSourceModel(self.streams)
        self.history = TrafficHistory()
        self.last_snapshot: ServiceSnapshot | None = None
        self.update_ms = 0.0
        self.max_update_ms = 0.0
        self._selected_cluster: str | None = None
        self._rows: list[StreamRow] = []  # the last snapshot's stream rows

        self._build_widgets()
        self._build_actions()
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.tick)
        self.lag.updated.connect(self._refresh_debug)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(lambda _scheme: self.chart.update())

    # -- construction ------------------------------------------------------------------

    def _build_widgets(self) -> None:
        left = self._build_cluster_panel()
        self.try_it = TryItPanel()
        self.try_it.copied.connect(lambda c: self.statusBar().showMessage(f"Copied: {c}", 4000))
        self.log_view = LogView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_streams_tab(), "&Streams")
        self.inspector = Inspector()
        self.inspector.show_stream.connect(self.show_stream)
        self.inspector.copied.connect(lambda c: self.statusBar().showMessage(f"Copied: {c}", 4000))
        self.tabs.addTab(self.inspector, "&Requests")
        self.tabs.addTab(self.try_it, "&Try it")
        self.tabs.currentChanged.connect(lambda _i: self._refresh_inspector())
        self.tabs.addTab(self.log_view, "&Log")

        self.detail = StreamDetail()
        self.chart = TrafficChart(self.history)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.tabs)
        right.addWidget(self.detail)
        right.addWidget(self.chart)
        right.setSizes([430, 150, 150])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([280, 920])
        self.setCentralWidget(main)
        self._build_debug_dock()
        self.status = QLabel()
        self.statusBar().addPermanentWidget(self.status)

    def _build_cluster_panel(self) -> QWidget:
        """The cluster list with its Add and Connect buttons (the window's left side)."""
        self.cluster_list = QListView()
        self.cluster_list.setModel(self.clusters)
        self.cluster_list.setAccessibleName("Clusters")
        self.cluster_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.cluster_list.setUniformItemSizes(False)
        self.cluster_list.setWordWrap(True)
        self.cluster_list.selectionModel().selectionChanged.connect(self._cluster_changed)
        self.cluster_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.cluster_list.customContextMenuRequested.connect(self._cluster_context_menu)
        self.cluster_menu = ClusterMenu(self.backend, self)
        self.add_button = QPushButton("&Add cluster…")
        self.add_button.clicked.connect(self.add_cluster_requested)
        self.connect_button = QPushButton("&Disconnect")
        self.connect_button.setEnabled(False)
        self.connect_button.clicked.connect(self._toggle_selected)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("<b>Clusters</b>"))
        left_layout.addWidget(self.cluster_list, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.connect_button)
        left_layout.addLayout(buttons)
        return left

    def _build_streams_tab(self) -> QWidget:
        """The filter row over the live streams table."""
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter streams (cluster, client, state…)  Ctrl+F")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAccessibleName("Filter streams")
        self.filter_edit.textChanged.connect(self.proxy.set_text)
        self.open_only = QCheckBox("&Open only")
        self.open_only.toggled.connect(self.proxy.set_open_only)
        self.this_cluster = QCheckBox("Selected &cluster only")
        self.this_cluster.toggled.connect(self._cluster_filter_toggled)
        self.all_hops = QCheckBox("All &hops")
        self.all_hops.setToolTip("Also show each stream as recorded at the relay and the agent")
        self.all_hops.toggled.connect(self.proxy.set_all_hops)
        filters = QHBoxLayout()
        for widget in (self.filter_edit, self.open_only, self.this_cluster, self.all_hops):
            filters.addWidget(widget)
        streams_tab = QWidget()
        streams_layout = QVBoxLayout(streams_tab)
        streams_layout.addLayout(filters)
        streams_layout.addWidget(self._build_table())
        return streams_tab

    def _build_table(self) -> LiveTableView:
        widths = [c.width for c in STREAM_COLUMNS]
        self.table = live_table(self.proxy, "Streams", widths, column("ID"))
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._refresh_detail())
        self.table.doubleClicked.connect(lambda index: self.show_request(index.data(KEY_ROLE)))
        self.table.setToolTip("Double-click an inspected request to see it in Requests")
        return self.table

    def _build_debug_dock(self) -> None:
        self.debug_panel = DebugPanel(self.lag)
        self.debug_dock = QDockWidget("Debug", self)
        self.debug_dock.setObjectName("debug")
        self.debug_dock.setWidget(self.debug_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.debug_dock)
        self.debug_dock.hide()

    def _build_actions(self) -> None:
        self.file_menu = file_menu = self.menuBar().addMenu("&File")
        self.add_action = QAction("&Add cluster…", self)
        self.add_action.setShortcut(QKeySequence.StandardKey.New)
        self.add_action.triggered.connect(self.add_cluster_requested)
        file_menu.addAction(self.add_action)
        file_menu.addSeparator()
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.quit_requested)
        file_menu.addAction(self.quit_action)
        self.menuBar().addMenu(self.cluster_menu.menu)
        self.view_menu = self.menuBar().addMenu("&View")
        find = QAction("&Find stream", self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.triggered.connect(self._focus_filter)
        self.view_menu.addAction(find)
        debug = self.debug_dock.toggleViewAction()
        debug.setText("&Debug panel")
        debug.setShortcut(QKeySequence("F12"))
        self.view_menu.addAction(debug)
        self.view_menu.addSeparator()
        for index in range(self.tabs.count()):
            action = QAction(self.tabs.tabText(index).replace("&", ""), self)
            action.setShortcut(QKeySequence(f"Alt+{index + 1}"))
            action.triggered.connect(lambda _c=False, i=index: self.tabs.setCurrentIndex(i))
            self.view_menu.addAction(action)
        #: The tray's menu is added here too when there is no tray.
        self.tray_menu_action: QAction | None = None
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction(f"Wicket {version_text()}", self)
        about.setEnabled(False)
        help_menu.addAction(about)

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        self.lag.start()
        self._timer.start()
        self.tick()

    def stop(self) -> None:
        self._timer.stop()
        self.lag.stop()

    def tick(self) -> None:
        """Apply the newest snapshot (if it is new) and drain logs and events."""
        snap = self.backend.latest
        core = self.backend.core
        records = core.log.drain()
        events = []
        while core.events:
            events.append(core.events.popleft())
        if records or events:
            self.log_view.add(records, events)
        if snap is self.last_snapshot:
            return
        started = time.perf_counter()
        self.last_snapshot = snap
        rows = stream_rows(snap)
        self.clusters.apply(snap, self.backend.known_clusters())
        self._rows = rows
        if self.tabs.currentWidget() is self.inspector:
            self.inspector.apply(rows)
        else:
            self.streams.apply(snap, rows)
        self.history.add(snap, rows)
        self.chart.update()
        self._refresh_detail()
        self._refresh_status(snap)
        self._select_default_cluster()
        self.update_ms = (time.perf_counter() - started) * 1000
        self.max_update_ms = max(self.max_update_ms, self.update_ms)
        self.ticked.emit()

    def select_cluster(self, name: str) -> bool:
        row = self.clusters.row_of(name)
        if row < 0:
            return False
        self.cluster_list.setCurrentIndex(self.clusters.index(row, 0))
        return True

    @property
    def selected_cluster(self) -> str | None:
        return self._selected_cluster

    def set_try_it(self, context: str | None, server: str = "") -> None:
        """Fill 'Try it'; it is the first screen while no stream has run yet (an empty
        table is no welcome, the commands that fill it are)."""
        self.try_it.set_context(context, server=server)
        if context is not None and not self.streams.rows:
            self.tabs.setCurrentWidget(self.try_it)

    # -- reactions ---------------------------------------------------------------------

    def _select_default_cluster(self) -> None:
        """The demo if it runs, else the first connected cluster, else the first."""
        rows = self.clusters.rows
        if self._selected_cluster is None and rows:
            connected = [r.name for r in rows if r.connected]
            first = DEMO if DEMO in connected else (connected or [rows[0].name])[0]
            self.select_cluster(first)

    def _cluster_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        name = indexes[0].data(CLUSTER_ROLE) if indexes else None
        self._selected_cluster = name
        self.chart.set_cluster(name)
        if self.this_cluster.isChecked():
            self.proxy.set_cluster(name)
        self._refresh_connect_button()
        if name:
            self.cluster_selected.emit(name)

    def _cluster_filter_toggled(self, on: bool) -> None:
        self.proxy.set_cluster(self._selected_cluster if on else None)

    def _refresh_connect_button(self) -> None:
        """The button and the Cluster menu follow the selected row, as the list shows it."""
        name = self._selected_cluster
        row = self.clusters.row(name) if name is not None else None
        self.cluster_menu.set_cluster(row)
        self.connect_button.setEnabled(name is not None)
        connected = row is not None and row.connected
        self.connect_button.setText("&Disconnect" if connected else "&Connect")

    def _cluster_context_menu(self, pos: QPoint) -> None:
        index = self.cluster_list.indexAt(pos)
        if not index.isValid():
            return
        self.cluster_list.setCurrentIndex(index)
        self.cluster_menu.menu.popup(self.cluster_list.viewport().mapToGlobal(pos))

    @async_slot()
    async def _toggle_selected(self) -> None:
        name = self._selected_cluster
        if name is None:
            return
        self.connect_button.setEnabled(False)
        try:
            await self.backend.toggle(name)
        finally:
            self._refresh_connect_button()

    def _focus_filter(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    def selected_stream_key(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return str(rows[0].data(KEY_ROLE)) if rows else None

    def select_stream(self, key: str) -> bool:
        proxy: QSortFilterProxyModel = self.proxy
        for row in range(proxy.rowCount()):
            index: QModelIndex = proxy.index(row, 0)
            if index.data(KEY_ROLE) == key:
                self.table.selectRow(row)
                return True
        return False

    def _refresh_inspector(self) -> None:
        """The Requests tab follows the snapshots only while it shows, and the streams
        table only while it does not (a hidden one costs nothing per tick, and catches up
        when shown); the streams' detail pane makes room for the requests' own."""
        inspecting = self.tabs.currentWidget() is self.inspector
        self.detail.setVisible(not inspecting)  # the Requests tab has its own detail pane
        if inspecting:
            self.inspector.apply(self._rows)
        else:
            self.streams.apply_rows(self._rows)

    def show_request(self, key: str) -> bool:
        """The stream ``key``'s request in the Requests tab (False: not an inspected
        request, e.g. a passthrough stream)."""
        self.inspector.apply(self._rows)
        if not self.inspector.select(key):
            return False
        self.tabs.setCurrentWidget(self.inspector)
        return True

    def show_stream(self, key: str) -> bool:
        """A request's stream in the Streams tab (its filters cleared if they hide it)."""
        self.tabs.setCurrentIndex(0)
        if self.select_stream(key):
            return True
        self.filter_edit.clear()
        self.open_only.setChecked(False)
        self.this_cluster.setChecked(False)
        return self.select_stream(key)

    def _refresh_detail(self) -> None:
        key = self.selected_stream_key()
        self.detail.show_row(self.streams.row_for_key(key) if key else None)

    def _refresh_status(self, snap: ServiceSnapshot) -> None:
        """Clusters as the list shows them; streams counted once, not once per hop."""
        clusters = self.clusters.rows
        self.status.setText(
            f"{online_count(clusters)}/{len(clusters)} clusters online · "
            f"{_streams(snap.open_streams)} open"
        )
        self._refresh_connect_button()

    def _refresh_debug(self) -> None:
        snap = self.last_snapshot
        self.debug_panel.refresh(
            self.update_ms,
            self.max_update_ms,
            time.time() - snap.taken_at if snap else 0.0,
            len(snap.streams) if snap else 0,
            "running" if self.backend.core.running else "stopped",
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        """With a tray, closing hides the window; without one, it quits."""
        if self.keep_running_in_tray:
            event.ignore()
            self.hide()
        else:
            event.ignore()
            self.quit_requested.emit()


def _streams(count: int) -> str:
    return "1 stream" if count == 1 else f"{count} streams"
