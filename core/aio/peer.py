"""A peer of the relay (agent or desktop client): enrollment, one session, reconnects.

The session is kept up with capped exponential backoff and full jitter; a peer that has
never enrolled enrolls first with its one-time token. A refused token is final (it does
not get better by retrying); everything else is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import ClassVar

from core.aio.channel import ControlChannel
from core.aio.dial import (
    ClientContexts,
    Enrollment,
    connect_mux,
    enroll,
    hello_members,
    load_enrollment,
    use_relay,
)
from core.aio.lifecycle import cancel_and_wait
from core.aio.mux import MuxConnection, StreamHandler
from core.errors import (
    AuthError,
    ConfigError,
    MuxError,
    PKIError,
    ProtocolError,
    RemoteProtocolError,
    TunnelError,
    UnsupportedVersion,
    WicketError,
)
from core.pki.identity import Role
from core.pki.tokens import Token
from core.protocol.control import FLEET_VERSION, PROTOCOL_VERSION
from core.protocol.mux import MuxConfig

log = logging.getLogger("wicket.peer")

#: Keepalive: the peer is the side that pings, every 20 s (5 s to answer: a dead relay is
#: noticed within 25 s); the relay's longer interval (``core.aio.relay.RELAY_MUX``) makes
#: it only answer while our pings arrive, so an idle session costs the relay two TLS
#: records per 20 s, not four per 5 s (docs/mux.md, "Keepalive"). A relay that stops
#: reading cannot fake the answer (random ping ids) and is dropped 10 s after our writes
#: stall (``drain_timeout``).
#: The accept backlog matches the un-ACKed opens a peer may have (``max_pending_opens``):
#: the session parses a whole transport read before the stream handler accepts any of
#: it, so a burst of opens (1,000 kubectl connections at once) must fit in the backlog.
TUNNEL_MUX = MuxConfig(
    keepalive_interval=20.0,
    keepalive_timeout=5.0,
    drain_timeout=10.0,
    accept_backlog=MuxConfig().max_pending_opens,
)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^attempt)] (AWS architecture blog)."""
    return random.uniform(0, min(cap, base * 2**attempt))


class RelayPeer:
    """Base of ``Agent`` and ``RelayClient``: keeps one authenticated session up."""

    role: ClassVar[Role]

    def __init__(
        self,
        state_dir: Path,
        token: Token | None,
        mux: MuxConfig = TUNNEL_MUX,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        self.state_dir = state_dir
        self._token = token
        self.mux = mux
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.state = "starting"
        self.last_error: str | None = None
        self.reconnects = 0
        #: The relay answered the last attempt with a refusal (revoked, unknown...):
        #: waiting for the session would be in vain (the endpoint refuses at once).
        self.refused = False
        self.creds: Enrollment | None = None
        #: The protocol version to say in ``hello``: 2, or 1 once a relay refused 2.
        self.version = FLEET_VERSION
        #: The relay fleet member the live session is on (None: none, or no fleet).
        self.member: str | None = None
        #: The last session was on a fleet member: another member may take the next one
        #: at once, so a new local connection is worth holding while it reconnects.
        self.in_fleet = False
        self._conn: MuxConnection | None = None
        self.connected_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._online = asyncio.Event()
        self.contexts = ClientContexts()  # one per peer, kept across reconnections

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"wicket-{self.role.value}")

    async def stop(self) -> None:
        with contextlib.suppress(WicketError):  # how it ended was logged and kept
            await cancel_and_wait(self._task)
        if self._conn is not None:
            self._conn.abort()
            await self._conn.wait_closed()
        self.state = "stopped"

    async def wait_online(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._online.wait()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def conn(self) -> MuxConnection | None:
        """The live session, or None while there is none."""
        conn = self._conn
        return conn if conn is not None and not conn.closed and self._online.is_set() else None

    @property
    def rtt(self) -> float | None:
        conn = self.conn
        return conn.session.rtt if conn is not None else None

    # -- hooks -------------------------------------------------------------------------

    def stream_handler(self) -> StreamHandler | None:
        """How streams the relay opens towards us are served (None: refused)."""
        return None

    async def after_hello(self, channel: ControlChannel) -> None:
        """The role's part of the conversation once authenticated."""

    # -- the loop ----------------------------------------------------------------------

    async def _enrollment(self) -> Enrollment:
        """The identity to dial with: a token wins over the identity in use. A token for
        another relay, or for another name at this one, enrolls; one for the identity
        already held there only says where its relay is now."""
        token = self._token
        fingerprint = token.ca_fingerprint if token is not None else None
        creds = load_enrollment(self.state_dir, self.role, fingerprint)
        if creds is not None and (token is None or creds.identity.name == token.name):
            if token is not None:
                use_relay(self.state_dir, self.role, token.ca_fingerprint, token.relay)
                creds = dataclasses.replace(creds, relay=token.relay)
            return creds
        if token is None:
            raise ConfigError(f"{self.state_dir}: not enrolled yet, and no token was given")
        self.state = "enrolling"
        log.info("enrolling with the relay at %s as %s %s", token.relay, self.role, token.name)
        creds = await enroll(token, self.state_dir, self.role, self.mux)
        log.info("enrolled as %s", creds.identity.uri)
        return creds

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                self.creds = await self._enrollment()
                self.state = "connecting"
                await self._session()
            except (ConfigError, PKIError) as exc:
                self._failed(exc)
                raise
            except AuthError as exc:
                if self.creds is None:
                    self._failed(exc)
                    raise  # a refused token does not get better by retrying
                self.last_error = str(exc)
                self.refused = True
                log.error("the relay refused this %s: %s", self.role, exc)
            except (TunnelError, MuxError, ProtocolError, OSError) as exc:
                self.last_error = str(exc)
                self.refused = isinstance(exc, RemoteProtocolError) and str(exc).startswith(
                    "relay refused"
                )
                log.warning("session to the relay ended: %s", exc)
            if self.connected_since is not None:
                attempt = 0  # it was up: start the backoff again from the bottom
            self._online.clear()
            self.connected_since = None
            self.state = "reconnecting"
            self.reconnects += 1
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
            attempt += 1
            log.info("reconnecting in %.2f s", delay)
            await asyncio.sleep(delay)

    def _failed(self, exc: Exception) -> None:
        self.state = "failed"
        self.last_error = str(exc)
        log.error("%s cannot run: %s", self.role, exc)

    async def _session(self) -> None:
        creds = self.creds
        assert creds is not None
        context = self.contexts.get(creds)
        conn = await connect_mux(creds.relay, context, self.mux, self.stream_handler())
        self._conn = conn
        try:
            channel, self.member = await self._hello(conn, creds)
            self.in_fleet = self.member is not None
            await self.after_hello(channel)
            self.state = "online"
            self.refused = False
            self.last_error = None
            self.connected_since = time.time()
            self._online.set()
            log.info("online: %s via %s", creds.identity.uri, creds.relay)
            await conn.wait_closed()
            term = conn.session.terminated
            raise TunnelError(str(term) if term else "connection closed")
        finally:
            self.member = None
            conn.abort()

    async def _hello(
        self, conn: MuxConnection, creds: Enrollment
    ) -> tuple[ControlChannel, str | None]:
        """``hello`` with version 2; a relay that speaks 1 only (an older Wicket) is
        dialed again saying 1 (not a refusal of this peer: no ``refused``)."""
        try:
            channel, members = await hello_members(conn, creds.identity, self.version)
        except UnsupportedVersion as exc:
            if self.version == PROTOCOL_VERSION:
                raise
            self.version = PROTOCOL_VERSION
            log.info("the relay at %s speaks no version %d: using 1", creds.relay, FLEET_VERSION)
            raise TunnelError(f"{exc}; dialing again with version 1") from exc
        return channel, (members["self"] if members is not None else None)
