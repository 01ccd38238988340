"""Immutable views of everything Wicket runs, for the desktop app, the CLI and tests.

A ``ServiceSnapshot`` is built from the components' own snapshots, with rates computed
from the previous snapshot; it holds only tuples of frozen dataclasses, so it can be
handed to another thread (the GUI's) as is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamView:
    key: str  # unique across components: "<component>/<id>"
    component: str
    cluster: str
    endpoint: str
    client: str | None
    opened_at: float
    closed_at: float | None
    bytes_up: int
    bytes_down: int
    rate_up: float
    rate_down: float
    state: str
    close_reason: str | None
    # Inspect mode only (one view per request; None/empty for passthrough streams):
    method: str | None = None
    path: str | None = None
    status: int | None = None
    kubectl_command: str | None = None
    upgrade: str | None = None
    """``none``, ``requested``, ``accepted`` or ``refused``."""
    protocol: str | None = None
    """The upgrade asked for: ``websocket`` or ``SPDY/3.1``."""
    subprotocol: str | None = None
    """What the 101 chose, e.g. ``v5.channel.k8s.io``, ``portforward.k8s.io``."""
    detail: tuple[tuple[str, str], ...] = ()
    """Decoded session detail as ``(name, value)`` pairs (``kind``, ``command``,
    ``channels``, ``exit_code``, ``ports``, ``connection <id>``, ``event_count``…)."""

    @property
    def inspected(self) -> bool:
        return self.method is not None

    def detail_value(self, name: str) -> str | None:
        return next((v for k, v in self.detail if k == name), None)

    def age(self, now: float) -> float:
        return (self.closed_at or now) - self.opened_at


@dataclass(frozen=True)
class SessionView:
    """A session to a relay (agent or client side), or the relay's view of a peer."""

    component: str
    role: str
    name: str | None
    relay: str | None
    state: str
    rtt: float | None
    connected_since: float | None
    last_error: str | None
    reconnects: int


@dataclass(frozen=True)
class EndpointView:
    component: str
    cluster: str
    address: str
    mode: str
    state: str
    last_refusal: str | None


@dataclass(frozen=True)
class ClusterView:
    name: str
    state: str  # online | offline | reconnecting
    reason: str | None
    rtt: float | None
    public_address: str | None
    endpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceSnapshot:
    taken_at: float
    clusters: tuple[ClusterView, ...] = ()
    sessions: tuple[SessionView, ...] = ()
    endpoints: tuple[EndpointView, ...] = ()
    streams: tuple[StreamView, ...] = ()

    def cluster(self, name: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.name == name), None)


@dataclass(frozen=True)
class ServiceEvent:
    """Something changed: ``kind`` is e.g. ``session``, ``cluster``, ``stream-opened``."""

    at: float
    kind: str
    subject: str
    detail: str
