"""Immutable views of everything Wicket runs, for the desktop app, the CLI and tests.

A ``ServiceSnapshot`` is built from the components' own snapshots, with rates computed
from the previous snapshot; it holds only tuples of frozen dataclasses, so it can be
handed to another thread (the GUI's) as is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from core.protocol.preamble import INSPECT_CLIENT
from core.protocol.redaction import NO_HEADERS, RecordedHeaders


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
    sni: str | None = None
    """Passthrough: the server name in the client's TLS ClientHello (None if none seen)."""
    alpn: str | None = None
    """Passthrough: the ALPN protocols the ClientHello offered, comma-separated
    (``h2,http/1.1``: an API connection; ``http/1.1``, also for no offer: an
    exec/attach/port-forward upgrade). None if no ClientHello was seen."""
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
    ``channels``, ``exit_code``, ``channel_bytes``, ``resizes``, ``ports``,
    ``connection <id>``, ``event_count``…)."""
    query: str | None = None
    """The request target's query string (``follow=true&container=web``…)."""
    request_headers: RecordedHeaders = NO_HEADERS
    """The request's headers as kubectl sent them, credentials redacted, bounded."""
    response_headers: RecordedHeaders = NO_HEADERS
    """The response's headers as the apiserver sent them, credentials redacted, bounded."""

    @property
    def inspected(self) -> bool:
        return self.method is not None

    def detail_value(self, name: str) -> str | None:
        return next((v for k, v in self.detail if k == name), None)

    def age(self, now: float) -> float:
        return (self.closed_at or now) - self.opened_at


def claimed_client(client: str | None) -> str | None:
    """The kubectl-side client a hop's record names: the relay (and the agent after it)
    label a stream ``identity@source for CLIENT`` (core.aio.relay), the endpoint names
    ``CLIENT`` alone."""
    if client is None:
        return None
    return client.rpartition(" for ")[2]


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
    #: The relay fleet member this app's session for the cluster is on, and the
    #: address it dialed: "member ID (ADDRESS)"; None for a relay on its own.
    via: str | None = None


@dataclass(frozen=True)
class ServiceSnapshot:
    taken_at: float
    clusters: tuple[ClusterView, ...] = ()
    sessions: tuple[SessionView, ...] = ()
    endpoints: tuple[EndpointView, ...] = ()
    streams: tuple[StreamView, ...] = ()

    def cluster(self, name: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.name == name), None)

    @property
    def open_streams(self) -> int:
        """Open end-to-end streams, each counted once, not once per hop.

        One kubectl connection is a record at the local endpoint, the relay and the
        agent alike, all carrying the same request: cluster, endpoint kind and client
        address. Hops with the same request are one stream per component that sees it
        (the most any component sees: a shared client such as an inspect endpoint's
        connections still counts each). In inspect mode each request is a stream, and the
        tunnel connections carrying an inspect endpoint's requests are not counted again.
        """
        inspecting = {e.cluster for e in self.endpoints if e.mode == "inspect"}
        requests = 0
        hops: Counter[tuple[str, str, str | None, str]] = Counter()
        for s in self.streams:
            if s.closed_at is not None:
                continue
            client = claimed_client(s.client)
            if s.inspected:
                requests += 1
            elif not (client == INSPECT_CLIENT and s.cluster in inspecting):
                hops[(s.cluster, s.endpoint, client, s.component)] += 1
        streams: dict[tuple[str, str, str | None], int] = {}
        for (cluster, endpoint, client, _), count in hops.items():
            key = (cluster, endpoint, client)
            streams[key] = max(streams.get(key, 0), count)
        return requests + sum(streams.values())


@dataclass(frozen=True)
class ServiceEvent:
    """Something changed: ``kind`` is e.g. ``session``, ``cluster``, ``stream-opened``."""

    at: float
    kind: str
    subject: str
    detail: str
