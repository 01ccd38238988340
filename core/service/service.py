"""The service façade the desktop app and the CLI share.

It starts and stops relays, agents, client sessions and local endpoints in-process,
publishes an immutable ``ServiceSnapshot`` a few times a second (``latest``: a plain
attribute, so another thread can read it without waiting on the event loop), and feeds
``ServiceEvent``s to subscribers through bounded queues (a slow subscriber loses old
events, it never slows the data plane). It never imports Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.aio.agent import Agent, AgentSnapshot
from core.aio.endpoint import (
    ClientSnapshot,
    EndpointSnapshot,
    InspectedStream,
    InspectSettings,
    LocalEndpoint,
    RelayClient,
)
from core.aio.relay import Relay, RelayConfig, RelaySnapshot
from core.aio.tunnel import StreamInfo
from core.errors import ConfigError
from core.mode import Mode
from core.pki.tokens import Token
from core.service.model import (
    ClusterView,
    EndpointView,
    ServiceEvent,
    ServiceSnapshot,
    SessionView,
    StreamView,
)

PUBLISH_HZ = 5.0
EVENT_QUEUE = 1000


class _Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass
class _Entry:
    name: str
    component: _Component
    snapshot: Callable[[], object]


class WicketService:
    """Owns the running components; ``start()``/``stop()`` the publisher."""

    def __init__(self, publish_hz: float = PUBLISH_HZ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._publish_every = 1.0 / publish_hz
        self._publisher: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Queue[ServiceEvent]] = set()
        self._last_rates: dict[str, tuple[float, int, int]] = {}
        self._seen_streams: set[str] = set()
        self._last_states: dict[str, str] = {}
        self.latest = ServiceSnapshot(time.time())

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name="wicket-service")

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        for name in reversed(list(self._entries)):
            await self.remove(name)

    async def add(self, name: str, component: _Component, snapshot: Callable[[], object]) -> None:
        """Start a component under a unique name (its snapshot joins the service's)."""
        if name in self._entries:
            raise ConfigError(f"{name} is already running")
        await component.start()
        self._entries[name] = _Entry(name, component, snapshot)
        self._emit("component", name, "started")
        self.refresh()

    async def remove(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            await entry.component.stop()
            self._emit("component", name, "stopped")
            self.refresh()

    def component(self, name: str) -> object | None:
        entry = self._entries.get(name)
        return entry.component if entry else None

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    # -- conveniences for the usual parts ----------------------------------------------

    async def start_relay(self, config: RelayConfig, name: str = "relay") -> Relay:
        relay = Relay(config)
        await self.add(name, relay, relay.snapshot)
        return relay

    async def start_agent(
        self,
        state_dir: Path,
        target: tuple[str, int],
        token: Token | None = None,
        name: str | None = None,
    ) -> Agent:
        agent = Agent(state_dir, target[0], target[1], token=token)
        await self.add(name or f"agent:{state_dir.name}", agent, agent.snapshot)
        return agent

    async def start_client(
        self, state_dir: Path, token: Token | None = None, name: str = "client"
    ) -> RelayClient:
        client = RelayClient(state_dir, token)
        await self.add(name, client, client.snapshot)
        return client

    async def start_endpoint(
        self,
        client: RelayClient,
        cluster: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: Mode | str = Mode.PASSTHROUGH,
        inspect: InspectSettings | None = None,
    ) -> LocalEndpoint:
        """A local endpoint; ``mode="inspect"`` needs ``inspect`` settings."""
        endpoint = LocalEndpoint(client, cluster, host, port, mode=mode, inspect=inspect)
        await self.add(f"endpoint:{cluster}", endpoint, endpoint.snapshot)
        return endpoint

    # -- snapshots and events ----------------------------------------------------------

    def refresh(self) -> ServiceSnapshot:
        """Build a snapshot now (the publisher does this a few times a second)."""
        now = time.time()
        parts = [(e.name, e.snapshot()) for e in self._entries.values()]
        snap = _compose(now, parts, self._last_rates)
        self._diff(snap)
        self.latest = snap
        return snap

    async def subscribe(self) -> AsyncIterator[ServiceEvent]:
        """Events as they happen; a subscriber that falls behind loses the oldest."""
        queue: asyncio.Queue[ServiceEvent] = asyncio.Queue(EVENT_QUEUE)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def _emit(self, kind: str, subject: str, detail: str) -> None:
        event = ServiceEvent(time.time(), kind, subject, detail)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def _diff(self, snap: ServiceSnapshot) -> None:
        states = {f"session:{s.component}": s.state for s in snap.sessions}
        states.update({f"cluster:{c.name}": c.state for c in snap.clusters})
        for key, state in states.items():
            if self._last_states.get(key) != state:
                kind, subject = key.split(":", 1)
                self._emit(kind, subject, state)
        self._last_states = states
        keys = {s.key for s in snap.streams if s.closed_at is None}
        for stream in snap.streams:
            if stream.key in keys and stream.key not in self._seen_streams:
                self._emit("stream-opened", stream.key, f"{stream.cluster} {stream.client or ''}")
        for key in self._seen_streams - keys:
            self._emit("stream-closed", key, "")
        self._seen_streams = keys

    async def _publish_loop(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self._publish_every)


def _compose(
    now: float, parts: Iterable[tuple[str, object]], rates: dict[str, tuple[float, int, int]]
) -> ServiceSnapshot:
    clusters: dict[str, ClusterView] = {}
    sessions: list[SessionView] = []
    endpoints: list[EndpointView] = []
    streams: list[StreamView] = []
    fresh: dict[str, tuple[float, int, int]] = {}

    def add_streams(component: str, infos: Iterable[StreamInfo]) -> None:
        for info in infos:
            key = f"{component}/{info.id}"
            up = down = 0.0
            prev = rates.get(key)
            if prev is not None and info.closed_at is None and now > prev[0]:
                dt = now - prev[0]
                up, down = (info.bytes_up - prev[1]) / dt, (info.bytes_down - prev[2]) / dt
            fresh[key] = (now, info.bytes_up, info.bytes_down)
            view = StreamView(
                key,
                component,
                info.cluster,
                info.endpoint,
                info.client,
                info.opened_at,
                info.closed_at,
                info.bytes_up,
                info.bytes_down,
                max(up, 0.0),
                max(down, 0.0),
                info.state,
                info.close_reason,
            )
            if isinstance(info, InspectedStream):
                view = dataclasses.replace(
                    view,
                    method=info.method,
                    path=info.path,
                    status=info.status,
                    kubectl_command=info.kubectl_command,
                    upgrade=info.upgrade,
                    protocol=info.protocol,
                    subprotocol=info.subprotocol,
                    detail=info.detail,
                )
            streams.append(view)

    for name, snap in parts:
        if isinstance(snap, RelaySnapshot):
            for c in snap.clusters:
                cname = str(c["name"])
                rtt = c.get("rtt")
                clusters[cname] = ClusterView(
                    cname,
                    "online" if c["online"] else "offline",
                    None if c["online"] else "agent not connected",
                    float(rtt) if isinstance(rtt, (int, float)) else None,
                    str(c["public_address"]) if c.get("public_address") else None,
                )
            add_streams(name, snap.streams)
        elif isinstance(snap, AgentSnapshot):
            sessions.append(
                SessionView(
                    name,
                    "agent",
                    snap.cluster,
                    snap.relay,
                    snap.state,
                    snap.rtt,
                    snap.connected_since,
                    snap.last_error,
                    snap.reconnects,
                )
            )
            add_streams(name, snap.streams)
        elif isinstance(snap, ClientSnapshot):
            sessions.append(
                SessionView(
                    name,
                    "client",
                    snap.name,
                    snap.relay,
                    snap.state,
                    snap.rtt,
                    snap.connected_since,
                    snap.last_error,
                    snap.reconnects,
                )
            )
        elif isinstance(snap, EndpointSnapshot):
            endpoints.append(
                EndpointView(
                    name, snap.cluster, snap.address, snap.mode, snap.session, snap.last_refusal
                )
            )
            add_streams(name, snap.streams)
            known = clusters.get(snap.cluster)
            if known is None:
                state = "online" if snap.session == "online" else "reconnecting"
                if snap.session == "online" and snap.last_refusal:
                    state = "offline"
                known = ClusterView(snap.cluster, state, snap.last_refusal, snap.rtt, None)
            clusters[snap.cluster] = ClusterView(
                known.name,
                known.state,
                known.reason,
                known.rtt,
                known.public_address,
                (*known.endpoints, snap.address),
            )
    rates.clear()
    rates.update(fresh)
    return ServiceSnapshot(
        now,
        tuple(sorted(clusters.values(), key=lambda c: c.name)),
        tuple(sessions),
        tuple(endpoints),
        tuple(streams),
    )
