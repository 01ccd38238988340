"""What the desktop runtime adds to the service's snapshot: each configured cluster's
own state where the running parts cannot tell it (disconnected by the user, failed to
start, its relay session down), so the list, the tray and the tooltip read one truth."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    state: str  # disconnected | offline | reconnecting
    reason: str | None


@dataclass(frozen=True)
class DesktopSnapshot:
    clusters: tuple[ClusterStatus, ...] = ()


class Passive:
    """A snapshot source that the service starts and stops as if it were a component
    (the runtime itself, a part of the demo stack)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
