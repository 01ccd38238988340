"""Authentication attacks on the relay, each refused promptly while ``prod`` keeps working.

Every test names what it prevents; each asserts the refusal outcome seen by the
attacker, a log line naming the attacker's address, the relay's ``refused`` counter,
and the time the refusal took. ``world.check()`` afterwards proves the legitimate agent
still serves checksummed echoes and never went offline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from core.aio.agent import Agent
from core.aio.channel import ControlChannel
from core.aio.dial import Enrollment, connect_mux, enroll, hello
from core.aio.relay import Relay, RelayConfig
from core.errors import AuthError, PKIError
from core.format import utcnow
from core.pki import tls
from core.pki.ca import CertificateAuthority, create_ca
from core.pki.certs import make_csr, sign_csr, write_identity_files
from core.pki.identity import Identity, Role
from core.pki.keys import generate_key
from core.pki.tokens import TokenKind
from core.protocol.control import PROTOCOL_VERSION, Sender
from core.protocol.preamble import EndpointKind, Status, StatusDecoder, StreamRequest

from .conftest import (
    CLUSTER,
    PROMPT,
    QUIET_MUX,
    World,
    relay_lines,
    replace_token,
    wait_closed_by_peer,
    wait_for,
)


def _identity_files(
    directory: Path, ca: CertificateAuthority, identity: Identity, now: dt.datetime
) -> tuple[Path, Path]:
    """A key and a certificate for ``identity`` issued by ``ca`` as of ``now``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_key()
    cert = sign_csr(ca, make_csr(key, identity), identity.role, identity.name, now)
    return write_identity_files(directory, identity.role.value, key, cert, ca.cert_pem)


async def _tls_attempt(
    world: World, context: ssl.SSLContext, server_hostname: str
) -> tuple[str, bytes | BaseException]:
    """Connect with ``context``, say nothing; (our address, what we got before the end)."""
    host, port = world.host_port
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_hostname, ssl_handshake_timeout=5
        )
    except (ssl.SSLError, OSError) as exc:
        return "", exc
    local = "{}:{}".format(*writer.get_extra_info("sockname")[:2])
    try:
        return local, await wait_closed_by_peer(reader, PROMPT)
    finally:
        writer.transport.abort()


@pytest.mark.parametrize(
    ("what", "foreign_ca", "age"),
    [
        pytest.param("foreign-CA", True, dt.timedelta(0), id="foreign-ca"),
        # 90-day leaf: expired 110 days ago
        pytest.param("expired", False, dt.timedelta(days=200), id="expired"),
    ],
)
async def test_client_certificate_refused(
    world: World,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    what: str,
    foreign_ca: bool,
    age: dt.timedelta,
) -> None:
    relay = world.relay
    ca = (
        create_ca(utcnow(), common_name="Wicket relay CA")  # same name, other key
        if foreign_ca
        else relay.state.ca()
    )
    cert, key = _identity_files(tmp_path / what, ca, Identity(Role.AGENT, CLUSTER), utcnow() - age)
    before = relay.refused["tls"]
    start = time.monotonic()
    context = tls.client_context(relay.state.ca().cert, cert_file=cert, key_file=key)
    local, outcome = await _tls_attempt(world, context, "127.0.0.1")
    await wait_for(lambda: relay.refused["tls"] > before, PROMPT)
    took = time.monotonic() - start
    # TLS 1.3: the client finishes its side first, then gets the relay's alert and the
    # end of the connection, with no byte of application data.
    assert local and outcome == b"", outcome
    [line] = relay_lines(caplog, f"TLS handshake with {local} failed")
    assert relay.refused["tls"] == before + 1
    peers = {(p.role, p.name) for p in relay.snapshot().peers}
    assert peers == {("agent", CLUSTER), ("client", "alice")}, peers
    assert took < PROMPT
    print(f"\n{what} client cert refused in {took * 1000:.0f} ms: {line}")
    await world.check()


async def test_relay_with_another_ca_than_the_pin_gets_no_secret(
    world: World, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """An impostor relay (its own CA) at the token's address: discovery pin mismatch.

    The agent refuses before enrolling, so the impostor never receives a byte and the
    real relay's token stays usable.
    """
    impostor = Relay(RelayConfig(state_dir=tmp_path / "impostor", handshake_timeout=1.0))
    await impostor.start()
    try:
        token = world.token(TokenKind.JOIN, "staging")
        agent = Agent(
            tmp_path / "victim", "127.0.0.1", 9, token=replace_token(token, relay=impostor.address)
        )
        mark = len(caplog.records)
        start = time.monotonic()
        await agent.start()
        assert agent.task is not None
        with pytest.raises(PKIError, match="pinned fingerprint"):
            await asyncio.wait_for(agent.task, PROMPT)
        took = time.monotonic() - start
        assert agent.state == "failed"
        await agent.stop()
        # The impostor saw one connection that closed before sending anything.
        await wait_for(lambda: relay_lines(caplog, "closed without a message", since=mark), PROMPT)
    finally:
        await impostor.stop()
    assert relay_lines(caplog, "pinned fingerprint", name="wicket.peer", since=mark)
    assert not impostor.refused
    impostor.state.open()  # the stop closed its registry: open it to look
    assert not impostor.state.tokens().records()
    impostor.state.close()
    assert not list((tmp_path / "victim").rglob("agent.pem"))
    # The secret never left: the real relay still accepts the token.
    creds = await enroll(token, tmp_path / "staging", Role.AGENT, QUIET_MUX)
    assert creds.identity == Identity(Role.AGENT, "staging")
    print(f"\npin mismatch refused by the peer in {took * 1000:.0f} ms")
    await world.check()


async def test_verified_connection_with_the_wrong_server_name_refused(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    relay = world.relay
    before = relay.refused["tls"]
    start = time.monotonic()
    _, outcome = await _tls_attempt(
        world, tls.client_context(relay.state.ca().cert), "evil.example"
    )
    assert isinstance(outcome, ssl.SSLCertVerificationError), outcome
    assert "match" in str(outcome)  # "Hostname mismatch, certificate is not valid for ..."
    await wait_for(lambda: relay.refused["tls"] > before, PROMPT)
    took = time.monotonic() - start
    [line] = relay_lines(caplog, "TLS handshake with", "failed")
    print(f"\nwrong server name refused in {took * 1000:.0f} ms: {line}")
    await world.check()


@pytest.mark.parametrize(
    ("what", "changes"),
    [
        pytest.param("reused join token", {}, id="reused-join-token"),
        pytest.param("wrong secret", {"secret": os.urandom(32)}, id="wrong-secret-valid-id"),
    ],
)
async def test_join_token_refused(
    world: World, caplog: pytest.LogCaptureFixture, what: str, changes: dict[str, object]
) -> None:
    relay = world.relay
    before = relay.refused["invalid_token"]
    token = (
        world.agent_token
        if not changes
        else replace_token(world.token(TokenKind.JOIN, "staging"), **changes)
    )
    start = time.monotonic()
    with pytest.raises(AuthError, match="invalid_token"):
        await asyncio.wait_for(enroll(token, world.root / "thief", Role.AGENT, QUIET_MUX), PROMPT)
    took = time.monotonic() - start
    assert relay.refused["invalid_token"] == before + 1
    lines = relay_lines(caplog, "enrollment from", "refused: invalid token")
    assert lines
    assert not list((world.root / "thief").rglob("agent.pem"))
    assert took < PROMPT
    if changes:
        # A wrong guess does not burn the token: the real one still enrolls (once).
        [record] = [r for r in relay.state.tokens().records() if r.name == "staging"]
        assert record.used_at is None
    print(f"\n{what} refused in {took * 1000:.0f} ms")
    await world.check()


async def _hello_as(
    creds: Enrollment | None, world: World, role: Role, name: str, version: int = PROTOCOL_VERSION
) -> tuple[dict[str, object], float, float]:
    """A session with ``creds`` (none: no certificate) that says ``hello`` as role/name.

    Returns the reply, the seconds until it came, and until the relay ended the session
    (this peer does not close it itself).
    """
    ca = world.relay.state.ca().cert
    context = creds.context() if creds is not None else tls.client_context(ca)
    conn = await connect_mux(world.address, context, QUIET_MUX)
    try:
        start = time.monotonic()
        channel = ControlChannel(conn, conn.open_stream(), Sender.PEER)
        channel.send({"type": "hello", "version": version, "role": role.value, "name": name})
        reply = dict(await channel.recv(PROMPT))
        took = time.monotonic() - start
        async with asyncio.timeout(PROMPT):
            await conn.wait_closed()
        return reply, took, time.monotonic() - start
    finally:
        conn.abort()


class _Hello(NamedTuple):
    """A hello the relay refuses: the certificate held, what it says, and the refusal."""

    id: str
    holder: Role | None
    role: Role
    name: str
    logged: str
    version: int = PROTOCOL_VERSION
    code: str = "unauthenticated"


HELLO_REFUSALS = [
    _Hello("agent-cert-as-client", Role.AGENT, Role.CLIENT, "edge", "hello as client edge"),
    _Hello("client-cert-as-agent", Role.CLIENT, Role.AGENT, "bob", "hello as agent bob"),
    _Hello(
        "agent-cert-other-cluster", Role.AGENT, Role.AGENT, CLUSTER, f"hello as agent {CLUSTER}"
    ),
    _Hello("client-cert-other-name", Role.CLIENT, Role.CLIENT, "alice", "hello as client alice"),
    _Hello("no-cert", None, Role.AGENT, CLUSTER, "hello without a certificate"),
    _Hello(
        "unknown-protocol-version",
        Role.AGENT,
        Role.AGENT,
        "edge",
        "protocol version 99",
        version=99,
        code="unsupported_version",
    ),
]


@pytest.mark.parametrize("case", HELLO_REFUSALS, ids=[c.id for c in HELLO_REFUSALS])
async def test_hello_refused(world: World, caplog: pytest.LogCaptureFixture, case: _Hello) -> None:
    creds = None
    if case.holder is not None:
        creds = await world.enroll(case.holder, "edge" if case.holder == Role.AGENT else "bob")
    relay = world.relay
    before = relay.refused[case.code]
    reply, took, ended = await _hello_as(creds, world, case.role, case.name, case.version)
    assert reply["type"] == "error" and reply["code"] == case.code, reply
    assert relay.refused[case.code] == before + 1
    assert relay_lines(caplog, "refused", case.logged), [
        r.getMessage() for r in caplog.records if r.name == "wicket.relay"
    ]
    assert took < PROMPT and ended < PROMPT
    print(
        f"\n{case.id} refused in {took * 1000:.0f} ms, "
        f"session ended by the relay after {ended * 1000:.0f} ms"
    )
    await world.check()


async def test_stream_to_an_unknown_cluster_refused(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    relay = world.relay
    conn = world.client.conn
    assert conn is not None
    before = relay.refused["unknown_cluster"]
    start = time.monotonic()
    request = StreamRequest("nowhere", EndpointKind.LOCAL, "")
    reader, writer = conn.stream_pair(conn.open_stream(request.encode()))
    decoder = StatusDecoder()
    try:
        result = None
        async with asyncio.timeout(PROMPT):
            while result is None:
                data = await reader.read(1024)
                assert data, "stream ended without a status"
                result = decoder.receive_data(data)
            assert await reader.read() == b""  # and the relay closes the stream
    finally:
        writer.transport.abort()
    took = time.monotonic() - start
    status, _ = result
    assert status.status == Status.UNKNOWN_CLUSTER
    assert relay.refused["unknown_cluster"] == before + 1
    assert relay_lines(caplog, "refused", "stream", "nowhere")
    assert took < PROMPT
    print(f"\nunknown cluster stream refused in {took * 1000:.0f} ms")
    await world.check()


async def test_agent_registering_another_cluster_forbidden(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    creds = await world.enroll(Role.AGENT, "edge")
    relay = world.relay
    before = relay.refused["forbidden"]
    conn = await connect_mux(creds.relay, creds.context(), QUIET_MUX)
    try:
        start = time.monotonic()
        channel = await hello(conn, creds.identity)
        channel.send({"type": "register", "cluster": CLUSTER, "target": "10.0.0.1:443"})
        reply = dict(await channel.recv(PROMPT))
        took = time.monotonic() - start
        async with asyncio.timeout(PROMPT):
            await conn.wait_closed()  # the relay ends the session
        ended = time.monotonic() - start
    finally:
        conn.abort()
    assert reply["type"] == "error" and reply["code"] == "forbidden", reply
    assert relay.refused["forbidden"] == before + 1
    assert relay_lines(caplog, "refused agent edge", f"register {CLUSTER}")
    assert took < PROMPT and ended < PROMPT
    print(
        f"\nregister of another cluster refused in {took * 1000:.0f} ms, "
        f"session ended after {ended * 1000:.0f} ms"
    )
    await world.check()
