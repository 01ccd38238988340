"""Real TLS 1.3 handshakes over loopback: what is accepted and everything that is refused."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import PKIError
from core.pki import tls
from core.pki.ca import CertificateAuthority, create_ca
from core.pki.certs import load_or_create_server_cert, make_csr, sign_csr, write_identity_files
from core.pki.identity import Identity, Role
from core.pki.keys import fingerprint, generate_key

from .conftest import NOW

HOST = "relay.test"
REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


@dataclass
class Relay:
    port: int
    seen: list[Identity | None]


def _enroll(
    state: Path, ca: CertificateAuthority, identity: Identity, now: dt.datetime
) -> tuple[Path, Path]:
    key = generate_key()
    cert = sign_csr(ca, make_csr(key, identity), identity.role, identity.name, now)
    return write_identity_files(state, f"{identity.role}-{identity.name}", key, cert, ca.cert_pem)


async def _serve(ctx: ssl.SSLContext) -> tuple[asyncio.Server, Relay]:
    relay = Relay(0, [])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        identity = tls.peer_identity(writer.get_extra_info("ssl_object"))
        relay.seen.append(identity)
        try:
            await reader.readexactly(2)
            writer.write(str(identity).encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, ssl_handshake_timeout=5)
    relay.port = server.sockets[0].getsockname()[1]
    return server, relay


async def _exchange(port: int, ctx: ssl.SSLContext, server_hostname: str = HOST) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname, ssl_handshake_timeout=5
    )
    try:
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() is None
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.write(b"hi")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        if not data:
            raise ConnectionResetError("closed without an answer")
        return data
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@pytest.fixture
async def quiet_loop() -> None:
    """Server-side handshake failures are expected: keep them out of the log."""
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)


@pytest.fixture
def server_files(state_dir: Path, ca: CertificateAuthority) -> tuple[Path, Path]:
    return load_or_create_server_cert(state_dir, ca, [HOST, "127.0.0.1"], dt.datetime.now(dt.UTC))


@pytest.fixture
async def relay(
    ca: CertificateAuthority, server_files: tuple[Path, Path], quiet_loop: None
) -> AsyncIterator[Relay]:
    server, info = await _serve(tls.server_context(*server_files, ca.cert))
    async with server:
        yield info


async def test_mtls_agent_identity_reaches_the_relay(
    relay: Relay, state_dir: Path, ca: CertificateAuthority
) -> None:
    cert, key = _enroll(state_dir, ca, Identity(Role.AGENT, "prod-eu"), dt.datetime.now(dt.UTC))
    answer = await _exchange(relay.port, tls.client_context(ca.cert, cert_file=cert, key_file=key))
    assert answer == b"agent/prod-eu"
    assert relay.seen == [Identity(Role.AGENT, "prod-eu")]


async def _has_ticket(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the server sent a session ticket (it comes before the answer)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=HOST, ssl_handshake_timeout=5
    )
    try:
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.read(), 5)
        session = writer.get_extra_info("ssl_object").session
        return session is not None and session.has_ticket
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_the_relay_issues_no_session_tickets(
    state_dir: Path, ca: CertificateAuthority, server_files: tuple[Path, Path], quiet_loop: None
) -> None:
    """Peers never resume; two tickets per handshake were ~40% of its CPU."""
    cert, key = _enroll(state_dir, ca, Identity(Role.AGENT, "prod-eu"), dt.datetime.now(dt.UTC))
    client = tls.client_context(ca.cert, cert_file=cert, key_file=key)
    relay_ctx = tls.server_context(*server_files, ca.cert)
    assert relay_ctx.num_tickets == 0
    default = tls.server_context(*server_files, ca.cert)
    default.num_tickets = 2  # OpenSSL's default: the check sees tickets when there are some
    for ctx, expected in ((default, True), (relay_ctx, False)):
        server, info = await _serve(ctx)
        async with server:
            assert await _has_ticket(info.port, client) is expected


async def test_ip_address_server_name(relay: Relay, ca: CertificateAuthority) -> None:
    assert await _exchange(relay.port, tls.client_context(ca.cert), "127.0.0.1") == b"None"


async def test_unenrolled_peer_connects_without_identity(
    relay: Relay, ca: CertificateAuthority
) -> None:
    assert await _exchange(relay.port, tls.client_context(ca.cert)) == b"None"
    assert relay.seen == [None]


async def test_no_client_cert_refused_where_required(
    ca: CertificateAuthority, server_files: tuple[Path, Path], quiet_loop: None
) -> None:
    server, info = await _serve(
        tls.server_context(*server_files, ca.cert, require_client_cert=True)
    )
    async with server:
        with pytest.raises(REFUSED):
            await _exchange(info.port, tls.client_context(ca.cert))
    assert info.seen == []


async def test_wrong_ca_refused_by_client(relay: Relay) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await _exchange(relay.port, tls.client_context(create_ca(NOW).cert))


async def test_wrong_server_name_refused(relay: Relay, ca: CertificateAuthority) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await _exchange(relay.port, tls.client_context(ca.cert), "evil.test")


async def test_expired_client_cert_refused(
    relay: Relay, state_dir: Path, ca: CertificateAuthority
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    cert, key = _enroll(state_dir, ca, Identity(Role.AGENT, "old"), long_ago)
    with pytest.raises(REFUSED):
        await _exchange(relay.port, tls.client_context(ca.cert, cert_file=cert, key_file=key))
    assert relay.seen == []


async def test_foreign_client_cert_refused(
    relay: Relay, state_dir: Path, ca: CertificateAuthority
) -> None:
    foreign = create_ca(dt.datetime.now(dt.UTC))
    cert, key = _enroll(state_dir, foreign, Identity(Role.AGENT, "prod"), dt.datetime.now(dt.UTC))
    with pytest.raises(REFUSED):
        await _exchange(relay.port, tls.client_context(ca.cert, cert_file=cert, key_file=key))
    assert relay.seen == []


async def test_server_cert_is_not_a_client_cert(
    relay: Relay, ca: CertificateAuthority, server_files: tuple[Path, Path]
) -> None:
    chain, key = server_files
    with pytest.raises(REFUSED):
        await _exchange(relay.port, tls.client_context(ca.cert, cert_file=chain, key_file=key))
    assert relay.seen == []


async def test_tls12_refused(relay: Relay, ca: CertificateAuthority) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(REFUSED):
        await _exchange(relay.port, ctx)


async def test_discovery_finds_the_pinned_ca_only(relay: Relay, ca: CertificateAuthority) -> None:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", relay.port, ssl=tls.discovery_context(), server_hostname=HOST
    )
    try:
        chain = tls.unverified_chain(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    assert len(chain) == 2
    assert tls.ca_from_chain(chain, ca.fingerprint) == ca.cert
    with pytest.raises(PKIError, match="pinned"):
        tls.ca_from_chain(chain, create_ca(NOW).fingerprint)
    with pytest.raises(PKIError, match="not a CA"):
        tls.ca_from_chain(chain, fingerprint(chain[0]))


def test_contexts_are_strict(ca: CertificateAuthority, server_files: tuple[Path, Path]) -> None:
    client = tls.client_context(ca.cert)
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert client.minimum_version == ssl.TLSVersion.TLSv1_3
    assert client.verify_flags & ssl.VERIFY_X509_STRICT
    server = tls.server_context(*server_files, ca.cert)
    assert server.verify_mode == ssl.CERT_OPTIONAL
    assert server.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError, match="together"):
        tls.client_context(ca.cert, cert_file=server_files[0])


def test_readable_key_file_refused(
    ca: CertificateAuthority, server_files: tuple[Path, Path]
) -> None:
    server_files[1].chmod(0o644)
    with pytest.raises(PKIError, match="too open"):
        tls.server_context(*server_files, ca.cert)


def test_mismatched_key_file_refused(
    state_dir: Path, ca: CertificateAuthority, server_files: tuple[Path, Path]
) -> None:
    _other_cert, other_key = _enroll(state_dir, ca, Identity(Role.CLIENT, "x"), NOW)
    with pytest.raises(PKIError, match="cannot load"):
        tls.server_context(server_files[0], other_key, ca.cert)


async def test_name_constrained_ca_works_and_limits_hosts(tmp_path: Path, quiet_loop: None) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = create_ca(now, permitted_hosts=[HOST, "127.0.0.1"])
    good = load_or_create_server_cert(tmp_path / "good", ca, [HOST], now)
    evil = load_or_create_server_cert(tmp_path / "evil", ca, ["evil.test"], now)
    cert, key = _enroll(tmp_path / "agent", ca, Identity(Role.AGENT, "prod"), now)
    client = tls.client_context(ca.cert, cert_file=cert, key_file=key)
    server, info = await _serve(tls.server_context(*good, ca.cert))
    async with server:
        assert await _exchange(info.port, client) == b"agent/prod"
    server, info = await _serve(tls.server_context(*evil, ca.cert))
    async with server:
        with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree"):
            await _exchange(info.port, client, "evil.test")
