"""Qt models of the service snapshot: clusters and streams, updated in batches.

Every tick the window hands the newest ``ServiceSnapshot`` to ``apply()``; the models
diff it against what they show, by key, and tell the views only what changed: removed
rows in contiguous ranges, new rows appended in one insert, ``dataChanged`` for rows
whose values changed. Views never get a reset, so selection and scroll position stay,
and the cost per tick is proportional to the rows, never to the bytes moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractListModel,
    QAbstractTableModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

from core.service import ClusterView, ServiceSnapshot, StreamView
from gui.format import human_bytes, human_duration, human_rate, human_rtt

R = TypeVar("R")
Index = QModelIndex | QPersistentModelIndex
RoleData = QModelRoleDataSpan | QModelRoleData

SORT_ROLE = Qt.ItemDataRole.UserRole
KEY_ROLE = Qt.ItemDataRole.UserRole + 1
HOP_ROLE = Qt.ItemDataRole.UserRole + 2
OPEN_ROLE = Qt.ItemDataRole.UserRole + 3
CLUSTER_ROLE = Qt.ItemDataRole.UserRole + 4
STATE_ROLE = Qt.ItemDataRole.UserRole + 5

STATE_COLORS = {
    "online": QColor("#2e9d5b"),
    "reconnecting": QColor("#d08a12"),
    "offline": QColor("#c0392b"),
}
FAILED_COLOR = QColor("#c0392b")
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
PASSTHROUGH_NOTE = (
    "Passthrough endpoint: TLS runs end to end, so requests and upgrades are not visible "
    "here (an inspect-mode endpoint shows them: Cluster → Edit… switches the mode)."
)


def role_items(span: RoleData) -> Iterable[QModelRoleData]:
    """The entries of a ``multiData()`` request (PySide iterates spans; its stubs miss it)."""
    if isinstance(span, QModelRoleData):
        return (span,)
    return cast(Iterable[QModelRoleData], span)


def ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, last)`` of sorted indices."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def apply_keyed(
    model: QAbstractItemModel,
    rows: list[R],
    new_rows: Sequence[R],
    key: Callable[[R], str],
    columns: int,
    *,
    changed_columns: Callable[[R, R], tuple[int, int]] | None = None,
) -> None:
    """Turn ``rows`` into ``new_rows`` (by key) with minimal, batched model signals.

    Rows that stay keep their position; new ones are appended in ``new_rows`` order.
    ``changed_columns(old, new)`` narrows each ``dataChanged`` to the columns that
    changed: a proxy re-sorts only when the sort column is inside the range, and views
    repaint only those cells.
    """
    wanted = {key(r): r for r in new_rows}
    gone = [i for i, r in enumerate(rows) if key(r) not in wanted]
    for first, last in reversed(ranges(gone)):
        model.beginRemoveRows(QModelIndex(), first, last)
        del rows[first : last + 1]
        model.endRemoveRows()
    changed: dict[tuple[int, int], list[int]] = {}
    for i, old in enumerate(rows):
        new = wanted.pop(key(old))
        if new != old:
            rows[i] = new
            span = changed_columns(old, new) if changed_columns else (0, columns - 1)
            changed.setdefault(span, []).append(i)
    for (left, right), indices in changed.items():
        for first, last in ranges(indices):
            model.dataChanged.emit(model.index(first, left), model.index(last, right))
    if wanted:
        start = len(rows)
        model.beginInsertRows(QModelIndex(), start, start + len(wanted) - 1)
        rows.extend(wanted.values())
        model.endInsertRows()


# -- streams -------------------------------------------------------------------------


def request_text(view: StreamView) -> str:
    """``GET /api/v1/…  200`` for an inspected request ("" in passthrough)."""
    if view.method is None:
        return ""
    status = f"  {view.status}" if view.status is not None else ""
    return f"{view.method} {view.path or ''}{status}"


def upgrade_text(view: StreamView) -> str:
    """``accepted · websocket · v5.channel.k8s.io`` ("" when nothing was upgraded)."""
    if not view.upgrade or view.upgrade == "none":
        return ""
    return " · ".join(p for p in (view.upgrade, view.protocol, view.subprotocol) if p)


def tls_text(view: StreamView) -> str:
    """What a passthrough stream's TLS ClientHello said: ``ALPN · SNI``, the telling part
    first ("" if none was seen; an inspected request's TLS ended at Wicket)."""
    if view.alpn is None and view.sni is None:
        return ""
    return f"{view.alpn or '?'} · {view.sni or 'no SNI'}"


def alpn_meaning(alpn: str | None) -> str:
    """What kubectl's ALPN offer says about the connection, in a few words."""
    if alpn is None:
        return ""
    if "h2" in alpn.split(","):
        return "an API connection (kubectl offers h2)"
    if alpn == "http/1.1":
        return "HTTP/1.1 only: kubectl's exec, attach and port-forward upgrades"
    return "not kubectl's usual offer"


class StreamRow(NamedTuple):
    """A stream with what the table needs from the rest of the snapshot.

    A named tuple: hundreds are built and compared on every tick.
    """

    view: StreamView
    endpoint: str  # the listener kubectl used, e.g. "127.0.0.1:6443 (local)"
    hop: str  # kubectl | relay | agent: where along the path this record was taken
    age: float
    request: str  # inspect-mode fields ("" when the core does not see them)
    upgrade: str
    tls: str  # passthrough: the ClientHello's SNI and ALPN ("" when none was seen)

    @property
    def key(self) -> str:
        return self.view.key

    @property
    def open(self) -> bool:
        return self.view.closed_at is None

    @property
    def short_id(self) -> str:
        return self.view.key.rsplit("/", 1)[-1]

    @property
    def search_text(self) -> str:
        """What the filter box matches: the row's words, not its changing counters."""
        v = self.view
        words = (v.key, v.cluster, self.endpoint, v.client or "", self.request, self.upgrade)
        return " ".join((*words, self.tls, self.state_text)).lower()

    @property
    def state_text(self) -> str:
        v = self.view
        if v.closed_at is not None and v.close_reason and v.close_reason != "eof":
            return f"{v.state}: {v.close_reason}"
        return v.state


def stream_rows(snap: ServiceSnapshot) -> list[StreamRow]:
    """The snapshot's streams, each labelled with its endpoint and hop."""
    endpoints = {e.component: e.address for e in snap.endpoints}
    agents = {s.component for s in snap.sessions if s.role == "agent"}
    now = snap.taken_at
    rows = []
    for v in snap.streams:
        if v.component in endpoints:
            hop, label = "kubectl", f"{endpoints[v.component]} ({v.endpoint})"
        elif v.component in agents:
            hop, label = "agent", v.endpoint
        elif v.endpoint == "public":
            hop, label = "kubectl", f"relay public ({v.component})"
        else:
            hop, label = "relay", v.endpoint
        age = (v.closed_at or now) - v.opened_at
        rows.append(StreamRow(v, label, hop, age, request_text(v), upgrade_text(v), tls_text(v)))
    return rows


class Column(NamedTuple):
    """One column of the streams table: everything that depends on its position."""

    title: str
    width: int  # initial width in pixels (the last column stretches)
    display: Callable[[StreamRow], str]
    sort: Callable[[StreamRow], Any] | None = None  # None: the display text, lowercased
    numeric: bool = False  # right-aligned
    inspect: bool = False  # inspect-mode fields: a passthrough row explains why it is empty
    counter: bool = False  # changes on every tick of an open stream


def _id_sort(row: StreamRow) -> int:
    return int(row.short_id) if row.short_id.isdigit() else 0


def _counter(
    title: str, width: int, value: Callable[[StreamRow], float], text: Callable[[float], str]
) -> Column:
    """A right-aligned counter, sorted by ``value`` and shown as ``text(value)``."""
    return Column(title, width, lambda r: text(value(r)), value, numeric=True, counter=True)


def _rate(row: StreamRow) -> float:
    """Both directions' rate while open; -1 (shown empty, sorted last) once closed."""
    return row.view.rate_up + row.view.rate_down if row.open else -1.0


STREAM_COLUMNS: tuple[Column, ...] = (
    Column("ID", 44, lambda r: r.short_id, _id_sort, numeric=True),
    Column("Cluster", 70, lambda r: r.view.cluster),
    Column("Endpoint", 160, lambda r: r.endpoint),
    Column("Client", 120, lambda r: r.view.client or ""),
    Column("Request", 110, lambda r: r.request or "—", inspect=True),
    Column("Upgrade", 110, lambda r: r.upgrade or "—", inspect=True),
    Column("TLS hello", 170, lambda r: r.tls or "—"),
    _counter("Up", 75, lambda r: r.view.bytes_up, human_bytes),
    _counter("Down", 75, lambda r: r.view.bytes_down, human_bytes),
    _counter("Rate", 85, _rate, lambda bps: human_rate(bps) if bps >= 0 else ""),
    _counter("Age", 60, lambda r: r.age, human_duration),
    Column("State", 80, lambda r: r.state_text),
)


def column(title: str, columns: Sequence[Column] = STREAM_COLUMNS) -> int:
    """The position of the column called ``title`` (of the streams table by default)."""
    return next(i for i, c in enumerate(columns) if c.title == title)


class Table(NamedTuple):
    """A table's columns, and the spans a row's change touches (derived once)."""

    columns: tuple[Column, ...]
    ticking: tuple[int, int]  # the adjacent counter columns an open row's tick changes

    @classmethod
    def of(cls, columns: tuple[Column, ...]) -> Table:
        counters = [i for i, c in enumerate(columns) if c.counter]
        return cls(columns, (counters[0], counters[-1]))

    @property
    def last(self) -> int:
        return len(self.columns) - 1

    def changed(self, old: StreamRow, new: StreamRow) -> tuple[int, int]:
        """The columns between which ``new`` differs from ``old``."""
        a, b = old.view, new.view
        if a.state != b.state or a.closed_at != b.closed_at or a.close_reason != b.close_reason:
            return (self.ticking[0], self.last)
        if (a.client, old.endpoint, old.request, old.upgrade, old.tls) != (
            b.client,
            new.endpoint,
            new.request,
            new.upgrade,
            new.tls,
        ):
            return (0, self.last)
        return self.ticking


STREAMS = Table.of(STREAM_COLUMNS)
TICKING = STREAMS.ticking


class StreamsModel(QAbstractTableModel):
    """Every stream of the latest snapshot (``table``: its columns). Signals: the
    standard model signals only."""

    def __init__(self, table: Table = STREAMS) -> None:
        super().__init__()
        self.table = table
        self.columns = table.columns
        self.rows: list[StreamRow] = []

    def apply(self, snap: ServiceSnapshot, rows: list[StreamRow] | None = None) -> None:
        """Show ``snap`` (``rows``: its ``stream_rows``, if the caller has them already)."""
        self.apply_rows(stream_rows(snap) if rows is None else rows)

    def apply_rows(self, rows: list[StreamRow]) -> None:
        """Show the snapshot's ``stream_rows`` (those :meth:`select` keeps)."""
        apply_keyed(
            self,
            self.rows,
            self.select(rows),
            lambda r: r.key,
            len(self.columns),
            changed_columns=self.table.changed,
        )

    def select(self, rows: list[StreamRow]) -> Sequence[StreamRow]:
        """The rows this model shows (all of them: every stream)."""
        return rows

    def row_for_key(self, key: str) -> StreamRow | None:
        return next((r for r in self.rows if r.key == key), None)

    # -- QAbstractItemModel ------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == Qt.ItemDataRole.DisplayRole and horizontal and 0 <= section < len(self.columns):
            return self.columns[section].title
        return None

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        # Qt's own index() asks rowCount() and columnCount(): two more Python calls for
        # every index the proxy maps, every painted cell.
        if parent.isValid() or not (0 <= row < len(self.rows) and 0 <= column < len(self.columns)):
            return QModelIndex()
        return self.createIndex(row, column)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        return self._value(self.rows[index.row()], self.columns[index.column()], role)

    def multiData(self, index: Index, roleDataSpan: RoleData) -> None:
        """All the roles a delegate paints a cell with, in one call instead of one per role."""
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return
        row, col = self.rows[index.row()], self.columns[index.column()]
        for role_data in role_items(roleDataSpan):
            role_data.setData(self._value(row, col, role_data.role()))

    def _value(self, row: StreamRow, col: Column, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return col.display(row)
        if role == SORT_ROLE:
            return col.sort(row) if col.sort else col.display(row).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            if col.inspect and not (row.request or row.upgrade):
                return PASSTHROUGH_NOTE
            return col.display(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and row.view.state == "failed":
            return QBrush(FAILED_COLOR)
        return self._row_value(row, role)

    @staticmethod
    def _row_value(row: StreamRow, role: int) -> Any:
        """The roles that are the same in every column of a row."""
        if role == KEY_ROLE:
            return row.key
        if role == HOP_ROLE:
            return row.hop
        if role == OPEN_ROLE:
            return row.open
        if role == CLUSTER_ROLE:
            return row.view.cluster
        return None


class StreamsFilter(QSortFilterProxyModel):
    """Filters streams by text, open-only, hop and cluster; sorts by ``SORT_ROLE``."""

    def __init__(self) -> None:
        super().__init__()
        self._text = ""
        self._open_only = False
        self._all_hops = False
        self._cluster: str | None = None
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_open_only(self, on: bool) -> None:
        self.beginFilterChange()
        self._open_only = on
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_all_hops(self, on: bool) -> None:
        self.beginFilterChange()
        self._all_hops = on
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_cluster(self, name: str | None) -> None:
        self.beginFilterChange()
        self._cluster = name
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if not isinstance(model, StreamsModel) or source_parent.isValid():
            return True
        row = model.rows[source_row]  # direct: this runs for every changed row, every tick
        if not self._all_hops and row.hop != "kubectl":
            return False
        if self._open_only and not row.open:
            return False
        if self._cluster is not None and row.view.cluster != self._cluster:
            return False
        return not self._text or self._text in row.search_text

    def multiData(self, index: Index, roleDataSpan: RoleData) -> None:
        """One Python call per painted cell (Qt's default makes one ``data()`` per role)."""
        model = self.sourceModel()
        if model is not None and index.isValid():
            model.multiData(self.mapToSource(index), roleDataSpan)


# -- clusters ------------------------------------------------------------------------


DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ClusterRow:
    """A cluster as every part of the app shows it: the list, the tray, the status bar.

    The state is the snapshot's (the desktop runtime's word on a configured cluster: a
    user's Disconnect wins over an agent the relay still sees); ``connected`` means the
    cluster has a local endpoint in it.
    """

    view: ClusterView
    modes: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def connected(self) -> bool:
        return bool(self.view.endpoints)

    @property
    def state(self) -> str:
        return self.view.state

    @property
    def summary(self) -> str:
        v = self.view
        parts = [v.state]
        if v.state != "online" and v.reason and v.reason != v.state:
            parts[0] = f"{v.state}: {v.reason}"
        if v.rtt is not None and self.connected:
            parts.append(f"RTT {human_rtt(v.rtt)}")
        parts.extend(v.endpoints)
        if v.via and self.connected:
            parts.append(f"via {v.via}")
        if v.public_address:
            parts.append(f"public {v.public_address}")
        if self.modes:
            parts.append("/".join(sorted(set(self.modes))))
        return " · ".join(parts)


def cluster_rows(snap: ServiceSnapshot, known: Sequence[str] = ()) -> list[ClusterRow]:
    """The snapshot's clusters, then the ``known`` ones it lacks (disconnected)."""
    modes: dict[str, list[str]] = {}
    for e in snap.endpoints:
        modes.setdefault(e.cluster, []).append(e.mode)
    rows = [ClusterRow(c, tuple(modes.get(c.name, ()))) for c in snap.clusters]
    seen = {c.name for c in snap.clusters}
    missing = [n for n in known if n not in seen]
    return rows + [ClusterRow(ClusterView(n, DISCONNECTED, None, None, None), ()) for n in missing]


def online_count(rows: Iterable[ClusterRow]) -> int:
    return sum(1 for r in rows if r.state == "online")


class ClustersModel(QAbstractListModel):
    """One row per cluster: name, state (with the reason), RTT, endpoints, mode.

    Signals: the standard model signals only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ClusterRow] = []

    def apply(self, snap: ServiceSnapshot, known: Sequence[str] = ()) -> None:
        """Show ``snap``'s clusters and the ``known`` (configured) ones it lacks."""
        apply_keyed(self, self.rows, cluster_rows(snap, known), lambda r: r.name, 1)

    def row_of(self, name: str) -> int:
        return next((i for i, r in enumerate(self.rows) if r.name == name), -1)

    def row(self, name: str) -> ClusterRow | None:
        return next((r for r in self.rows if r.name == name), None)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row.name}\n{row.summary}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.summary
        if role == Qt.ItemDataRole.DecorationRole:
            return STATE_COLORS.get(row.state, QColor("#888888"))
        if role == CLUSTER_ROLE:
            return row.name
        if role == STATE_ROLE:
            return row.state
        return None
