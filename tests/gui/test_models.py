"""The clusters and streams models: batched diffs, filters, sorting, qtmodeltester."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from pytestqt.qtbot import QtBot

from core.service import ClusterView, EndpointView, ServiceSnapshot, SessionView, StreamView
from gui.models import (
    KEY_ROLE,
    STREAM_COLUMNS,
    TICKING,
    ClustersModel,
    StreamsFilter,
    StreamsModel,
    alpn_meaning,
    cluster_rows,
    column,
    online_count,
    ranges,
)
from tests.gui.conftest import check_model

if TYPE_CHECKING:
    from pytestqt.modeltest import ModelTester


def stream(n: int, **kw: Any) -> StreamView:
    base = StreamView(
        key=f"endpoint:lab/{n}",
        component="endpoint:lab",
        cluster="lab",
        endpoint="local",
        client=f"127.0.0.1:{40000 + n}",
        opened_at=100.0,
        closed_at=None,
        bytes_up=n * 10,
        bytes_down=n * 20,
        rate_up=0.0,
        rate_down=0.0,
        state="open",
        close_reason=None,
    )
    return dataclasses.replace(base, **kw)


def snapshot(streams: list[StreamView], now: float = 110.0) -> ServiceSnapshot:
    return ServiceSnapshot(
        taken_at=now,
        clusters=(ClusterView("lab", "online", None, 0.002, None, ("127.0.0.1:6443",)),),
        sessions=(SessionView("agent:lab", "agent", "lab", "x", "online", 0.0, 0.0, None, 0),),
        endpoints=(
            EndpointView("endpoint:lab", "lab", "127.0.0.1:6443", "passthrough", "online", None),
        ),
        streams=tuple(streams),
    )


class Recorder:
    def __init__(self, model: StreamsModel) -> None:
        self.calls: list[tuple[str, int, int]] = []
        model.rowsInserted.connect(lambda _p, a, b: self.calls.append(("insert", a, b)))
        model.rowsRemoved.connect(lambda _p, a, b: self.calls.append(("remove", a, b)))
        model.dataChanged.connect(lambda a, b, _r: self.calls.append(("changed", a.row(), b.row())))
        model.modelReset.connect(lambda: self.calls.append(("reset", 0, 0)))


def test_ranges() -> None:
    assert ranges([]) == []
    assert ranges([1, 2, 3, 7, 9, 10]) == [(1, 3), (7, 7), (9, 10)]


def test_streams_model_applies_batched_diffs(qtmodeltester: ModelTester) -> None:
    model = StreamsModel()
    check_model(qtmodeltester, model)
    rec = Recorder(model)
    model.apply(snapshot([stream(n) for n in range(1, 11)]))
    assert rec.calls == [("insert", 0, 9)]
    rec.calls.clear()

    # 3..5 and 8 go, 2 and 9 change, 11 and 12 arrive: two removals, changes, one insert.
    keep = [stream(1), stream(2, bytes_up=999), stream(6), stream(7), stream(9, state="closed")]
    model.apply(snapshot([*keep, stream(10), stream(11), stream(12)]))
    assert rec.calls == [
        ("remove", 7, 7),
        ("remove", 2, 4),
        ("changed", 1, 1),
        ("changed", 4, 4),
        ("insert", 6, 7),
    ]
    assert [r.short_id for r in model.rows] == ["1", "2", "6", "7", "9", "10", "11", "12"]
    rec.calls.clear()
    model.apply(snapshot([*keep, stream(10), stream(11), stream(12)]))
    assert rec.calls == []  # nothing changed, nothing signalled
    model.apply(snapshot([]))
    assert model.rowCount() == 0
    check_model(qtmodeltester, model)


def test_streams_filter_and_sort(qtmodeltester: ModelTester) -> None:
    model = StreamsModel()
    proxy = StreamsFilter()
    proxy.setSourceModel(model)
    check_model(qtmodeltester, proxy)
    relay_copy = stream(50, key="relay/50", component="relay")
    closed = stream(3, closed_at=105.0, state="failed", close_reason="error: reset")
    model.apply(snapshot([stream(1), stream(2, client="10.0.0.9:1"), closed, relay_copy]))

    def keys() -> list[str]:
        return [proxy.index(r, 0).data(KEY_ROLE) for r in range(proxy.rowCount())]

    assert sorted(keys()) == ["endpoint:lab/1", "endpoint:lab/2", "endpoint:lab/3"]
    proxy.set_all_hops(True)
    assert "relay/50" in keys()
    proxy.set_all_hops(False)
    proxy.set_text("10.0.0.9")
    assert keys() == ["endpoint:lab/2"]
    proxy.set_text("reset")
    assert keys() == ["endpoint:lab/3"]
    assert proxy.index(0, column("State")).data() == "failed: error: reset"
    proxy.set_text("")
    proxy.set_open_only(True)
    assert sorted(keys()) == ["endpoint:lab/1", "endpoint:lab/2"]
    proxy.set_open_only(False)
    proxy.sort(column("Down"))  # bytes down, numerically
    assert keys() == ["endpoint:lab/1", "endpoint:lab/2", "endpoint:lab/3"]
    model.apply(snapshot([stream(1, bytes_down=10**9), stream(2), closed]))
    assert keys()[-1] == "endpoint:lab/1"  # dynamic re-sort on dataChanged
    proxy.set_cluster("other")
    assert keys() == []
    check_model(qtmodeltester, proxy)


def test_clusters_model(qtmodeltester: ModelTester, qtbot: QtBot) -> None:
    model = ClustersModel()
    check_model(qtmodeltester, model)
    model.apply(snapshot([]))
    assert model.rowCount() == 1
    text = model.index(0, 0).data()
    assert text.startswith("lab\nonline · RTT 2.0 ms · 127.0.0.1:6443 · passthrough")
    off = ServiceSnapshot(
        1.0, clusters=(ClusterView("lab", "offline", "agent not connected", None, None),)
    )
    model.apply(off)
    assert "offline: agent not connected" in model.index(0, 0).data()
    check_model(qtmodeltester, model)


def test_a_cluster_through_a_relay_fleet_names_the_member_its_session_is_on(
    qtmodeltester: ModelTester,
) -> None:
    """The app is a client: its endpoint's session is on one member of a relay fleet,
    which the cluster's line names (and no member once it is not connected)."""
    model = ClustersModel()
    fleet = dataclasses.replace(
        snapshot([]).clusters[0], via="member 0123456789abcdef (relay.example:7000)"
    )
    model.apply(ServiceSnapshot(1.0, clusters=(fleet,)))
    text = model.index(0, 0).data()
    assert "127.0.0.1:6443 · via member 0123456789abcdef (relay.example:7000)" in text
    gone = dataclasses.replace(fleet, state="reconnecting", endpoints=())
    model.apply(ServiceSnapshot(2.0, clusters=(gone,)))
    assert "via" not in model.index(0, 0).data()
    check_model(qtmodeltester, model)


def test_cluster_rows_read_the_snapshot_and_list_the_configured_ones_it_lacks() -> None:
    said = ServiceSnapshot(
        1.0,
        clusters=(
            ClusterView("lab", "disconnected", "disconnected", 0.001, None),
            ClusterView("dev", "offline", "not started", None, None),
        ),
    )
    lab, dev, other = cluster_rows(said, ["lab", "other"])
    assert (lab.state, lab.connected, lab.summary) == ("disconnected", False, "disconnected")
    assert (dev.state, dev.summary) == ("offline", "offline: not started")
    assert (other.name, other.state, other.summary) == ("other", "disconnected", "disconnected")
    (online,) = cluster_rows(snapshot([]), ["lab"])
    assert (online.state, online.connected) == ("online", True)
    assert online_count([lab, dev, other, online]) == 1


def test_one_column_table() -> None:
    model = StreamsModel()
    titles = [c.title for c in STREAM_COLUMNS]
    assert len(set(titles)) == len(titles)
    assert [column(t) for t in titles] == list(range(len(titles)))
    assert model.columnCount() == len(STREAM_COLUMNS)
    first, last = TICKING  # one dataChanged range covers every counter, and only them
    assert [c.title for c in STREAM_COLUMNS[first : last + 1]] == ["Up", "Down", "Rate", "Age"]
    assert all(c.counter for c in STREAM_COLUMNS[first : last + 1])
    assert sum(c.counter for c in STREAM_COLUMNS) == last - first + 1


def test_a_passthrough_stream_says_what_its_tls_hello_said() -> None:
    """SNI and ALPN of the ClientHello (seen, not decrypted): an API connection offers h2,
    an exec/attach/port-forward upgrade http/1.1 only; nothing seen, nothing shown."""
    api = stream(1, sni="kubernetes", alpn="h2,http/1.1")
    exec_ = stream(2, sni=None, alpn="http/1.1")
    unseen = stream(3)
    model = StreamsModel()
    model.apply(snapshot([api, exec_, unseen]))
    tls = column("TLS hello")
    assert [model.index(r, tls).data() for r in range(3)] == [
        "h2,http/1.1 · kubernetes",
        "http/1.1 · no SNI",
        "—",
    ]
    proxy = StreamsFilter()
    proxy.setSourceModel(model)
    proxy.set_text("h2,http")
    assert proxy.rowCount() == 1
    assert "API connection" in alpn_meaning(api.alpn) and "upgrade" in alpn_meaning(exec_.alpn)
