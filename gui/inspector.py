"""The request inspector: one row per request through an inspect endpoint, and its detail.

In the spirit of ngrok's inspector: the Requests tab lists every request an inspect
endpoint recorded (they are the kubectl-side streams of the snapshot that carry a
method), live, filterable by text, cluster, status class and upgrades only, sortable by
any column. Its columns come from one table (``REQUEST_COLUMNS``, the same ``Column``
as the streams table), and the model is the streams model over the inspected rows, so a
tick costs a keyed diff, never a signal per byte. The detail pane shows what was decoded
of the selected request and its headers (redacted by the core before they were ever
recorded), and copies it as a kubectl or a curl command (never with a credential), built
from the request's own path and query: a flag is there only if kubectl asked for it.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import parse_qs, parse_qsl, unquote

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.service import RecordedHeaders, StreamView
from gui.format import human_bytes, human_duration
from gui.models import (
    KEY_ROLE,
    SORT_ROLE,
    Column,
    Index,
    RoleData,
    StreamRow,
    StreamsModel,
    Table,
    column,
    upgrade_text,
)
from gui.views import LiveTableView, live_table
from gui.widgets import mono_text

#: Where Wicket's CA is, for the curl command (the app's state directory's default).
WICKET_CA = "~/.local/share/wicket/app/inspect/ca.pem"
#: Status classes the filter offers: ``(label, first status, last status)``.
STATUS_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("1xx (upgraded)", 100, 199),
    ("2xx", 200, 299),
    ("3xx", 300, 399),
    ("4xx", 400, 499),
    ("5xx", 500, 599),
)


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _duration(seconds: float) -> str:
    """Milliseconds under a second (most requests), else as the streams table has it."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else human_duration(seconds)


def _status(row: StreamRow) -> int:
    return row.view.status if row.view.status is not None else -1


def _bytes(title: str, width: int, name: str) -> Column:
    """A byte counter of the view (``name``: ``bytes_up`` or ``bytes_down``)."""
    return Column(
        title,
        width,
        lambda r: human_bytes(getattr(r.view, name)),
        lambda r: getattr(r.view, name),
        numeric=True,
        counter=True,
    )


REQUEST_COLUMNS: tuple[Column, ...] = (
    Column("Time", 64, lambda r: _clock(r.view.opened_at), lambda r: r.view.opened_at),
    Column("Cluster", 70, lambda r: r.view.cluster),
    Column("Method", 56, lambda r: r.view.method or ""),
    Column("Path", 240, lambda r: r.view.path or ""),
    Column("Status", 50, lambda r: str(_status(r)) if _status(r) >= 0 else "…", _status),
    Column("Command", 100, lambda r: r.view.kubectl_command or ""),
    Column("Upgrade", 150, lambda r: r.upgrade or "—"),
    Column(
        "Duration",
        64,
        lambda r: _duration(r.age),
        lambda r: r.age,
        numeric=True,
        counter=True,
    ),
    _bytes("Up", 70, "bytes_up"),
    _bytes("Down", 70, "bytes_down"),
    Column("State", 80, lambda r: r.state_text),
)
REQUESTS = Table.of(REQUEST_COLUMNS)


def request_column(title: str) -> int:
    """The position of the requests column called ``title``."""
    return column(title, REQUEST_COLUMNS)


class RequestsModel(StreamsModel):
    """The inspected requests of the latest snapshot. Signals: the model signals only."""

    def __init__(self) -> None:
        super().__init__(REQUESTS)

    def select(self, rows: list[StreamRow]) -> Sequence[StreamRow]:
        return [r for r in rows if r.view.inspected and r.hop == "kubectl"]


class RequestsFilter(QSortFilterProxyModel):
    """Filters requests by text, cluster, status class and upgrades only; sorts by
    ``SORT_ROLE``."""

    def __init__(self) -> None:
        super().__init__()
        self._text = ""
        self._cluster: str | None = None
        self._status: tuple[int, int] | None = None
        self._upgrades_only = False
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def _change(self, name: str, value: object) -> None:
        self.beginFilterChange()
        setattr(self, name, value)
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_text(self, text: str) -> None:
        self._change("_text", text.strip().lower())

    def set_cluster(self, name: str | None) -> None:
        self._change("_cluster", name or None)

    def set_status_class(self, span: tuple[int, int] | None) -> None:
        self._change("_status", span)

    def set_upgrades_only(self, on: bool) -> None:
        self._change("_upgrades_only", on)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if not isinstance(model, RequestsModel) or source_parent.isValid():
            return True
        row = model.rows[source_row]
        v = row.view
        if self._cluster is not None and v.cluster != self._cluster:
            return False
        if self._upgrades_only and (not v.upgrade or v.upgrade == "none"):
            return False
        if self._status is not None and not self._status[0] <= _status(row) <= self._status[1]:
            return False
        return not self._text or self._text in _search_text(row)

    def multiData(self, index: Index, roleDataSpan: RoleData) -> None:
        model = self.sourceModel()
        if model is not None and index.isValid():
            model.multiData(self.mapToSource(index), roleDataSpan)


def _search_text(row: StreamRow) -> str:
    v = row.view
    words = (v.cluster, row.request, row.upgrade, v.kubectl_command or "", row.state_text)
    return " ".join((*words, *(value for _, value in v.detail))).lower()


# -- copying a request ---------------------------------------------------------------


class ApiPath(NamedTuple):
    """What an apiserver path names: ``pods`` or ``deployments.apps``, in a namespace
    or not, one object or all, and a subresource (``exec``, ``log``, ``portforward``…)."""

    resource: str
    namespace: str | None
    name: str | None
    sub: str | None


def api_path(path: str) -> ApiPath | None:
    """``path`` as a resource (None for discovery, ``/version`` and anything else)."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource = f"{rest[0]}.{group}" if group else rest[0]
    name = rest[1] if len(rest) > 1 else None
    return ApiPath(resource, namespace, name, rest[2] if len(rest) > 2 else None)


def context_of(cluster: str) -> str:
    """The kubectl context Wicket writes for ``cluster``."""
    return f"wicket-{cluster}"


Query = dict[str, list[str]]
#: Cluster-scoped resources a list needs no ``-A`` for (on the others, a list without a
#: namespace in its path is across all namespaces; ``-A`` is harmless on any left out).
CLUSTER_SCOPED = frozenset({"namespaces", "nodes", "persistentvolumes"})
#: ``logs`` options from a ``/log`` query: ``(query key, kubectl option, unit)``.
LOG_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("tailLines", "--tail", ""),
    ("sinceSeconds", "--since", "s"),
    ("sinceTime", "--since-time", ""),
    ("limitBytes", "--limit-bytes", ""),
)
#: ``logs`` flags from a ``/log`` query: ``(query key, kubectl flag)``.
LOG_FLAGS: tuple[tuple[str, str], ...] = (
    ("follow", "-f"),
    ("previous", "-p"),
    ("timestamps", "--timestamps"),
    ("insecureSkipTLSVerifyBackend", "--insecure-skip-tls-verify-backend"),
)


def query_of(view: StreamView) -> Query:
    return parse_qs(view.query or "", keep_blank_values=True)


def _flag(query: Query, key: str) -> bool:
    return (query.get(key) or [""])[-1].lower() in ("true", "1")


def _last(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _container(query: Query) -> list[str]:
    container = _last(query, "container")
    return ["-c", container] if container else []


def as_kubectl(row: StreamRow) -> str:
    """The request as a kubectl command line: ``exec``, ``attach``, ``port-forward``,
    ``logs`` of a pod, ``get`` and ``delete`` of a resource as kubectl would have run
    them (flags from the request's query, never assumed), else ``get --raw`` of the path
    (a GET) or the method and path as a comment (kubectl has no generic verb for the
    rest)."""
    v = row.view
    ctx = ["kubectl", "--context", context_of(v.cluster)]
    api = api_path(v.path or "")
    if api is None or (api.sub is not None and api.resource != "pods"):
        return _raw(row, ctx)
    query = query_of(v)
    ns = ["-n", api.namespace] if api.namespace else []
    if api.name and api.sub in ("exec", "attach"):
        return shlex.join(
            [*ctx, *_session_args(api.sub, api.name, query), *ns, *_command(api.sub, query)]
        )
    if api.name and api.sub == "portforward":
        return shlex.join([*ctx, "port-forward", f"pod/{api.name}", *ns, *_ports(v, query)])
    if api.name and api.sub == "log":
        return shlex.join([*ctx, "logs", *_log_args(query), api.name, *ns])
    if api.sub is None and v.method == "GET":
        return shlex.join([*ctx, "get", *_get_args(api, query), *ns])
    if api.sub is None and v.method == "DELETE" and api.name:
        return shlex.join([*ctx, "delete", api.resource, api.name, *ns])
    return _raw(row, ctx)


def _session_args(sub: str, name: str, query: Query) -> list[str]:
    """``exec``/``attach``: ``-i`` only if stdin was asked for, ``-t`` only for a tty."""
    letters = "i" * _flag(query, "stdin") + "t" * _flag(query, "tty")
    return [sub, *([f"-{letters}"] if letters else []), name, *_container(query)]


def _command(sub: str, query: Query) -> list[str]:
    command = query.get("command", []) if sub == "exec" else []
    return ["--", *command] if command else []


def _ports(view: StreamView, query: Query) -> list[str]:
    """The remote ports as ``:PORT`` (the local port is not on the wire, so kubectl
    picks one); from the decoded streams or the query, else a placeholder."""
    ports = [p for p in (view.detail_value("ports") or "").split(",") if p]
    ports = ports or [p for p in query.get("ports", []) if p]
    return [f":{p}" for p in ports] or [":PORT"]


def _log_args(query: Query) -> list[str]:
    args = [flag for key, flag in LOG_FLAGS if _flag(query, key)]
    args += _container(query)
    for key, option, unit in LOG_OPTIONS:
        if (value := _last(query, key)) is not None:
            args.append(f"{option}={value}{unit}")
    return args


def _get_args(api: ApiPath, query: Query) -> list[str]:
    """``get``: the resource, its name, selectors, ``-A`` for a namespaced list across
    namespaces, ``-w`` for a watch."""
    args = [api.resource, *([api.name] if api.name else [])]
    if (labels := _last(query, "labelSelector")) is not None:
        args += ["-l", labels]
    if (fields := _last(query, "fieldSelector")) is not None:
        args += ["--field-selector", fields]
    if not api.namespace and not api.name and api.resource not in CLUSTER_SCOPED:
        args.append("-A")
    if _flag(query, "watch"):
        args.append("-w")
    return args


def _target(view: StreamView) -> str:
    """The request target: path and query, as kubectl sent them."""
    path = view.path or "/"
    return f"{path}?{view.query}" if view.query else path


def _raw(row: StreamRow, ctx: list[str]) -> str:
    v = row.view
    if v.method == "GET":
        return shlex.join([*ctx, "get", "--raw", _target(v)])
    return f"# {v.method} {_target(v)} (no kubectl verb: see Copy as curl)"


def as_curl(row: StreamRow) -> str:
    """The request as curl against the local endpoint, with Wicket's CA and a
    placeholder for the endpoint's token: no credential is ever copied."""
    v = row.view
    address = row.endpoint.split(" ", 1)[0]
    return " ".join(
        [
            "curl",
            "-X",
            shlex.quote(v.method or "GET"),
            "--cacert",
            WICKET_CA,
            "-H",
            '"Authorization: Bearer $WICKET_ENDPOINT_TOKEN"',
            shlex.quote(f"https://{address}{_target(v)}"),
        ]
    )


def describe(row: StreamRow) -> str:
    """The detail pane's text: the request, its upgrade, what was decoded (first: an
    exec's command and exit code matter more than its byte counts), then the rest, and
    last the headers both ways (as the core recorded them: credentials redacted)."""
    v = row.view
    lines = [
        f"request     {v.method} {v.path}",
        *([f"query       {_readable(v.query)}"] if v.query else []),
        f"status      {v.status if v.status is not None else 'pending'}",
        f"kubectl     {v.kubectl_command or '—'}",
        f"upgrade     {upgrade_text(v) or '—'}",
    ]
    lines += [f"{name:<11} {value}" for name, value in v.detail]
    lines += [
        f"cluster     {v.cluster}   endpoint {row.endpoint}",
        f"time        {_clock(v.opened_at)}   duration {_duration(row.age)}",
        f"bytes       ↑ {human_bytes(v.bytes_up)}   ↓ {human_bytes(v.bytes_down)}",
        f"state       {row.state_text}",
        f"stream      {v.key}",
        *_headers("request headers", v.request_headers),
        *_headers("response headers", v.response_headers),
    ]
    return "\n".join(lines)


def _readable(query: str) -> str:
    """A query decoded for reading: ``key=value`` pairs, values quoted as a shell would."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in pairs)


def _headers(title: str, headers: RecordedHeaders) -> list[str]:
    lines = ["", title]
    lines += [f"  {name}: {value}" for name, value in headers.lines]
    if headers.cut:
        lines.append(f"  ({headers.cut})")
    if len(lines) == 2:
        lines.append("  —")
    return lines


class RequestDetail(QWidget):
    """The selected request: decoded detail, Copy as kubectl / curl, Show stream.

    Signals: ``copied(str)`` with what went to the clipboard; ``show_stream(str key)``.
    """

    copied = Signal(str)
    show_stream = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.text = mono_text(read_only=True)
        self.text.setAccessibleName("Request detail")
        self.text.setPlaceholderText("Select a request to see what was decoded.")
        self.copy_kubectl = QPushButton("Copy as &kubectl")
        self.copy_curl = QPushButton("Copy as c&url")
        self.copy_curl.setToolTip("Without credentials: the endpoint's token is a placeholder")
        self.stream_button = QPushButton("Show &stream")
        self.copy_kubectl.clicked.connect(lambda: self._copy(as_kubectl))
        self.copy_curl.clicked.connect(lambda: self._copy(as_curl))
        self.stream_button.clicked.connect(
            lambda: self.show_stream.emit(self.row.key) if self.row else None
        )
        buttons = QHBoxLayout()
        for button in (self.copy_kubectl, self.copy_curl, self.stream_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.text)
        self.row: StreamRow | None = None
        self.show_row(None)

    def show_row(self, row: StreamRow | None) -> None:
        self.row = row
        for button in (self.copy_kubectl, self.copy_curl, self.stream_button):
            button.setEnabled(row is not None)
        text = describe(row) if row is not None else ""
        if text != self.text.toPlainText():
            self.text.setPlainText(text)

    def _copy(self, render: Callable[[StreamRow], str]) -> None:
        if self.row is None:
            return
        text = render(self.row)
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(text)
        self.copied.emit(text)


class Inspector(QWidget):
    """The Requests tab: filters, the live table, the detail of the selected request.

    Signals: ``show_stream(str key)`` (from the detail), ``copied(str)``.
    """

    show_stream = Signal(str)
    copied = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.model = RequestsModel()
        self.proxy = RequestsFilter()
        self.proxy.setSourceModel(self.model)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter requests (path, command, status…)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAccessibleName("Filter requests")
        self.filter_edit.textChanged.connect(self.proxy.set_text)
        self.cluster = QComboBox()
        self.cluster.setAccessibleName("Requests of cluster")
        self.cluster.addItem("All clusters", "")
        self.cluster.currentIndexChanged.connect(
            lambda _i: self.proxy.set_cluster(self.cluster.currentData())
        )
        self.status_class = QComboBox()
        self.status_class.setAccessibleName("Status class")
        self.status_class.addItem("Any status", None)
        for label, first, last in STATUS_CLASSES:
            self.status_class.addItem(label, (first, last))
        self.status_class.currentIndexChanged.connect(
            lambda _i: self.proxy.set_status_class(self.status_class.currentData())
        )
        self.upgrades_only = QCheckBox("&Upgrades only")
        self.upgrades_only.toggled.connect(self.proxy.set_upgrades_only)
        filters = QHBoxLayout()
        for widget in (self.filter_edit, self.cluster, self.status_class, self.upgrades_only):
            filters.addWidget(widget)
        self.detail = RequestDetail()
        self.detail.show_stream.connect(self.show_stream)
        self.detail.copied.connect(self.copied)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_table())
        split.addWidget(self.detail)
        split.setSizes([260, 240])
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(split, 1)

    def _build_table(self) -> LiveTableView:
        widths = [c.width for c in REQUEST_COLUMNS]
        self.table = live_table(self.proxy, "Requests", widths, request_column("Time"))
        self.table.selectionModel().selectionChanged.connect(lambda *_: self.refresh_detail())
        return self.table

    def apply(self, rows: list[StreamRow]) -> None:
        """This tick's stream rows (the window's): the requests among them, keyed."""
        self.model.apply_rows(rows)
        self._offer_clusters()
        self.refresh_detail()

    def _offer_clusters(self) -> None:
        """Every cluster seen so far in the cluster filter (added, never reordered)."""
        known = {self.cluster.itemData(i) for i in range(self.cluster.count())}
        for name in sorted({r.view.cluster for r in self.model.rows} - known):
            self.cluster.addItem(name, name)

    def selected_key(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return str(rows[0].data(KEY_ROLE)) if rows else None

    def select(self, key: str) -> bool:
        """Select the request ``key`` (clearing filters that hide it); False if unknown."""
        if self.model.row_for_key(key) is None:
            return False
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(KEY_ROLE) == key:
                self.table.selectRow(row)
                self.table.scrollTo(self.proxy.index(row, 0))
                return True
        self.filter_edit.clear()
        self.cluster.setCurrentIndex(0)
        self.status_class.setCurrentIndex(0)
        self.upgrades_only.setChecked(False)
        return self.select(key)

    def refresh_detail(self) -> None:
        key = self.selected_key()
        self.detail.show_row(self.model.row_for_key(key) if key else None)
