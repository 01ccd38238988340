"""``compose``'s rates (a short moving average, time as an input) and the stream count."""

from __future__ import annotations

import dataclasses

import pytest

from core.aio.endpoint import ClientSnapshot, EndpointSnapshot
from core.aio.tunnel import StreamInfo
from core.protocol.preamble import INSPECT_CLIENT
from core.service.model import EndpointView, ServiceSnapshot, StreamView
from core.service.snapshot import RATE_TIME_CONSTANT, Rates, compose

T0 = 1_800_000_000.0


def info(up: int, down: int = 0, closed_at: float | None = None) -> StreamInfo:
    return StreamInfo(1, "lab", "local", "127.0.0.1:5000", T0, closed_at, up, down, "open", None)


def endpoint(stream: StreamInfo) -> EndpointSnapshot:
    return EndpointSnapshot("lab", "127.0.0.1:6443", "passthrough", "online", None, None, [stream])


def rates_of(samples: list[tuple[float, int]]) -> list[float]:
    """The ``rate_down`` shown at each (time, bytes down so far) snapshot."""
    rates: Rates = {}
    shown = []
    for now, down in samples:
        snap = compose(now, [("endpoint:lab", endpoint(info(0, down)))], rates)
        (view,) = snap.streams
        shown.append(view.rate_down)
    return shown


def test_a_trickling_stream_never_reads_zero_while_it_moves() -> None:
    """``logs -f``: 80 bytes once a second, snapshots five times a second."""
    samples = [(T0 + i * 0.2, 80 * ((i + 2) // 5)) for i in range(100)]
    shown = rates_of(samples)
    moving = shown[4:]  # from the first 80 bytes on
    assert min(moving) > 0, "a trickling stream read 0 B/s"
    assert 40 < sum(moving[-25:]) / 25 < 120  # around 80 B/s, not 400 and 0 in turns


def test_a_steady_stream_reads_its_rate_whatever_the_snapshot_cadence() -> None:
    for step in (0.1, 0.25, 1.0):
        samples = [(T0 + i * step, int(1000 * i * step)) for i in range(int(30 / step))]
        assert rates_of(samples)[-1] == pytest.approx(1000, rel=0.01)


def test_a_stream_that_stops_decays_with_the_time_constant() -> None:
    samples = [(T0 + i, 1000 * i) for i in range(30)]
    stopped = [(T0 + 30 + i, 29_000) for i in range(1, 11)]
    shown = rates_of(samples + stopped)
    at_stop = shown[29]
    assert shown[29 + round(RATE_TIME_CONSTANT * 2)] < at_stop * 0.2
    assert shown[-1] < 0.1 * shown[29 + 2]


def test_first_sight_and_closed_streams_have_no_rate() -> None:
    rates: Rates = {}
    first = compose(T0, [("endpoint:lab", endpoint(info(500, 500)))], rates)
    assert (first.streams[0].rate_up, first.streams[0].rate_down) == (0.0, 0.0)
    compose(T0 + 1, [("endpoint:lab", endpoint(info(1500, 1500)))], rates)
    closed = compose(T0 + 2, [("endpoint:lab", endpoint(info(2500, 2500, T0 + 2)))], rates)
    assert (closed.streams[0].rate_up, closed.streams[0].rate_down) == (0.0, 0.0)


def test_time_that_does_not_advance_keeps_the_rate() -> None:
    rates: Rates = {}
    for now, down in [(T0, 0), (T0 + 1, 1000), (T0 + 1, 1000)]:
        snap = compose(now, [("endpoint:lab", endpoint(info(0, down)))], rates)
    assert snap.streams[0].rate_down > 0


# -- open streams: streams, not hops -----------------------------------------------------


def view(component: str, client: str | None, **fields: object) -> StreamView:
    base = StreamView(
        f"{component}/{id(fields)}", component, "lab", "local", client,
        T0, None, 0, 0, 0.0, 0.0, "open", None,
    )  # fmt: skip
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


HOPS = ("relay", "agent:lab", "endpoint:lab")


def test_one_connection_seen_by_relay_agent_and_endpoint_is_one_stream() -> None:
    streams = [view(c, f"127.0.0.1:{port}") for c in HOPS for port in (5000, 5001)]
    closed = [view(c, "127.0.0.1:5002", closed_at=T0 + 1) for c in HOPS]
    snap = ServiceSnapshot(T0, streams=(*streams, *closed))
    assert len(snap.streams) == 9
    assert snap.open_streams == 2


def test_the_relays_label_names_the_same_client() -> None:
    """The relay (and the agent after it) label a stream ``identity@source for CLIENT``;
    with the endpoint's ``CLIENT`` it is still one stream, and an inspect endpoint's
    carriers stay uncounted."""
    label = "desktop@127.0.0.1:50532 for {}"
    streams = [view(c, label.format("127.0.0.1:5000")) for c in ("relay", "agent:lab")]
    snap = ServiceSnapshot(T0, streams=(*streams, view("endpoint:lab", "127.0.0.1:5000")))
    assert snap.open_streams == 1
    inspect = EndpointView("endpoint:lab", "lab", "127.0.0.1:6443", "inspect", "online", None)
    carriers = [view(c, label.format(INSPECT_CLIENT)) for c in ("relay", "agent:lab")]
    request = view("endpoint:lab", None, method="GET", path="/api")
    snap = ServiceSnapshot(T0, endpoints=(inspect,), streams=(*carriers, request))
    assert snap.open_streams == 1


def test_hops_without_a_telling_client_count_once_per_component() -> None:
    """Another machine's inspect endpoint: its connections all say ``inspect``."""
    streams = [view(c, INSPECT_CLIENT) for c in ("relay", "agent:lab") for _ in range(3)]
    assert ServiceSnapshot(T0, streams=tuple(streams)).open_streams == 3


def test_an_inspect_endpoint_counts_its_requests_not_their_connections() -> None:
    inspect = EndpointView("endpoint:lab", "lab", "127.0.0.1:6443", "inspect", "online", None)
    carriers = [view(c, INSPECT_CLIENT) for c in ("relay", "agent:lab")]
    requests = [view("endpoint:lab", None, method="GET", path=f"/api/{i}") for i in range(4)]
    done = view("endpoint:lab", None, method="GET", path="/api", closed_at=T0 + 1)
    snap = ServiceSnapshot(T0, endpoints=(inspect,), streams=(*carriers, *requests, done))
    assert snap.open_streams == 4


def test_other_clusters_and_endpoints_are_other_streams() -> None:
    same_client = "10.0.0.1:4000"
    streams = [
        view("relay", same_client),
        view("relay", same_client, cluster="prod"),
        view("relay", same_client, endpoint="public"),
    ]
    assert ServiceSnapshot(T0, streams=tuple(streams)).open_streams == 3


def test_the_clients_fleet_member_reaches_the_cluster_and_its_session() -> None:
    """An endpoint whose client session is on a relay fleet member: the cluster says
    "via member ID (ADDRESS)", the client's session line names the member; a relay on
    its own adds nothing."""
    relay = "relay.example:7000"
    member = "0123456789abcdef"
    on_fleet = dataclasses.replace(endpoint(info(1)), relay=relay, member=member)
    client = ClientSnapshot("laptop", relay, "online", None, 0.002, T0, 0, member)
    snap = compose(T0, [("endpoint:lab", on_fleet), ("client", client)], {})
    (cluster,) = snap.clusters
    assert cluster.via == f"member {member} ({relay})"
    (session,) = snap.sessions
    assert session.relay == f"{relay} (member {member})"
    lone = dataclasses.replace(on_fleet, member=None)
    snap = compose(
        T0, [("endpoint:lab", lone), ("client", dataclasses.replace(client, member=None))], {}
    )
    assert snap.clusters[0].via is None and snap.sessions[0].relay == relay
