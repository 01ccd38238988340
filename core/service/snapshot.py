"""One ``ServiceSnapshot`` from the components' own snapshots.

Each running component (relay, agent, client session, local endpoint) snapshots itself
in ``core.aio`` terms; ``compose`` turns them into the service's views, with stream
rates from the previous snapshot's byte counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from core.aio.agent import AgentSnapshot
from core.aio.endpoint import ClientSnapshot, EndpointSnapshot
from core.aio.relay import RelaySnapshot
from core.aio.tunnel import StreamInfo
from core.service.model import ClusterView, EndpointView, ServiceSnapshot, SessionView, StreamView

#: Per stream key: when its bytes were last counted, and the counts (up, down).
Rates = dict[str, tuple[float, int, int]]


def compose(now: float, parts: Iterable[tuple[str, object]], rates: Rates) -> ServiceSnapshot:
    """The snapshot of ``parts`` (name, component snapshot); ``rates`` is updated."""
    clusters: dict[str, ClusterView] = {}
    sessions: list[SessionView] = []
    endpoints: list[EndpointView] = []
    streams: list[StreamView] = []
    fresh: Rates = {}
    for name, snap in parts:
        if isinstance(snap, RelaySnapshot):
            clusters.update((c.name, c) for c in _relay_clusters(snap))
        elif isinstance(snap, AgentSnapshot):
            sessions.append(_session(name, "agent", snap.cluster, snap))
        elif isinstance(snap, ClientSnapshot):
            sessions.append(_session(name, "client", snap.name, snap))
        elif isinstance(snap, EndpointSnapshot):
            endpoints.append(
                EndpointView(
                    name, snap.cluster, snap.address, snap.mode, snap.session, snap.last_refusal
                )
            )
            clusters[snap.cluster] = _with_endpoint(clusters.get(snap.cluster), snap)
        if isinstance(snap, (RelaySnapshot, AgentSnapshot, EndpointSnapshot)):
            for info in snap.streams:
                key = f"{name}/{info.id}"
                streams.append(_stream(now, key, name, info, rates.get(key)))
                fresh[key] = (now, info.bytes_up, info.bytes_down)
    rates.clear()
    rates.update(fresh)
    return ServiceSnapshot(
        now,
        tuple(sorted(clusters.values(), key=lambda c: c.name)),
        tuple(sessions),
        tuple(endpoints),
        tuple(streams),
    )


def _relay_clusters(snap: RelaySnapshot) -> Iterable[ClusterView]:
    for c in snap.clusters:
        rtt = c.get("rtt")
        yield ClusterView(
            str(c["name"]),
            "online" if c["online"] else "offline",
            None if c["online"] else "agent not connected",
            float(rtt) if isinstance(rtt, (int, float)) else None,
            str(c["public_address"]) if c.get("public_address") else None,
        )


def _session(
    component: str, role: str, name: str | None, snap: AgentSnapshot | ClientSnapshot
) -> SessionView:
    """An agent's or a client's session to its relay (``name``: its cluster or client)."""
    return SessionView(
        component,
        role,
        name,
        snap.relay,
        snap.state,
        snap.rtt,
        snap.connected_since,
        snap.last_error,
        snap.reconnects,
    )


def _with_endpoint(known: ClusterView | None, snap: EndpointSnapshot) -> ClusterView:
    """The cluster as the relay reported it (or as this endpoint sees it), plus the
    endpoint's address."""
    if known is None:
        state = "online" if snap.session == "online" else "reconnecting"
        if snap.session == "online" and snap.last_refusal:
            state = "offline"
        known = ClusterView(snap.cluster, state, snap.last_refusal, snap.rtt, None)
    return dataclasses.replace(known, endpoints=(*known.endpoints, snap.address))


#: The stream fields a ``StreamView`` carries under the same names (all but ``id``,
#: which becomes part of its key), including an ``InspectedStream``'s request fields.
_SKIPPED = frozenset({"id"})


def _stream(
    now: float, key: str, component: str, info: StreamInfo, prev: tuple[float, int, int] | None
) -> StreamView:
    """The view of one stream; its rates from ``prev`` (time and counts last seen)."""
    up = down = 0.0
    if prev is not None and info.closed_at is None and now > prev[0]:
        dt = now - prev[0]
        up, down = (info.bytes_up - prev[1]) / dt, (info.bytes_down - prev[2]) / dt
    carried = {
        f.name: getattr(info, f.name) for f in dataclasses.fields(info) if f.name not in _SKIPPED
    }
    return StreamView(
        key=key, component=component, rate_up=max(up, 0.0), rate_down=max(down, 0.0), **carried
    )
