"""An agent's sessions to a relay fleet: one per member, each kept up on its own.

The agent first dials the address it was given (the fleet's shared address, behind a
load balancer). A relay that speaks protocol version 2 answers ``hello_ok`` with
``members``: which member this is, and every live member's advertised address. The
session becomes that member's, and the pool opens one more session per other member:
each dials the member's advertised address, or, if that cannot be reached, the shared
address again and again until it lands on that member. A session that lands on a
member the pool already holds closes without ``register`` (the relay would otherwise
replace the held session with it). Members that join get a session; sessions of
members that left the list end (once they are not online). Each session reconnects
with capped exponential backoff and full jitter, on its own.

A relay that is not a fleet member sends an empty list: the first session is the only
one. A relay that answers version 2 with ``unsupported_version`` (an older Wicket) is
dialed again with version 1: one session, no list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.aio.channel import ControlChannel, expect
from core.aio.dial import REPLY_TIMEOUT, ClientContexts, Enrollment, connect_mux, hello_members
from core.aio.lifecycle import cancel_and_wait
from core.aio.mux import MuxConnection, StreamHandler
from core.aio.peer import backoff_delay
from core.errors import (
    AuthError,
    MuxError,
    ProtocolError,
    TunnelError,
    UnsupportedVersion,
    WicketError,
)
from core.protocol.control import FLEET_VERSION, PROTOCOL_VERSION, Message
from core.protocol.mux import MuxConfig

log = logging.getLogger("wicket.agent")

#: A member's advertised address gets this long to answer before the shared one is tried.
DIRECT_TIMEOUT = 3.0
#: Landing on the wrong member (through the shared address) is retried at once this many
#: times in a row before the usual backoff applies.
QUICK_RETRIES = 8


class Misrouted(TunnelError):
    """The shared address led to a member that already has its session."""


@dataclass(frozen=True)
class MemberSessionInfo:
    """One session of the agent: to which member, through which address, how it is."""

    member: str | None
    address: str
    state: str
    rtt: float | None
    connected_since: float | None
    reconnects: int
    last_error: str | None


class MemberSession:
    """One session slot: ``member`` None until it landed (the first, or a lone relay)."""

    def __init__(self, pool: SessionPool, member: str | None, address: str | None) -> None:
        self.pool = pool
        self.member = member
        self.address = address  # the advertised address; None: the shared one
        self.via = address or pool.shared
        self.state = "connecting"
        self.last_error: str | None = None
        self.reconnects = 0
        self.connected_since: float | None = None
        self.conn: MuxConnection | None = None
        self.direct_failed = False
        #: The last session landed on a member held already (retried at once).
        self.misrouted = False
        self.task: asyncio.Task[None] | None = None

    def info(self) -> MemberSessionInfo:
        conn = self.conn
        online = self.state == "online" and conn is not None and not conn.closed
        return MemberSessionInfo(
            self.member,
            self.via,
            self.state,
            conn.session.rtt if online and conn is not None else None,
            self.connected_since,
            self.reconnects,
            self.last_error,
        )

    @property
    def online(self) -> bool:
        return self.state == "online" and self.conn is not None and not self.conn.closed

    async def run(self) -> None:
        attempt = quick = 0
        while True:
            try:
                await self._session()
            except Misrouted as exc:
                self.last_error = str(exc)
                log.debug("%s", exc)
            except (TunnelError, MuxError, ProtocolError, AuthError, OSError) as exc:
                self.last_error = str(exc)
                log.warning("session to %s ended: %s", self._name(), exc)
            was_up = self.connected_since is not None
            self.connected_since = None
            self.state = "reconnecting"
            self.reconnects += 1
            self.pool.changed()
            if not self.pool.keeps(self):
                self.state = "stopped"
                self.pool.changed()
                return
            if was_up:
                attempt = quick = 0
            if self.misrouted and quick < QUICK_RETRIES:
                quick += 1
                delay = backoff_delay(0, 0.05, 0.05)
            else:
                delay = backoff_delay(attempt, self.pool.backoff_base, self.pool.backoff_cap)
                attempt += 1
            await asyncio.sleep(delay)

    def _name(self) -> str:
        return f"member {self.member} at {self.via}" if self.member else f"relay {self.via}"

    async def _dial(self) -> MuxConnection:
        pool = self.pool
        context = pool.contexts.get(pool.creds)
        handler = pool.stream_handler
        if self.address is not None and not self.direct_failed:
            try:
                self.via = self.address
                return await connect_mux(self.address, context, pool.mux, handler, DIRECT_TIMEOUT)
            except TunnelError as exc:
                log.warning("%s: %s; dialing %s instead", self._name(), exc, pool.shared)
                self.direct_failed = True
        self.via = pool.shared
        return await connect_mux(pool.shared, context, pool.mux, handler)

    async def _session(self) -> None:
        self.misrouted = False
        conn = await self._dial()
        self.conn = conn
        try:
            channel, members = await self._hello(conn)
            if members is not None and not self.pool.landed(self, members):
                self.misrouted = True
                raise Misrouted(f"{self.via} led to member {members['self']}, held already")
            identity = self.pool.creds.identity
            channel.send({"type": "register", "cluster": identity.name, "target": self.pool.target})
            expect(await channel.recv(REPLY_TIMEOUT), "registered")
            self.state = "online"
            self.last_error = None
            self.connected_since = time.time()
            self.pool.changed()
            log.info("online: %s", self._name())
            await self._follow(channel)
            term = conn.session.terminated
            raise TunnelError(str(term) if term else "connection closed")
        finally:
            conn.abort()

    async def _hello(self, conn: MuxConnection) -> tuple[ControlChannel, Message | None]:
        """Authenticate; with version 2 the relay's ``members`` comes right after."""
        version = self.pool.version
        try:
            return await hello_members(conn, self.pool.creds.identity, version)
        except UnsupportedVersion:
            if version != PROTOCOL_VERSION:
                log.info("the relay at %s speaks no version %d: using 1", self.via, version)
                self.pool.version = PROTOCOL_VERSION
            raise

    async def _follow(self, channel: ControlChannel) -> None:
        """Read the control stream until the session ends: ``members`` updates the pool."""
        with contextlib.suppress(WicketError, OSError):
            while True:
                msg = await channel.recv()
                if msg["type"] == "members":
                    self.pool.update(msg["members"])
                else:
                    log.debug("control message %s", msg["type"])


class SessionPool:
    """The agent's member sessions; ``changed`` is called whenever one changes state."""

    def __init__(
        self,
        creds: Enrollment,
        target: str,
        *,
        mux: MuxConfig,
        stream_handler: StreamHandler | None,
        changed: Callable[[], None],
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.creds = creds
        self.contexts = ClientContexts()  # built once for every member session and retry
        self.shared = creds.relay
        self.target = target
        self.mux = mux
        self.stream_handler = stream_handler
        self.changed = changed
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.version = FLEET_VERSION
        self.members: dict[str, str] = {}
        self.slots: dict[str, MemberSession] = {}
        self.seed: MemberSession | None = None
        self._done = asyncio.get_running_loop().create_future()

    def sessions(self) -> list[MemberSession]:
        seed = [self.seed] if self.seed is not None else []
        return [*seed, *self.slots.values()]

    async def run(self) -> None:
        """Run until cancelled (then every session ends)."""
        self.seed = self._start(MemberSession(self, None, None))
        try:
            await self._done
        finally:
            await self.close()

    async def close(self) -> None:
        sessions = self.sessions()
        for s in sessions:
            if s.conn is not None:
                s.conn.abort()
        for s in sessions:
            await cancel_and_wait(s.task)

    def _start(self, slot: MemberSession) -> MemberSession:
        slot.task = asyncio.get_running_loop().create_task(slot.run(), name="wicket-member")
        slot.task.add_done_callback(self._ended)
        return slot

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._done.done():
            return
        exc = task.exception()
        if exc is not None:  # a bug or a fatal error (its files): the agent stops on it
            self._done.set_exception(exc)

    def landed(self, slot: MemberSession, members: Message) -> bool:
        """``slot`` reached member ``members["self"]``: True if it should register."""
        here = members["self"]
        listed = members["members"]
        if here is None:  # a relay on its own: the one session, as before fleets
            return slot is self.seed
        holder = self.slots.get(here)
        if holder is not None and holder is not slot:
            self.update(listed)
            return False
        if slot.member is not None and self.slots.get(slot.member) is slot:
            del self.slots[slot.member]
        if slot is self.seed:
            self.seed = None
        slot.member = here
        self.slots[here] = slot
        self.update(listed)
        return True

    def update(self, listed: list[dict[str, str]]) -> None:
        """The member list changed: a session for each new member, none for the gone."""
        self.members = {m["id"]: m["address"] for m in listed}
        for member, address in self.members.items():
            slot = self.slots.get(member)
            if slot is None:
                log.info("fleet member %s at %s: opening a session", member, address)
                self.slots[member] = self._start(MemberSession(self, member, address))
            elif slot.address != address:
                slot.address, slot.direct_failed = address, False
        for member, slot in list(self.slots.items()):
            if member not in self.members and not slot.online and slot.task is not None:
                log.info("fleet member %s left: its session ends", member)
                del self.slots[member]
                slot.task.cancel()
        if self.seed is not None and self.slots:  # the members have their own sessions
            if self.seed.task is not None:
                self.seed.task.cancel()
            self.seed = None
        self.changed()

    def keeps(self, slot: MemberSession) -> bool:
        """Whether ``slot`` should dial again after its session ended."""
        if slot is self.seed:
            return True
        if slot.member is None or self.slots.get(slot.member) is not slot:
            return False
        if slot.member not in self.members and self.members:
            del self.slots[slot.member]
            return False
        return True
