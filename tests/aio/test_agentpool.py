"""The agent's session pool (core.aio.agentpool) at its edges.

The pool is real, and so is everything it uses to reach a relay: TLS on loopback, the
mux, the control channel and its schema checks. What is FAKE is the far end: each
``FakeMember`` is a scripted relay (a TLS listener that speaks the control protocol's
agent side: ``hello_ok``, ``members``, ``registered``) that says which member it is and
which members the fleet lists, as the test decides. A ``FakeMember`` with ``lands``
stands for the fleet's shared address behind a load balancer: each connection reaches
the member the test names next. So the tests pick the cases a real fleet makes only by
chance: landing twice on the same member, a member gone from the list, an address
reused by a new member id, a relay that speaks version 1 only. The last two tests put a
desktop client's session (``RelayClient``) against the same fakes: it knows its member,
and falls back to version 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.aio.agentpool import SessionPool
from core.aio.channel import ControlChannel
from core.aio.dial import Enrollment, identity_dir, use_relay
from core.aio.endpoint import RelayClient
from core.aio.mux import MuxConnection
from core.errors import WicketError
from core.format import utcnow
from core.pki import tls
from core.pki.ca import create_ca
from core.pki.certs import issue_client_cert, load_or_create_server_cert, write_identity_files
from core.pki.identity import Identity, Role
from core.pki.keys import generate_key
from core.protocol.control import FLEET_VERSION, PROTOCOL_VERSION, Sender
from core.protocol.mux import MuxConfig

pytestmark = pytest.mark.timeout(60)

CLUSTER = "prod"
A, B, D = "a" * 16, "b" * 16, "d" * 16


@dataclass
class Landing:
    """One session the fake saw: the member it answered as, and what the agent did."""

    member: str | None
    version: int
    registered: bool = False
    conn: MuxConnection | None = field(default=None, repr=False)
    control: ControlChannel | None = field(default=None, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class FakeMember:
    """A FAKE relay on loopback (real TLS, mux and control messages), scripted."""

    def __init__(self, fleet: FakeFleet, member: str | None = None) -> None:
        self.fleet = fleet
        self.member = member
        #: For the shared address: the member each next connection lands on.
        self.lands: list[str] = []
        self.speaks_v2 = True
        self.landings: list[Landing] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        #: What the fleet's list says its address is (default: where it listens).
        self.advertise: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self._accept, "127.0.0.1", port, ssl=self.fleet.context, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every session on it (a relay that went away)."""
        if self.server is not None:
            self.server.close()
        for landing in self.landings:
            if landing.conn is not None:
                landing.conn.abort()
        if self.server is not None:
            await self.server.wait_closed()
        self.server = None

    def _accept(self) -> MuxConnection:
        conn = MuxConnection(False, self.fleet.mux)
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self.fleet.tasks.add(task)
        task.add_done_callback(self.fleet.tasks.discard)
        return conn

    async def _serve(self, conn: MuxConnection) -> None:
        landing = Landing(self.lands.pop(0) if self.lands else self.member, 0, conn=conn)
        self.landings.append(landing)
        try:
            control = ControlChannel(conn, await conn.accept(), Sender.RELAY)
            hello = await control.recv(5)
            landing.version = hello["version"]
            if landing.version == FLEET_VERSION and not self.speaks_v2:
                control.send(
                    {"type": "error", "code": "unsupported_version", "message": "version 2"}
                )
                return
            control.send({"type": "hello_ok", "version": landing.version,
                          "role": hello["role"], "name": hello["name"]})  # fmt: skip
            if landing.version == FLEET_VERSION:
                control.send(self.fleet.members_message(landing.member))
            if hello["role"] == "client":  # a desktop client: no register, the session is up
                landing.registered, landing.control = True, control
                await conn.wait_closed()
                return
            register = await control.recv(5)
            assert register["type"] == "register"
            control.send({"type": "registered", "cluster": CLUSTER, "public_address": None})
            landing.registered, landing.control = True, control
            await conn.wait_closed()
        except (WicketError, OSError, TimeoutError):
            pass  # the agent closed it (without register: misrouted)
        finally:
            conn.abort()
            landing.ended.set()


class FakeFleet:
    """The fake members, their list, and the shared address (a ``FakeMember`` too)."""

    def __init__(self, directory: Path) -> None:
        """The fleet's CA, the members' server certificate and the agent's identity,
        made as the relay and enrollment make them (core.pki)."""
        now = utcnow()
        self.ca = create_ca(now)
        chain, key = load_or_create_server_cert(directory, self.ca, ["127.0.0.1"], now)
        self.context = tls.server_context(chain, key, self.ca.cert)
        agent_key = generate_key()
        identity = Identity(Role.AGENT, CLUSTER)
        cert = issue_client_cert(self.ca, agent_key.public_key(), identity, now)
        self.agent_files = write_identity_files(directory, "agent", agent_key, cert, b"")
        self.mux = MuxConfig(keepalive_interval=None)
        self.tasks: set[asyncio.Task[None]] = set()
        self.shared = FakeMember(self)
        self.members: dict[str, FakeMember] = {}

    def members_message(self, here: str | None) -> dict[str, object]:
        listed = [{"id": m, "address": f.advertise or f.address} for m, f in self.members.items()]
        return {"type": "members", "self": here, "members": listed if here else []}

    async def add(self, member: str, port: int = 0) -> FakeMember:
        fake = FakeMember(self, member)
        await fake.start(port)
        self.members[member] = fake
        return fake

    def announce(self) -> None:
        """Every registered session hears the current list (a member joined or left)."""
        for fake in [self.shared, *self.members.values()]:
            for landing in fake.landings:
                if landing.control is not None and not landing.ended.is_set():
                    landing.control.send(self.members_message(landing.member))

    async def close(self) -> None:
        for fake in [self.shared, *self.members.values()]:
            await fake.stop()
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FakeFleet]:
    directory = tmp_path / "fleet"
    directory.mkdir(mode=0o700)
    fake = FakeFleet(directory)
    await fake.shared.start()
    try:
        yield fake
    finally:
        await fake.close()


@contextlib.asynccontextmanager
async def running_pool(fleet: FakeFleet) -> AsyncIterator[SessionPool]:
    creds = Enrollment(
        Identity(Role.AGENT, CLUSTER), fleet.shared.address, fleet.ca.cert, *fleet.agent_files
    )
    pool = SessionPool(creds, "127.0.0.1:6443", mux=fleet.mux, stream_handler=None,
                       changed=lambda: None, backoff_base=0.05, backoff_cap=0.2)  # fmt: skip
    task = asyncio.get_running_loop().create_task(pool.run())
    try:
        yield pool
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


def online(pool: SessionPool) -> dict[str | None, str]:
    """The pool's online sessions: member -> the address it went through."""
    return {s.member: s.via for s in pool.sessions() if s.online}


def registered(fake: FakeMember) -> list[Landing]:
    return [x for x in fake.landings if x.registered and not x.ended.is_set()]


def closed_port() -> int:
    """A loopback port nothing listens on (a member's advertised address unreachable)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the cases -----------------------------------------------------------------------


async def test_landing_on_a_held_member_closes_without_register_and_keeps_the_live_one(
    fleet: FakeFleet,
) -> None:
    """B's advertised address is unreachable, so its session dials the shared address,
    which leads twice to A (held already): both close before ``register``, A's live
    session is untouched, and the third landing is B's."""
    await fleet.add(A)
    b = await fleet.add(B)
    b.advertise = f"127.0.0.1:{closed_port()}"
    fleet.shared.lands = [A, A, A, B]
    async with running_pool(fleet) as pool:
        await until(lambda: set(online(pool)) == {A, B}, "sessions to A and B")
        assert online(pool) == {A: fleet.shared.address, B: fleet.shared.address}
        landings = fleet.shared.landings
        assert [(x.member, x.registered) for x in landings] == [
            (A, True), (A, False), (A, False), (B, True),
        ]  # fmt: skip
        assert [x.version for x in landings] == [FLEET_VERSION] * 4
        held = landings[0]
        assert not held.ended.is_set(), "the held session to A was closed"
        await asyncio.gather(*(x.ended.wait() for x in landings[1:3]))
        assert [s.member for s in pool.sessions()] == [A, B]  # no seed, no third slot
        (b_session,) = [s for s in pool.sessions() if s.member == B]
        assert b_session.direct_failed and b_session.reconnects == 2
        assert b.landings == []


async def test_a_member_that_leaves_the_list_loses_its_session(
    fleet: FakeFleet,
) -> None:
    """Dropped from the list while online, B's session stays (the member may only have
    missed heartbeats); once it ends, it is not dialed again and its slot is gone."""
    await fleet.add(A)
    b = await fleet.add(B)
    fleet.shared.lands = [A]
    async with running_pool(fleet) as pool:
        await until(lambda: online(pool) == {A: fleet.shared.address, B: b.address}, "A, B")
        del fleet.members[B]
        fleet.announce()
        await until(lambda: set(pool.members) == {A}, "the list without B")
        assert set(online(pool)) == {A, B}, "B's live session was closed by the list alone"
        (b_session,) = [s for s in pool.sessions() if s.member == B]
        await b.stop()  # B goes away: its session ends
        await until(lambda: b_session.state == "stopped", "B's session stopped")
        assert set(pool.slots) == {A}
        assert b_session.task is not None
        await until(b_session.task.done, "B's session task ended")
        await asyncio.sleep(0.5)  # longer than the backoff cap: no redial
        assert len(fleet.shared.landings) == 1 and len(b.landings) == 1
        assert online(pool) == {A: fleet.shared.address}


async def test_an_address_reused_by_a_new_member_id_becomes_that_members_session(
    fleet: FakeFleet,
) -> None:
    """Member B restarts on the same address as member D (a new id): B's session, dialing
    that address again, lands on D and becomes D's; no session is left for B, and D
    gets one session only."""
    await fleet.add(A)
    b = await fleet.add(B)
    fleet.shared.lands = [A]
    async with running_pool(fleet) as pool:
        await until(lambda: set(online(pool)) == {A, B}, "A, B")
        (b_session,) = [s for s in pool.sessions() if s.member == B]
        port = b.port
        del fleet.members[B]
        await b.stop()
        d = await fleet.add(D, port)  # listed as D, no announcement to A's session
        await until(lambda: online(pool) == {A: fleet.shared.address, D: d.address}, "A, D")
        assert [s.member for s in pool.sessions()] == [A, D]
        assert pool.slots[D] is b_session, "the slot of B became D's"
        assert [(x.member, x.registered) for x in d.landings] == [(D, True)]
        assert set(pool.members) == {A, D}


async def test_a_relay_that_speaks_version_1_only_gets_one_session_with_version_1(
    fleet: FakeFleet,
) -> None:
    fleet.shared.speaks_v2 = False
    async with running_pool(fleet) as pool:
        await until(lambda: bool(online(pool)), "a session")
        assert online(pool) == {None: fleet.shared.address}
        assert pool.version == PROTOCOL_VERSION == 1
        landings = fleet.shared.landings
        assert [(x.version, x.registered) for x in landings] == [(2, False), (1, True)]
        (session,) = pool.sessions()
        assert session.reconnects == 1 and session.last_error is None
        assert pool.members == {} and pool.slots == {}


# -- a desktop client's session (core.aio.peer): which member, and version 1 ---------


@contextlib.asynccontextmanager
async def running_client(fleet: FakeFleet, tmp_path: Path) -> AsyncIterator[RelayClient]:
    """A ``RelayClient`` enrolled (files as enrollment leaves them) at the fake fleet."""
    state = tmp_path / "client"
    state.mkdir(mode=0o700)
    key = generate_key()
    identity = Identity(Role.CLIENT, "laptop")
    cert = issue_client_cert(fleet.ca, key.public_key(), identity, utcnow())
    use_relay(state, Role.CLIENT, fleet.ca.fingerprint, fleet.shared.address)
    directory = identity_dir(state, fleet.ca.fingerprint)
    write_identity_files(directory, "client", key, cert, fleet.ca.cert_pem)
    client = RelayClient(state, None, backoff_base=0.05, backoff_cap=0.2)
    await client.start()
    try:
        await client.wait_online(10)
        yield client
    finally:
        await client.stop()


async def test_a_client_knows_the_member_its_session_is_on(
    fleet: FakeFleet, tmp_path: Path
) -> None:
    await fleet.add(A)
    fleet.shared.lands = [A]
    async with running_client(fleet, tmp_path) as client:
        assert (client.member, client.version) == (A, FLEET_VERSION)
        snap = client.snapshot()
        assert (snap.member, snap.relay, snap.state) == (A, fleet.shared.address, "online")
        (landing,) = fleet.shared.landings
        assert landing.version == FLEET_VERSION and landing.conn is not None
        landing.conn.abort()  # the member goes away: no member while reconnecting
        await until(lambda: client.state != "online", "the session ended")
        assert client.snapshot().member is None


async def test_a_client_says_version_1_to_a_relay_that_speaks_only_1(
    fleet: FakeFleet, tmp_path: Path
) -> None:
    fleet.shared.speaks_v2 = False
    async with running_client(fleet, tmp_path) as client:
        assert (client.member, client.version, client.refused) == (None, PROTOCOL_VERSION, False)
        landings = fleet.shared.landings
        assert [(x.version, x.registered) for x in landings] == [(2, False), (1, True)]
        assert client.reconnects == 1 and client.last_error is None  # online since
        assert (
            "dialing again with version 1" in (client.last_error or "") or client.last_error is None
        )
