"""The service façade the desktop app and the CLI share.

It starts and stops relays, agents, client sessions and local endpoints in-process,
publishes an immutable ``ServiceSnapshot`` a few times a second (``latest``: a plain
attribute, so another thread can read it without waiting on the event loop), and feeds
``ServiceEvent``s to subscribers through bounded queues (a slow subscriber loses old
events, it never slows the data plane). It never imports Qt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

from core.aio.agent import Agent
from core.aio.endpoint import EndpointOptions, LocalEndpoint, RelayClient
from core.aio.lifecycle import Component, cancel_and_wait
from core.aio.relay import Relay, RelayConfig
from core.errors import ConfigError
from core.pki.tokens import Token
from core.service.model import ServiceEvent, ServiceSnapshot
from core.service.snapshot import Rates, compose

PUBLISH_HZ = 5.0
EVENT_QUEUE = 1000


@dataclass
class _Entry:
    name: str
    component: Component
    snapshot: Callable[[], object]


class WicketService:
    """Owns the running components; ``start()``/``stop()`` the publisher."""

    def __init__(self, publish_hz: float = PUBLISH_HZ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._publish_every = 1.0 / publish_hz
        self._publisher: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Queue[ServiceEvent]] = set()
        self._last_rates: Rates = {}
        self._seen_streams: set[str] = set()
        self._last_states: dict[str, str] = {}
        self.latest = ServiceSnapshot(time.time())

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name="wicket-service")

    async def stop(self) -> None:
        await cancel_and_wait(self._publisher)
        for name in reversed(list(self._entries)):
            await self.remove(name)

    async def add(self, name: str, component: Component, snapshot: Callable[[], object]) -> None:
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
        self, client: RelayClient, cluster: str, **options: Unpack[EndpointOptions]
    ) -> LocalEndpoint:
        """A local endpoint (``LocalEndpoint``'s options and defaults)."""
        endpoint = LocalEndpoint(client, cluster, **options)
        await self.add(f"endpoint:{cluster}", endpoint, endpoint.snapshot)
        return endpoint

    # -- snapshots and events ----------------------------------------------------------

    def refresh(self) -> ServiceSnapshot:
        """Build a snapshot now (the publisher does this a few times a second)."""
        now = time.time()
        parts = [(e.name, e.snapshot()) for e in self._entries.values()]
        snap = compose(now, parts, self._last_rates)
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
