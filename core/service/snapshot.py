"""One ``ServiceSnapshot`` from the components' own snapshots.

Each running component (relay, agent, client session, local endpoint) snapshots itself
in ``core.aio`` terms; ``compose`` turns them into the service's views, with stream
rates as a short moving average of the byte counts seen snapshot after snapshot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from core.aio.agent import AgentSnapshot
from core.aio.endpoint import ClientSnapshot, EndpointSnapshot
from core.aio.relay import RelaySnapshot
from core.aio.tunnel import StreamInfo
from core.service.model import ClusterView, EndpointView, ServiceSnapshot, SessionView, StreamView
from core.service.status import ClusterStatus, DesktopSnapshot

#: The moving average's time constant (s). A stream that trickles (``logs -f``, a watch)
#: moves a few bytes now and then, mostly between two snapshots a few hundred ms apart:
#: the rate over one interval would read 0 B/s most of the time while its count grows.
RATE_TIME_CONSTANT = 2.5


@dataclass(frozen=True)
class Meter:
    """One stream's byte counts when last seen, and its smoothed rates (bytes/s)."""

    at: float
    up: int
    down: int
    rate_up: float = 0.0
    rate_down: float = 0.0

    def advanced(self, now: float, up: int, down: int) -> Meter:
        """The meter at ``now``: an exponential moving average of the rate over each
        interval, weighted by the interval's length (so the snapshot cadence does not
        matter), which stays above 0 while the stream has moved lately."""
        elapsed = now - self.at
        if elapsed <= 0:
            return self
        weight = 1.0 - math.exp(-elapsed / RATE_TIME_CONSTANT)

        def average(rate: float, moved: int) -> float:
            return rate + weight * (max(moved, 0) / elapsed - rate)

        return Meter(
            now,
            up,
            down,
            average(self.rate_up, up - self.up),
            average(self.rate_down, down - self.down),
        )


#: Per stream key: its meter.
Rates = dict[str, Meter]


def compose(now: float, parts: Iterable[tuple[str, object]], rates: Rates) -> ServiceSnapshot:
    """The snapshot of ``parts`` (name, component snapshot); ``rates`` is updated."""
    clusters: dict[str, ClusterView] = {}
    sessions: list[SessionView] = []
    endpoints: list[EndpointView] = []
    streams: list[StreamView] = []
    fresh: Rates = {}
    desktop: tuple[ClusterStatus, ...] = ()
    for name, snap in parts:
        if isinstance(snap, DesktopSnapshot):
            desktop = snap.clusters
        elif isinstance(snap, RelaySnapshot):
            clusters.update((c.name, c) for c in _relay_clusters(snap))
        elif isinstance(snap, AgentSnapshot):
            sessions.append(_session(name, "agent", snap.cluster, snap))
            sessions.extend(_member_sessions(name, snap))
        elif isinstance(snap, ClientSnapshot):
            session = _session(name, "client", snap.name, snap)
            if snap.member:
                session = dataclasses.replace(session, relay=f"{snap.relay} (member {snap.member})")
            sessions.append(session)
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
                meter = _meter(now, info, rates.get(key))
                streams.append(_stream(key, name, info, meter))
                fresh[key] = meter
    rates.clear()
    rates.update(fresh)
    for status in desktop:
        clusters[status.name] = _with_status(clusters.get(status.name), status)
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


def _member_sessions(component: str, snap: AgentSnapshot) -> Iterable[SessionView]:
    """An agent's session per relay fleet member (a line each in the cluster's detail);
    none for the one session to a relay on its own (the agent's line says it all)."""
    if len(snap.sessions) < 2 and not any(s.member for s in snap.sessions):
        return
    for s in snap.sessions:
        relay = f"{s.address} (member {s.member})" if s.member else s.address
        yield SessionView(
            component, "agent", snap.cluster, relay, s.state, s.rtt, s.connected_since,
            s.last_error, s.reconnects,
        )  # fmt: skip


def _with_endpoint(known: ClusterView | None, snap: EndpointSnapshot) -> ClusterView:
    """The cluster as the relay reported it (or as this endpoint sees it), plus the
    endpoint's address."""
    if known is None:
        state = "online" if snap.session == "online" else "reconnecting"
        if snap.session == "online" and snap.last_refusal:
            state = "offline"
        known = ClusterView(snap.cluster, state, snap.last_refusal, snap.rtt, None)
    via = f"member {snap.member} ({snap.relay})" if snap.member else known.via
    return dataclasses.replace(known, endpoints=(*known.endpoints, snap.address), via=via)


def _with_status(known: ClusterView | None, status: ClusterStatus) -> ClusterView:
    """The desktop runtime's word on a configured cluster: a user's Disconnect wins over
    an agent the relay still sees, and a reason fills in where the parts gave none."""
    if known is None:
        return ClusterView(status.name, status.state, status.reason, None, None)
    if status.state == "disconnected":
        return dataclasses.replace(known, state=status.state, reason=status.reason)
    if known.state != "online" and known.reason is None:
        return dataclasses.replace(known, reason=status.reason)
    return known


#: The stream fields a ``StreamView`` carries under the same names (all but ``id``,
#: which becomes part of its key), including an ``InspectedStream``'s request fields.
_SKIPPED = frozenset({"id"})


def _meter(now: float, info: StreamInfo, prev: Meter | None) -> Meter:
    """The stream's meter now: a new one when first seen, at rest once it closed."""
    if prev is None or info.closed_at is not None:
        return Meter(now, info.bytes_up, info.bytes_down)
    return prev.advanced(now, info.bytes_up, info.bytes_down)


def _stream(key: str, component: str, info: StreamInfo, meter: Meter) -> StreamView:
    """The view of one stream, with its smoothed rates."""
    carried = {
        f.name: getattr(info, f.name) for f in dataclasses.fields(info) if f.name not in _SKIPPED
    }
    return StreamView(
        key=key, component=component, rate_up=meter.rate_up, rate_down=meter.rate_down, **carried
    )
