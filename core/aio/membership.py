"""A relay's place in its fleet: its row in the store's member list, kept alive.

Started after the relay listens: one heartbeat at once (the member is listed before
``start`` returns), then one every ``HEARTBEAT_INTERVAL`` seconds from the event loop,
each written from a worker thread. A member whose loop or process stops beating drops
out of the list within ``LIVE_WINDOW`` plus one interval; a clean stop removes its row
at once. A heartbeat the store refuses (the database away) is logged, and the next one
tries again: the relay keeps serving what it can meanwhile.

Each beat also reads the member list (``members``, what agents are told); a list that
changed calls ``on_change`` on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from core.errors import RegistryError
from core.registry.store import HEARTBEAT_INTERVAL, FleetStore, MemberRecord

log = logging.getLogger("wicket.relay")


class Membership:
    """Keep ``advertise`` in ``store``'s member list while started."""

    def __init__(
        self,
        store: FleetStore,
        advertise: str,
        interval: float = HEARTBEAT_INTERVAL,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.advertise = advertise
        self.interval = interval
        self.on_change = on_change
        #: The live members as last read (this one included once its beat is recorded).
        self.members: list[MemberRecord] = []
        #: New for each start: a restarted relay is a new member (the old row expires).
        self.member_id = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.members = await asyncio.to_thread(self._beat_once)
        log.info("fleet member %s, advertised at %s", self.member_id, self.advertise)
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        try:
            await asyncio.to_thread(self.store.leave, self.member_id)
        except RegistryError as exc:
            log.warning("could not leave the fleet's member list (it expires): %s", exc)

    async def _beat(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                members = await asyncio.to_thread(self._beat_once)
            except RegistryError as exc:
                if not failing:
                    log.error("heartbeat not recorded (the fleet will drop this member): %s", exc)
                failing = True
            else:
                if failing:
                    log.info("heartbeat recorded again")
                failing = False
                self._update(members)

    def _beat_once(self) -> list[MemberRecord]:
        self.store.heartbeat(self.member_id, self.advertise)
        return self.store.members()

    def _update(self, members: list[MemberRecord]) -> None:
        def key(ms: list[MemberRecord]) -> list[tuple[str, str]]:
            return [(m.member_id, m.advertise) for m in ms]

        changed = key(members) != key(self.members)
        self.members = members
        if changed and self.on_change is not None:
            self.on_change()
