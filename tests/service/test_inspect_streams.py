"""Inspect-mode records in endpoint and service snapshots: frozen, cheap, complete."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from core.aio.endpoint import EndpointSnapshot, InspectSettings, LocalEndpoint, RelayClient
from core.aio.inspected import InspectedStream, detail_pairs, inspected_stream
from core.aio.tunnel import StreamInfo
from core.errors import ConfigError
from core.protocol.http_proxy import Exchange, UpgradeState
from core.protocol.inspect_decoders import PortConnection, SessionDetail
from core.protocol.k8s_channels import TerminalSize
from core.protocol.redaction import record_headers
from core.service import StreamView, WicketService
from tests.support.certs import make_pki


def _exchange() -> Exchange:
    detail = SessionDetail(
        kind="portforward",
        channels={"data", "error"},
        ports=[80, 9],
        connections=[
            PortConnection("0", 80, bytes_up=10, bytes_down=20),
            PortConnection("1", 9, bytes_up=30, bytes_down=0, error="refused"),
        ],
    )
    return Exchange(
        7,
        100.0,
        method="GET",
        target="/api/v1/namespaces/default/pods/web/portforward?ports=80&ports=9",
        status=101,
        kubectl_command="kubectl port-forward",
        upgrade="websocket",
        upgrade_state=UpgradeState.ACCEPTED,
        subprotocol="SPDY/3.1+portforward.k8s.io",
        bytes_up=40,
        bytes_down=20,
        detail=detail,
        request_headers=record_headers([(b"Authorization", b"Bearer secret-endpoint-token")]),
        response_headers=record_headers([(b"Upgrade", b"websocket")]),
    )


def test_an_exchange_becomes_a_frozen_stream() -> None:
    exchange = _exchange()
    info = inspected_stream(exchange, "demo", offset=1000.0)
    assert isinstance(info, StreamInfo)
    assert (info.id, info.opened_at, info.closed_at, info.state) == (7, 1100.0, None, "open")
    assert info.path == "/api/v1/namespaces/default/pods/web/portforward"
    assert info.query == "ports=80&ports=9"
    assert info.request_headers.lines == (("Authorization", "Bearer <redacted>"),)
    assert info.response_headers is exchange.response_headers  # frozen: shared, not copied
    assert (info.upgrade, info.protocol) == ("accepted", "websocket")
    assert info.detail == (
        ("kind", "portforward"),
        ("channels", "data,error"),
        ("ports", "80,9"),
        ("connection 0", "port 80, 10 B up, 20 B down"),
        ("connection 1", "port 9, 30 B up, 0 B down, error: refused"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.status = 1  # type: ignore[misc]
    exchange.ended, exchange.error = 101.5, "upstream lost"
    done = inspected_stream(exchange, "demo", offset=1000.0)
    assert (done.state, done.closed_at, done.close_reason) == ("closed", 1101.5, "upstream lost")


def test_detail_pairs_for_exec_watch_and_log() -> None:
    exec_ = SessionDetail(kind="exec", command=("sh", "-c", "exit 3"), exit_code=3, close_code=1000)
    assert detail_pairs(exec_) == (
        ("kind", "exec"),
        ("command", "sh -c 'exit 3'"),
        ("exit_code", "3"),
        ("close_code", "1000"),
    )
    watch = SessionDetail(kind="watch", events={"MODIFIED": 2, "ADDED": 3})
    assert ("event_count", "5") in detail_pairs(watch)
    assert ("events", "ADDED=3,MODIFIED=2") in detail_pairs(watch)
    assert ("event_count", "0") in detail_pairs(SessionDetail(kind="watch"))
    assert detail_pairs(SessionDetail(kind="log", lines=4)) == (("kind", "log"), ("lines", "4"))
    assert detail_pairs(SessionDetail()) == ()


def test_detail_pairs_for_an_exec_s_channels_and_sizes() -> None:
    """Every channel opened, in channel order (0 if it carried nothing); the sizes: how
    many, and the last ones kept."""
    exec_ = SessionDetail(
        kind="exec",
        channels={"stdout", "stdin", "error", "resize", "7"},
        channel_bytes={"resize": 50, "stdout": 1200, "error": 80, "7": 1},
        resizes=10,
        sizes=[TerminalSize(80, 24), TerminalSize(123, 45)],
        bad_resizes=2,
        exit_code=0,
    )
    pairs = dict(detail_pairs(exec_))
    assert pairs["channel_bytes"] == "stdin=0,stdout=1200,error=80,resize=50,7=1"
    assert pairs["resizes"] == "10 (last 2): 80x24 123x45"
    assert pairs["bad_resizes"] == "2"
    one = SessionDetail(kind="attach", channels={"stdout"}, resizes=1, sizes=[TerminalSize(1, 2)])
    assert dict(detail_pairs(one)) == {
        "kind": "attach",
        "channels": "stdout",
        "channel_bytes": "stdout=0",
        "resizes": "1: 1x2",
    }
    watch = SessionDetail(kind="watch", channel_bytes={"stdout": 3})  # not an exec's
    assert "channel_bytes" not in dict(detail_pairs(watch))


def test_an_inspect_endpoint_needs_its_settings(tmp_path: Path) -> None:
    client = RelayClient(tmp_path / "client", None)
    with pytest.raises(ConfigError, match="settings"):
        LocalEndpoint(client, "demo", mode="inspect")
    with pytest.raises(ConfigError, match="mode"):
        LocalEndpoint(client, "demo", mode="sideways")
    settings = InspectSettings(tmp_path, "endpoint-secret", b"", "api", "Bearer upstream-secret")
    assert "secret" not in repr(settings)


class _Fixed:
    def __init__(self, snapshot: EndpointSnapshot) -> None:
        self.snapshot = snapshot

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_the_service_carries_the_inspection_into_stream_views() -> None:
    inspected = inspected_stream(_exchange(), "demo", offset=1000.0)
    plain = StreamInfo(1, "demo", "local", "127.0.0.1:5", 1.0, None, 5, 6, "open", None)
    snap = EndpointSnapshot("demo", "127.0.0.1:1", "inspect", "online", None, None, [inspected])
    plain_snap = dataclasses.replace(snap, mode="passthrough", address="127.0.0.1:2")
    service = WicketService()
    await service.add("endpoint:a", _Fixed(snap), lambda: snap)
    await service.add(
        "endpoint:b", _Fixed(plain_snap), lambda: dataclasses.replace(plain_snap, streams=[plain])
    )
    views = {v.key: v for v in service.refresh().streams}
    view = views["endpoint:a/7"]
    assert view.inspected
    assert (view.method, view.path, view.status) == ("GET", inspected.path, 101)
    assert (view.kubectl_command, view.upgrade) == ("kubectl port-forward", "accepted")
    assert (view.protocol, view.subprotocol) == ("websocket", "SPDY/3.1+portforward.k8s.io")
    assert view.detail_value("ports") == "80,9"
    assert view.detail == inspected.detail
    assert view.query == "ports=80&ports=9"
    assert view.request_headers == inspected.request_headers
    assert dict(view.response_headers.lines) == {"Upgrade": "websocket"}
    other = views["endpoint:b/1"]
    assert not other.inspected and other.detail == () and other.upgrade is None
    assert {e.mode for e in service.latest.endpoints} == {"inspect", "passthrough"}
    await service.stop()


def test_stream_view_fields_have_defaults() -> None:
    view = StreamView("k", "c", "demo", "local", None, 0.0, None, 0, 0, 0.0, 0.0, "open", None)
    assert view.detail == () and view.method is None and view.detail_value("kind") is None
    assert view.query is None and view.request_headers.lines == ()


def test_a_stream_view_carries_every_stream_field_by_name() -> None:
    """``compose`` copies stream fields by name: a field added to ``InspectedStream`` (or
    ``StreamInfo``) must exist on ``StreamView`` too (``id`` becomes the view's key)."""
    carried = {f.name for f in dataclasses.fields(InspectedStream)} - {"id"}
    assert carried <= {f.name for f in dataclasses.fields(StreamView)}


@pytest.mark.parametrize("mode", ["passthrough", "inspect"])
async def test_a_port_conflict_is_an_error_never_a_move(tmp_path: Path, mode: str) -> None:
    """docs/security.md, the laptop listener: a taken port fails the endpoint's start; it
    never listens somewhere else kubectl was not told about."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    client = RelayClient(tmp_path / "client", None)
    cluster_ca = make_pki(tmp_path / "cluster").ca_pem
    settings = InspectSettings(tmp_path / "inspect", "endpoint-secret", cluster_ca, "api", None)
    endpoint = LocalEndpoint(client, "demo", port=port, mode=mode, inspect=settings)
    try:
        with pytest.raises(ConfigError, match=str(port)):
            await endpoint.start()
        assert endpoint.port == port
    finally:
        await endpoint.stop()
        taken.close()
