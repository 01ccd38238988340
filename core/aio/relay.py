"""The relay: authenticates agents and desktop clients, routes and splices streams.

One TLS port serves both roles. TLS is started by hand on each accepted socket
(``core.aio.listener``: a raw socket, not a transport, so no byte is read before the TLS
layer) so that pre-authentication limits (total and per source) apply *before* a
handshake costs anything, and so that every handshake and every first message has a
deadline far below asyncio's 60 s default. Identities come from verified client
certificates only; the one-time token path (``enroll``) is the only thing an
unauthenticated peer may do.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import functools
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from core.aio.channel import ControlChannel
from core.aio.lastseen import LastSeen
from core.aio.listener import Listener, bind
from core.aio.membership import Membership
from core.aio.mux import MuxConnection, MuxStream
from core.aio.public import Network, PublicEndpoints, PublicLimits
from core.aio.quota import QuietLog, Quota, WaitLine
from core.aio.throttle import FailureThrottle
from core.aio.tunnel import PreambleReader, StreamBook, StreamInfo, StreamRecord, reply, spliced
from core.errors import AuthError, ConfigError, MuxError, PKIError, RegistryError, WicketError
from core.format import host_port, peer_address, utcnow
from core.pki import tls
from core.pki.ca import CertificateAuthority
from core.pki.certs import load_or_create_server_cert, sign_csr
from core.pki.identity import Identity, Role
from core.pki.keys import cert_to_pem, fingerprint
from core.pki.tokens import TokenKind, split_relay_address
from core.protocol.control import (
    FLEET_VERSION,
    SUPPORTED_VERSIONS,
    ErrorCode,
    Message,
    Sender,
    redacted,
)
from core.protocol.mux import INITIAL_WINDOW, MuxConfig
from core.protocol.preamble import MAX_FIELD, Status, StreamRequest
from core.registry.location import StoreLocation
from core.registry.state import RelayState
from core.registry.store import FleetStore, Scope, TokenRecord

_T = TypeVar("_T")
#: An agent's scope (agents reach no cluster through the relay): one object, not one each.
_NO_CLUSTERS: Scope = frozenset()
log = logging.getLogger("wicket.relay")

WILDCARDS = ("0.0.0.0", "::", "")


class Refusal(enum.StrEnum):
    """Refusals before any message could be answered: the connection is just closed.

    They are counted in ``Relay.refused`` beside the ``ErrorCode``s that refusals send
    in an ``error`` message (and a data stream's refused ``Status``).
    """

    THROTTLED = "throttled"
    PREAUTH_LIMIT = "preauth_limit"
    #: Beyond the pre-auth limits, no slot of its source freed within ``preauth_wait``.
    PREAUTH_WAIT = "preauth_wait"
    TLS = "tls"
    NO_VALID_HELLO = "no_valid_hello"
    #: A client's relayed streams at ``RelayConfig.max_streams_per_client``.
    CLIENT_STREAM_QUOTA = "client_stream_quota"
    #: A live session whose identity was revoked (by ``wicket relay revoke``).
    REVOKED = "revoked"


#: Refusals that count as a failed authentication for the per-source throttle.
AUTH_FAILURES = frozenset(
    {Refusal.TLS, Refusal.NO_VALID_HELLO, ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_TOKEN}
)

#: Accept backlog: see ``core.aio.peer.TUNNEL_MUX`` (a burst of opens in one read).
#: Keepalive: the peers ping every 20 s (``TUNNEL_MUX``); the relay answers, and pings
#: only a peer silent for 25 s (an old or a dead one), which it drops 5 s later: a dead
#: peer is noticed within 30 s (docs/mux.md, "Keepalive").
RELAY_MUX = MuxConfig(
    keepalive_interval=25.0,
    keepalive_timeout=5.0,
    drain_timeout=10.0,
    accept_backlog=MuxConfig().max_pending_opens,
)
#: Before authentication (docs/security.md, pre-auth): the control stream only (any
#: other open is refused at once), no window growth, Data frames no longer than the
#: first window, 64 KiB received in all (a hello or an enrollment takes a few KiB).
#: ``RelayConfig.mux`` replaces it once the peer proved who it is.
PREAUTH_MUX = replace(
    RELAY_MUX,
    max_window=INITIAL_WINDOW,
    max_frame=16 * 1024,
    accept_backlog=1,
    max_streams=1,
    max_pending_opens=1,
    max_session_buffer=INITIAL_WINDOW,
    max_control_backlog=4 * 1024,
    max_received=64 * 1024,
)


@dataclass(frozen=True)
class RelayConfig:
    state_dir: Path
    #: The registry: ``<state_dir>/registry.db``, or a fleet's PostgreSQL database.
    store: StoreLocation = field(default_factory=StoreLocation)
    #: A fleet member's ``HOST:PORT`` for agents (default: the address it listens on).
    advertise: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    public_host: str | None = None
    server_names: tuple[str, ...] = ()
    handshake_timeout: float = 5.0
    auth_timeout: float = 5.0
    max_preauth: int = 256
    max_preauth_per_source: int = 64
    #: Beyond those limits a connection waits for a slot of its source (accepted, no TLS
    #: yet: a descriptor each), at most ``preauth_wait`` seconds, at most this many per
    #: source and in all; only then is it refused. So a fleet coming back through one
    #: address (after a relay restart; behind a NAT) is let in as slots free instead of
    #: being refused into its backoff, and the caps on handshakes in progress still hold.
    max_waiting_per_source: int = 2048
    max_waiting: int = 4096
    preauth_wait: float = 2.0
    #: Failed authentications per source (core.aio.throttle): a burst, then a rate.
    auth_failure_burst: int = 32
    auth_failure_rate: float = 0.5
    mux: MuxConfig = field(default=RELAY_MUX)
    preauth_mux: MuxConfig = field(default=PREAUTH_MUX)
    #: Concurrent relayed streams of one client identity (all its sessions together).
    max_streams_per_client: int = 1024
    #: Public-endpoint connections per source address and in total.
    max_public_per_source: int = 64
    max_public: int = 1024
    #: Source networks admitted to public endpoints (empty: every source).
    public_allow: tuple[Network, ...] = ()
    public_idle_timeout: float = 10.0
    #: How often the registry is polled for revocations and removed clusters (seconds).
    watch_interval: float = 0.5
    #: A fleet member holds a client's stream this long for the agent's session to it
    #: (the agent dials every member; a member that just started has none yet).
    agent_wait: float = 3.0
    #: A refusal is logged at most once per source (and kind) per this many seconds.
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        """Each quota stays below the agent session's stream limit: what one holder (or
        the public) may take can never be all of a cluster."""
        if self.public_idle_timeout <= 0 or self.watch_interval <= 0 or self.log_interval < 0:
            raise ConfigError("the public idle timeout and the watch interval must be positive")
        if self.advertise is not None and not self.store.fleet:
            raise ConfigError("--advertise is for a fleet's members: it needs --store")
        if self.store.fleet and self.advertise is None and self.host in WILDCARDS:
            raise ConfigError(
                f"listening on {self.host}, a fleet member needs --advertise HOST:PORT "
                "(where agents reach this member)"
            )
        if self.preauth_wait < 0 or self.max_waiting < 0 or self.max_waiting_per_source < 0:
            raise ConfigError("the pre-auth wait and its limits must not be negative")
        limit = self.mux.max_streams
        for name in ("max_streams_per_client", "max_public_per_source", "max_public"):
            if not 1 <= getattr(self, name) < limit:
                raise ConfigError(f"{name} must be between 1 and {limit - 1} (the stream limit)")

    @property
    def public_limits(self) -> PublicLimits:
        return PublicLimits(
            self.public_allow, self.max_public_per_source, self.max_public, self.public_idle_timeout
        )


@dataclass(frozen=True)
class PeerInfo:
    role: str
    name: str
    address: str
    connected_at: float
    rtt: float | None
    streams: int


@dataclass(frozen=True)
class RelaySnapshot:
    address: str
    clusters: list[dict[str, object]]
    peers: list[PeerInfo]
    preauth: int
    refused: dict[str, int]
    streams: list[StreamInfo]
    #: Connections waiting for a pre-auth slot (``RelayConfig.preauth_wait``).
    waiting: int = 0


@dataclass(eq=False)
class _Peer:
    """One authenticated session (agent or client), with the scope of its identity."""

    identity: Identity
    conn: MuxConnection
    address: str
    fingerprint: str
    scope: Scope
    connected_at: float = field(default_factory=time.time)
    #: The client's relayed streams open now (by record id), for a narrowed scope.
    streams: dict[int, StreamRecord] = field(default_factory=dict)

    def may_reach(self, cluster: str) -> bool:
        return self.scope is None or cluster in self.scope  # None: ALL_CLUSTERS

    def label(self, claimed: str) -> str:
        """Who a stream is really from (identity and source address), then what the
        client claims it is for, cut to fit a preamble field."""
        label = f"{self.identity.name}@{self.address}"
        return (label + f" for {claimed}")[:MAX_FIELD] if claimed else label


class Relay:
    """The relay server; ``start()`` binds, ``stop()`` closes everything."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.state = RelayState(config.state_dir, config.store)
        #: Last-seen times go to the registry off the loop, without making anyone wait.
        self._last_seen = LastSeen(lambda: self.state.store)
        self.book = StreamBook()
        self._ca: CertificateAuthority | None = None
        self._context: ssl.SSLContext | None = None
        self._listener: Listener | None = None
        self._raw: set[socket.socket] = set()  # accepted, no transport yet
        self.quiet = QuietLog(log, config.log_interval)
        self.client_streams = Quota(config.max_streams_per_client)
        self._agents: dict[str, _Peer] = {}
        # Streams held for an agent not yet here (a fleet member): woken when it registers.
        self._agent_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._clients: set[_Peer] = set()
        #: Control channels of agents that spoke version 2: they follow the member list.
        self._fleet_agents: set[ControlChannel] = set()
        self._conns: set[MuxConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.membership: Membership | None = None
        self._stopped = False  # sessions ending after stop() must not reopen the registry
        self._preauth = Quota(config.max_preauth_per_source, config.max_preauth)
        self._waiting: WaitLine[tuple[socket.socket, object]] = WaitLine(
            config.max_waiting_per_source, config.max_waiting
        )
        self._expiry: asyncio.TimerHandle | None = None
        self.refused: Counter[str] = Counter()
        self.throttle = FailureThrottle(config.auth_failure_burst, config.auth_failure_rate)
        self.public = PublicEndpoints(
            config.public_host,
            config.public_limits,
            conn_for=lambda cluster: (
                self._agents[cluster].conn if cluster in self._agents else None
            ),
            book=self.book,
            refused=self.refused,
            quiet=self.quiet,
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        assert self._listener is not None
        host, port = self._listener.sockets[0].getsockname()[:2]
        return host_port(host, port)

    async def start(self) -> None:
        """Open the registry, listen, join the fleet; a start that fails part way
        closes what it opened (the registry's connections, a fleet store's thread)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config
        now = utcnow()
        self._stopped = False
        self.state.open()  # a refused registry stops the start before the CA is made
        self._ca = self.state.ca(now)
        advertised = [split_relay_address(cfg.advertise)[0].strip("[]")] if cfg.advertise else []
        names = [*cfg.server_names, *advertised, cfg.host, "localhost", "127.0.0.1"]
        hosts = [h for h in dict.fromkeys(names) if h not in WILDCARDS]
        chain, key = load_or_create_server_cert(self.state.dir, self._ca, hosts, now)
        self._context = tls.server_context(chain, key, self._ca.cert)
        loop = asyncio.get_running_loop()
        self._listener = Listener(loop, bind(cfg.host, cfg.port, backlog=1024), self.accepted)
        self.state.write_address(self.address)
        log.info("relay listening on %s (CA %s)", self.address, self._ca.fingerprint[:16])
        await self.sync_public_endpoints()
        self._last_seen.start()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        store = self.state.store
        if isinstance(store, FleetStore):
            self.membership = Membership(
                store, cfg.advertise or self.address, on_change=self._members_changed
            )
            await self.membership.start()

    async def stop(self) -> None:
        self._stopped = True
        if self.membership is not None:  # first: the fleet stops sending agents here
            await self.membership.stop()
            self.membership = None
        if self._listener is not None:
            self._listener.close()
        self._waiting.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for sock in self._raw:  # the waiting ones too
            sock.close()
        self._raw.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for conn in list(self._conns):
            conn.abort()
        for record in list(self.book.open.values()):
            if record.splice is not None:
                record.splice.close()
        await self.public.close()
        await self._last_seen.stop()
        self.state.close()

    async def sync_public_endpoints(self) -> None:
        """Listen on every registered cluster's public port, and only there (re-read)."""
        await self.public.sync(self.state.clusters())

    async def _watch(self) -> None:
        """Follow changes other processes commit to the registry: a revoked identity's
        sessions end, a removed cluster's public endpoint closes (within one interval)."""
        generation = self.state.store.generation()
        while True:
            await asyncio.sleep(self.config.watch_interval)
            try:
                now = self.state.store.generation()
                if now != generation:
                    generation = now
                    await self._end_revoked()
                    await self.sync_public_endpoints()
            except RegistryError as exc:
                log.error("cannot read the registry: %s", exc)

    def members_message(self) -> Message:
        """The fleet's member list as agents get it (empty for a relay on its own)."""
        membership = self.membership
        members = membership.members if membership is not None else []
        return {
            "type": "members",
            "self": membership.member_id if membership is not None else None,
            "members": [{"id": m.member_id, "address": m.advertise} for m in members],
        }

    def _members_changed(self) -> None:
        message = self.members_message()
        for control in list(self._fleet_agents):
            with contextlib.suppress(WicketError, OSError):
                control.send(message)

    async def _end_revoked(self) -> None:
        """Close the sessions of revoked identities, and of agents whose cluster is gone;
        apply changed scopes to live client sessions."""
        clusters = self.state.clusters()
        peers = [*self._agents.values(), *self._clients]
        clients = list(self._clients)

        def read() -> tuple[set[str], dict[str, Scope]]:
            revoked = {p.fingerprint for p in peers if self.state.identity_revoked(p.fingerprint)}
            return revoked, {p.fingerprint: self.state.store.scope(p.fingerprint) for p in clients}

        revoked, scopes = await self._off_loop(read)
        for client in clients:
            if client.fingerprint in scopes:
                self._rescope(client, scopes[client.fingerprint])
        for peer in peers:
            if peer.fingerprint in revoked:
                self.refused[Refusal.REVOKED.value] += 1
                why = "its identity was revoked"
            elif peer.identity.role == Role.AGENT and peer.identity.name not in clusters:
                why = "its cluster was removed"
            else:
                continue
            log.warning("%s from %s: %s; session closed", peer.identity, peer.address, why)
            peer.conn.abort()

    def _rescope(self, peer: _Peer, scope: Scope) -> None:
        """A changed scope applies at once: new streams meet it, and the streams to
        clusters it no longer covers end."""
        if scope == peer.scope:
            return
        peer.scope = scope
        for record in list(peer.streams.values()):
            if not peer.may_reach(record.cluster) and record.splice is not None:
                log.warning(
                    "%s: %s left its scope; its stream %d closed",
                    peer.identity,
                    record.cluster,
                    record.id,
                )
                record.splice.close()

    def disconnect_agent(self, cluster: str) -> bool:
        """Close the session of ``cluster``'s agent (after its cluster was removed, so
        that its reconnection is refused); False if it had none."""
        peer = self._agents.get(cluster)
        if peer is not None:
            peer.conn.abort()
        return peer is not None

    def public_address(self, cluster: str) -> str | None:
        return self.public.address(self.state.clusters().get(cluster))

    def snapshot(self) -> RelaySnapshot:
        clusters: list[dict[str, object]] = [
            {
                "name": c.name,
                "online": c.name in self._agents,
                "public_address": self.public_address(c.name),
                "rtt": (self._agents[c.name].conn.session.rtt if c.name in self._agents else None),
            }
            for c in self.state.clusters().values()
        ]
        peers = [
            PeerInfo(
                p.identity.role.value,
                p.identity.name,
                p.address,
                p.connected_at,
                p.conn.session.rtt,
                p.conn.session.stream_count,
            )
            for p in [*self._agents.values(), *self._clients]
        ]
        return RelaySnapshot(
            self.address if self._listener else "",
            clusters,
            peers,
            len(self._preauth),
            dict(self.refused),
            self.book.snapshot(),
            len(self._waiting),
        )

    # -- accepting: limits, TLS, then the first message --------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def accepted(self, sock: socket.socket, peer: object) -> None:
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        now = time.monotonic()
        if self._throttled(sock, source, now):
            return
        self._raw.add(sock)  # ours to close until a transport takes it (stop() closes them)
        if self._preauth.take(source):
            self._admit(sock, source, peer)
        elif self._waiting.add(source, (sock, peer), now + self.config.preauth_wait):
            self._arm_expiry()  # it waits for a slot of its source (the ClientHello too)
        else:
            self._refuse_preauth(sock, source, now)

    def _throttled(self, sock: socket.socket, source: str, now: float) -> bool:
        """Close ``sock`` if its source is blocked for failed authentications."""
        wait = self.throttle.retry_after(source, now)
        if wait > 0:
            self.refused[Refusal.THROTTLED.value] += 1  # logged when the block began (_failed)
            log.debug("refused %s: throttled for %.1f s more", source, wait)
            self._raw.discard(sock)
            sock.close()
        return wait > 0

    def _refuse_preauth(
        self, sock: socket.socket, source: str, now: float, why: Refusal = Refusal.PREAUTH_LIMIT
    ) -> None:
        self.refused[why.value] += 1
        message = "refused %s: too many unauthenticated connections" + (
            f" (no slot within {self.config.preauth_wait:g} s)"
            if why == Refusal.PREAUTH_WAIT
            else ""
        )
        self.quiet.warning(why, source, now, message, source)
        self._raw.discard(sock)
        sock.close()

    def _admit(self, sock: socket.socket, source: str, peer: object) -> None:
        """Start the handshake of a connection that holds a pre-auth slot."""
        self._spawn(self._handshake(sock, source, peer_address(peer)))  # the ClientHello waits

    def _release(self, source: str) -> None:
        """Give back a pre-auth slot: the connections waiting for one get it in turn."""
        self._preauth.release(source)
        if len(self._waiting):
            self._let_in()

    def _let_in(self) -> None:
        now = time.monotonic()
        admitted, expired = self._waiting.admit(self._preauth, now)
        for source, (sock, _) in expired:
            self._refuse_preauth(sock, source, now, Refusal.PREAUTH_WAIT)
        for source, (sock, peer) in admitted:
            if self._stopped or self._throttled(sock, source, now):  # blocked while it waited
                self._preauth.release(source)
            else:
                self._admit(sock, source, peer)
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        """One timer, at the earliest waiting deadline or before (it re-arms itself)."""
        if self._expiry is not None or self._stopped:
            return
        deadline = self._waiting.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_at(loop.time() + deadline - time.monotonic(), self._expired)

    def _expired(self) -> None:
        self._expiry = None
        self._let_in()

    async def _handshake(self, sock: socket.socket, source: str, address: str) -> None:
        cfg = self.config
        assert self._context is not None
        loop = asyncio.get_running_loop()
        conn = MuxConnection(False, cfg.preauth_mux)
        authenticated = False

        def adopt() -> MuxConnection:
            # Called as the loop makes the transport: from now on the transport owns the
            # socket and closes it, later if need be; closing it here too could close a
            # descriptor number already reused by another connection.
            self._raw.discard(sock)
            return conn

        try:
            try:
                tls_transport, _ = await loop.connect_accepted_socket(
                    adopt,
                    sock,
                    ssl=self._context,
                    ssl_handshake_timeout=cfg.handshake_timeout,
                )
            except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
                self._failed(Refusal.TLS, source)
                message = "TLS handshake with %s failed: %s"
                self.quiet.warning(
                    Refusal.TLS, source, time.monotonic(), message, address, _reason(exc)
                )
                # The traceback holds start_tls's frame, whose waiter holds the exception:
                # a cycle that kept this connection's TLS and mux buffers (~0.5 MiB) alive
                # until the cyclic GC ran, so pre-auth floods grew RSS far past the cap.
                exc.__traceback__ = None
                return
            del adopt  # this frame lives as long as the session: it keeps only what it needs
            self._conns.add(conn)
            identity = await self._unrevoked(tls_transport.get_extra_info("ssl_object"), address)
            try:
                async with asyncio.timeout(cfg.auth_timeout):
                    control = ControlChannel(conn, await conn.accept(), Sender.RELAY)
                    conn.stream_handler = _refuse_stream  # until the role's own
                    first = await control.recv()
            except (TimeoutError, WicketError, OSError) as exc:
                if isinstance(exc, TimeoutError) or conn.session.bytes_received_total:
                    self._failed(Refusal.NO_VALID_HELLO, source)
                    message = "no valid first message from %s: %s"
                    why = _reason(exc)
                    self.quiet.warning(
                        Refusal.NO_VALID_HELLO, source, time.monotonic(), message, address, why
                    )
                else:  # a CA discovery connection closes before saying anything
                    log.debug("%s closed without a message", address)
                conn.abort()
                return
            authenticated = True
            self._release(source)
            session = self._converse(conn, control, identity, first, address=address, source=source)
            del first  # the session's whole life is spent in this await: keep no message
            await session
            # A refusal's ``error`` is only queued: the mux writes once per loop pass,
            # and ``abort()`` below would drop it. Let it leave first (bounded).
            await _flush(conn)
        finally:
            if sock in self._raw:
                self._raw.discard(sock)
                sock.close()
            if not authenticated:
                self._release(source)
            self._conns.discard(conn)
            conn.abort()

    def _failed(self, code: Refusal | ErrorCode, source: str) -> None:
        """Count a refusal; a failed authentication also spends the source's allowance."""
        self.refused[code.value] += 1
        if code in AUTH_FAILURES and self.throttle.failed(source, time.monotonic()):
            log.warning(
                "throttling %s: too many failed authentications; its connections are refused"
                " until it has one failure left (%d at once, then one per %.0f s)",
                source,
                self.throttle.burst,
                1 / self.throttle.rate,
            )

    # -- the control conversation ------------------------------------------------------

    async def _converse(
        self,
        conn: MuxConnection,
        control: ControlChannel,
        identity: Identity | None,
        first: Message,
        *,
        address: str,
        source: str,
    ) -> None:
        kind = first["type"]
        if kind == "enroll":
            await self._enroll(conn, control, first, address, source)
            return
        if kind != "hello" or identity is None:
            refusal = "present a client certificate, or enroll"
            self._refuse(control, ErrorCode.UNAUTHENTICATED, refusal, source)
            log.warning("refused %s: %s without a certificate", address, kind)
            return
        if first["role"] != identity.role.value or first["name"] != identity.name:
            mismatch = "hello does not match the certificate"
            self._refuse(control, ErrorCode.UNAUTHENTICATED, mismatch, source)
            log.warning(
                "refused %s: hello as %s %s with the certificate of %s",
                address,
                first["role"],
                first["name"],
                identity,
            )
            return
        version = first["version"]
        if version not in SUPPORTED_VERSIONS:
            spoken = " and ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
            self._refuse(control, ErrorCode.UNSUPPORTED_VERSION, f"this relay speaks {spoken}")
            log.warning("refused %s: protocol version %s", address, first["version"])
            return
        # Scope read before hello_ok: from hello_ok on to the session's own stream
        # handler (set at once below) the loop must not yield, or the peer's first
        # streams would meet the pre-auth refusal.
        del first
        peer = await self._peer(identity, conn, address)
        conn.reconfigure(self.config.mux)  # before hello_ok: the peer may use them then
        control.send(
            {
                "type": "hello_ok",
                "version": version,
                "role": identity.role.value,
                "name": identity.name,
            }
        )
        if version >= FLEET_VERSION:  # before register: an agent may hold this member
            control.send(self.members_message())  # (a client shows which member it is on)
            if identity.role == Role.AGENT:
                self._fleet_agents.add(control)
        try:
            if identity.role == Role.AGENT:
                await self._agent_session(peer, control)
            else:
                await self._client_session(peer, control)
        finally:
            self._fleet_agents.discard(control)
            self._seen(peer)

    async def _peer(self, identity: Identity, conn: MuxConnection, address: str) -> _Peer:
        """The session of an authenticated identity, its scope read once (and its last
        seen time recorded: once per session, not per stream)."""
        ssl_object = conn.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else b""
        fp = fingerprint(der) if der else ""
        scope: Scope = _NO_CLUSTERS
        if identity.role == Role.CLIENT and not self._stopped:
            scope = await self._off_loop(lambda: self.state.store.scope(fp))
        peer = _Peer(identity, conn, address, fp, scope)
        self._seen(peer)
        return peer

    async def _off_loop(self, call: Callable[[], _T]) -> _T:
        """``call`` (a registry read or write) in a worker thread. A call still queued
        when the relay stopped is refused there, not run: it would reopen the registry
        the stop closed and leave it open."""

        def guarded() -> _T:
            if self._stopped:
                raise RegistryError("the relay stopped")
            return call()

        return await asyncio.to_thread(guarded)

    def _seen(self, peer: _Peer) -> None:
        if not self._stopped:
            self._last_seen.note(peer.fingerprint, utcnow())

    async def _unrevoked(self, ssl_object: ssl.SSLObject, address: str) -> Identity | None:
        """The peer's identity, unless it was revoked (its cluster was removed)."""
        identity = tls.peer_identity(ssl_object)
        der = ssl_object.getpeercert(binary_form=True)
        if (
            identity is not None
            and der
            and await self._off_loop(lambda: self.state.identity_revoked(fingerprint(der)))
        ):
            log.warning("refused %s: the identity of %s was revoked", address, identity)
            return None
        return identity

    def _refuse(
        self, control: ControlChannel, code: ErrorCode, message: str, source: str | None = None
    ) -> None:
        """Send ``error`` and count it (with ``source``: as a failed authentication)."""
        if source is None:
            self.refused[code.value] += 1
        else:
            self._failed(code, source)
        control.send({"type": "error", "code": code.value, "message": message})

    async def _enroll(
        self,
        conn: MuxConnection,
        control: ControlChannel,
        msg: Message,
        address: str,
        source: str,
    ) -> None:
        assert self._ca is not None
        now = utcnow()
        try:
            record, role, cert = await self._off_loop(lambda: self._issue(msg, now))
        except (AuthError, PKIError, RegistryError) as exc:
            self._refuse(control, ErrorCode.INVALID_TOKEN, "invalid token", source)
            log.warning("enrollment from %s refused: %s", address, exc)
            await _flush(conn)
            return
        control.send(
            {
                "type": "enrolled",
                "role": role.value,
                "name": record.name,
                "cert_pem": cert_to_pem(cert).decode(),
                "ca_pem": self._ca.cert_pem.decode(),
            }
        )
        log.info("enrolled %s %s from %s", role.value, record.name, address)
        await _flush(conn)

    def _issue(self, msg: Message, now: dt.datetime) -> tuple[TokenRecord, Role, x509.Certificate]:
        """Use the token, sign the CSR, record the identity (in a worker thread: the
        registry may be a database across the network)."""
        assert self._ca is not None
        record = self.state.tokens().consume(str(msg["token_id"]), str(msg["secret"]), now)
        role = Role.AGENT if record.kind == TokenKind.JOIN else Role.CLIENT
        cert = sign_csr(self._ca, str(msg["csr_pem"]).encode(), role, record.name, now)
        self.state.record_identity(cert, role, record.name, record.token_id, now)
        return record, role, cert

    async def _agent_session(self, peer: _Peer, control: ControlChannel) -> None:
        name = peer.identity.name
        try:
            msg = await control.recv(self.config.auth_timeout)
        except (TimeoutError, WicketError) as exc:
            log.warning("agent %s did not register: %s", name, _reason(exc))
            return
        if msg["type"] != "register" or msg["cluster"] != name:
            self._refuse(control, ErrorCode.FORBIDDEN, "an agent registers its own cluster only")
            wanted = f"register {msg['cluster']}" if msg["type"] == "register" else msg["type"]
            log.warning("refused agent %s from %s: %s", name, peer.address, wanted)
            return
        if name not in self.state.clusters():
            unknown = f"cluster {name} is not known here"
            self._refuse(control, ErrorCode.UNKNOWN_CLUSTER, unknown)
            log.warning("refused agent %s from %s: unknown cluster", name, peer.address)
            return
        old = self._agents.get(name)
        self._agents[name] = peer
        for waiter in self._agent_waiters.pop(name, ()):
            if not waiter.done():
                waiter.set_result(None)
        peer.conn.stream_handler = _refuse_stream  # agents never open data streams
        if old is not None:
            log.info("agent %s reconnected; closing its previous session", name)
            old.conn.abort()
            del old  # or this session's frame kept the previous one whole until it ended
        await self.sync_public_endpoints()
        control.send(
            {"type": "registered", "cluster": name, "public_address": self.public_address(name)}
        )
        _log_info("agent %s online from %s (target %s)", name, peer.address, msg["target"])
        del msg
        try:  # read the control stream until the session ends (in this frame: a coroutine
            while True:  # of its own was 240 bytes more per agent session)
                msg = await control.recv()
                log.debug("control message %s", redacted(msg))
        except (WicketError, OSError):
            return
        finally:
            if self._agents.get(name) is peer:
                del self._agents[name]
                log.info("agent %s offline", name)

    async def _client_session(self, peer: _Peer, control: ControlChannel) -> None:
        self._clients.add(peer)
        peer.conn.stream_handler = lambda stream: self._client_stream(peer, stream)
        _log_info("client %s connected from %s", peer.identity.name, peer.address)
        try:
            while True:
                msg = await control.recv()
                if msg["type"] == "list_clusters":
                    clusters = self.state.clusters()
                    for record in clusters.values():
                        control.send(
                            {
                                "type": "cluster",
                                "name": record.name,
                                "state": "online" if record.name in self._agents else "offline",
                                "public_address": self.public_address(record.name),
                            }
                        )
                    control.send({"type": "clusters_end", "count": len(clusters)})
                else:
                    self._refuse(control, ErrorCode.BAD_REQUEST, f"unexpected {msg['type']}")
                    return
        except (WicketError, OSError):
            pass
        finally:
            self._clients.discard(peer)
            log.info("client %s disconnected", peer.identity.name)

    # -- data streams ------------------------------------------------------------------

    def _client_stream(self, peer: _Peer, stream: MuxStream) -> None:
        def route(stream: MuxStream, claimed: StreamRequest, rest: bytes) -> None:
            # The stats and logs (here and at the agent) name who really asked, and from
            # where; the client's own word on its address only follows it.
            request = StreamRequest(claimed.cluster, claimed.endpoint, peer.label(claimed.client))
            if not self._admitted(peer, stream, request):
                return
            if request.cluster in self._agents or self.membership is None:
                self._routed(peer, stream, request, rest)
            else:  # a fleet member the agent has not reached (yet): a moment's grace
                self._spawn(self._route_when_agent(peer, stream, request, rest))

        PreambleReader(stream, route)

    async def _route_when_agent(
        self, peer: _Peer, stream: MuxStream, request: StreamRequest, rest: bytes
    ) -> None:
        """Hold a stream up to ``agent_wait`` seconds for the agent's session here: it
        holds one to every member, and reaches a member that just (re)started within
        about a second; a stream refused meanwhile would fail kubectl's request."""
        cluster = request.cluster
        if cluster not in self._agents:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._agent_waiters.setdefault(cluster, set())
            waiters.add(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.agent_wait):
                        await waiter
            finally:
                waiters.discard(waiter)
                if not waiters and self._agent_waiters.get(cluster) is waiters:
                    del self._agent_waiters[cluster]
        self._routed(peer, stream, request, rest)

    def _routed(self, peer: _Peer, stream: MuxStream, request: StreamRequest, rest: bytes) -> None:
        release = functools.partial(self.client_streams.release, peer.identity.name)
        ids: list[int] = []

        def closed() -> None:
            release()
            for i in ids:
                peer.streams.pop(i, None)

        record = self._route(stream, request, rest, closed)
        if record is None:
            release()
        elif record.closed_at is None:
            ids.append(record.id)
            peer.streams[record.id] = record

    def _admitted(self, peer: _Peer, stream: MuxStream, request: StreamRequest) -> bool:
        """A client's stream to a known cluster within its scope and its quota (one taken
        from it). Refusals are counted each and logged once per client per interval."""
        if request.cluster not in self.state.clusters():
            self.refused[Status.UNKNOWN_CLUSTER.name.lower()] += 1
            self._quietly("unknown_cluster", peer, "refused stream from %s: unknown cluster %s",
                          request.client, request.cluster)  # fmt: skip
            reply(stream, Status.UNKNOWN_CLUSTER, f"no cluster {request.cluster} on this relay")
            return False
        if not peer.may_reach(request.cluster):
            self.refused[ErrorCode.FORBIDDEN.value] += 1
            self._quietly("forbidden", peer, "refused stream from %s: %s is not in its scope",
                          request.client, request.cluster)  # fmt: skip
            reply(stream, Status.FORBIDDEN, f"{request.cluster} is not in this client's scope")
            return False
        if not self.client_streams.take(peer.identity.name):
            self.refused[Refusal.CLIENT_STREAM_QUOTA.value] += 1
            limit = self.config.max_streams_per_client
            self._quietly("client_stream_quota", peer, "refused stream from %s: already %d open",
                          request.client, limit)  # fmt: skip
            reply(stream, Status.BUSY, f"this client already has {limit} streams open")
            return False
        return True

    def _quietly(self, what: str, peer: _Peer, message: str, *args: object) -> None:
        self.quiet.warning(what, peer.identity.name, time.monotonic(), message, *args)

    def _route(
        self, stream: MuxStream, request: StreamRequest, rest: bytes, on_close: Callable[[], None]
    ) -> StreamRecord | None:
        """Open the stream's twin on the cluster's agent session (this member's own:
        in a fleet the agent holds one to every member) and splice the two; None if it
        was refused at once (the client then retries, perhaps on another member), and
        ``on_close`` is then never called."""
        agent = self._agents.get(request.cluster)
        if agent is None or agent.conn.closed:
            reply(stream, Status.AGENT_OFFLINE, f"the agent of {request.cluster} is offline")
            return None
        try:
            upstream = agent.conn.open_stream(request.encode() + rest)
        except MuxError as exc:
            reply(stream, Status.BUSY, str(exc))
            return None
        record = self.book.add(StreamRecord.of(request))
        record.on_close = on_close
        spliced(self.book, record, stream, upstream)
        stream.resume_reading()
        return record


def _log_info(message: str, *args: object) -> None:
    """``log.info`` for a session's coroutine, which lives as long as the session: logging
    looks for its caller through ``f_back``, and the frame object that makes for the
    caller stays with it (264 bytes a session); this frame ends at once."""
    log.info(message, *args)


def _refuse_stream(stream: MuxStream) -> None:
    stream.abort()


async def _flush(conn: MuxConnection) -> None:
    """Give the last control message a moment to leave before the session closes."""
    await conn.close(drain_timeout=1.0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
