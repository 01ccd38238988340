"""Reaching the relay: CA discovery by pin, enrollment, and mutual-TLS mux sessions.

Agents and desktop clients share this: a token carries the relay address, the CA's
fingerprint and a one-time secret; the first run discovers the CA (checking the pin),
enrolls over a verified connection (the private key never leaves this machine), and
stores its certificate; every later connection is mutual TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from core.aio.channel import ControlChannel, expect
from core.aio.mux import MuxConnection, StreamHandler
from core.errors import AuthError, PKIError, TunnelError, UnsupportedVersion, WicketError
from core.pki import files, tls
from core.pki.certs import make_csr, write_identity_files
from core.pki.identity import Identity, Role
from core.pki.keys import cert_from_pem, fingerprint, generate_key
from core.pki.tokens import Token, split_relay_address
from core.protocol.control import FLEET_VERSION, PROTOCOL_VERSION, ErrorCode, Message, Sender
from core.protocol.mux import MuxConfig

CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
REPLY_TIMEOUT = 15.0
#: How long CA discovery waits for its clean close to finish.
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Enrollment:
    """An enrolled peer identity (agent or client): who we are, the relay, and the
    files for mutual TLS. Not a kubeconfig user (that is ``core.kube.model.Credentials``)."""

    identity: Identity
    relay: str
    ca: x509.Certificate
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        return tls.client_context(self.ca, cert_file=self.cert_file, key_file=self.key_file)


class ClientContexts:
    """The TLS client context of an enrollment, built again only when the enrollment or
    its certificate or key file changed. Building one (the CA, the certificate and its
    key) costs more than the handshake, and every reconnection attempt did it: after a
    relay restart, half the CPU of a process hosting many peers (the scale benchmark)."""

    def __init__(self) -> None:
        self._built: tuple[object, ssl.SSLContext] | None = None

    def get(self, creds: Enrollment) -> ssl.SSLContext:
        key = (creds, _stamp(creds.cert_file), _stamp(creds.key_file))
        if self._built is None or self._built[0] != key:
            self._built = (key, creds.context())
        return self._built[1]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


#: Identities are kept per relay, under the fingerprint of the relay's CA (which every
#: token carries): ``<state>/relays/<fingerprint>/{ca.pem,<role>.pem,<role>-key.pem,
#: <role>-relay}``, and ``<state>/<role>-relay-ca`` names the one in use. A token for
#: another relay then enrolls there instead of dialing an identity it never issued.
RELAYS_DIR = "relays"
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def identity_dir(state_dir: Path, ca_fingerprint: str) -> Path:
    """Where the identities issued by the relay whose CA has ``ca_fingerprint`` live."""
    return state_dir / RELAYS_DIR / ca_fingerprint


def _private_identity_dir(state_dir: Path, ca_fingerprint: str) -> Path:
    """``identity_dir``, created 0700 with its parent (``mkdir -p`` leaves parents 0755)."""
    files.ensure_private_dir(state_dir / RELAYS_DIR)
    return files.ensure_private_dir(identity_dir(state_dir, ca_fingerprint))


def load_enrollment(
    state_dir: Path, role: Role, ca_fingerprint: str | None = None
) -> Enrollment | None:
    """The stored identity for ``role`` at the relay whose CA has ``ca_fingerprint``
    (default: the one in use), or None if this peer has not enrolled there yet.

    A single identity kept by an older Wicket (``<role>.pem`` beside ``ca.pem``) is
    moved into its relay's directory first, and stays the one in use.
    """
    _migrate(state_dir, role)
    chosen = ca_fingerprint or _in_use(state_dir, role)
    if chosen is None:
        return None
    directory = identity_dir(state_dir, chosen)
    stem = role.value
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    relay_file, ca_file = directory / f"{stem}-relay", directory / "ca.pem"
    if not cert_file.exists():
        return None
    cert = cert_from_pem(files.read_file(cert_file), source=str(cert_file))
    ca = cert_from_pem(files.read_file(ca_file), source=str(ca_file))
    identity = _identity_of(cert, cert_file)
    relay = files.read_file(relay_file, private=True).decode().strip()
    return Enrollment(identity, relay, ca, cert_file, key_file)


def use_relay(state_dir: Path, role: Role, ca_fingerprint: str, address: str) -> None:
    """Make the identity issued by that relay the one in use, dialed at ``address`` (a
    relay keeps its CA when it moves: a fresh token or a new port says where it is)."""
    relay_file = _private_identity_dir(state_dir, ca_fingerprint) / f"{role.value}-relay"
    if not relay_file.exists() or relay_file.read_bytes().decode().strip() != address:
        files.write_private(relay_file, address.encode())
    if _in_use(state_dir, role) != ca_fingerprint:
        files.write_private(_in_use_file(state_dir, role), ca_fingerprint.encode())


def _in_use_file(state_dir: Path, role: Role) -> Path:
    return state_dir / f"{role.value}-relay-ca"


def _in_use(state_dir: Path, role: Role) -> str | None:
    path = _in_use_file(state_dir, role)
    if not path.exists():
        return None
    fingerprint = files.read_file(path, private=True).decode().strip()
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise PKIError(f"{path}: not a CA fingerprint")
    return fingerprint


def _migrate(state_dir: Path, role: Role) -> None:
    """Move a legacy ``<role>.pem``, its key and relay file into ``relays/<fp>/``.

    The certificate moves last: a migration cut short is finished by the next load.
    """
    stem = role.value
    legacy = state_dir / f"{stem}.pem"
    if not legacy.exists():
        return
    ca_pem = files.read_file(state_dir / "ca.pem")
    ca_fingerprint = fingerprint(cert_from_pem(ca_pem, source=str(state_dir / "ca.pem")))
    directory = _private_identity_dir(state_dir, ca_fingerprint)
    files.write_private(directory / "ca.pem", ca_pem)
    try:
        for name in (f"{stem}-key.pem", f"{stem}-relay"):
            if (state_dir / name).exists():
                os.replace(state_dir / name, directory / name)
        files.write_private(_in_use_file(state_dir, role), ca_fingerprint.encode())
        os.replace(legacy, directory / f"{stem}.pem")
    except OSError as exc:
        raise PKIError(f"{state_dir}: cannot move the identity into {directory}: {exc}") from exc
    if not any((state_dir / f"{r.value}.pem").exists() for r in Role):
        (state_dir / "ca.pem").unlink(missing_ok=True)


def _identity_of(cert: x509.Certificate, source: Path) -> Identity:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        identity = Identity.from_uri(uri)
        if identity is not None:
            return identity
    raise PKIError(f"{source}: certificate carries no Wicket identity")


def relay_hostname(address: str) -> tuple[str, int]:
    host, port = split_relay_address(address)
    return host.strip("[]"), port


async def discover_ca(address: str, pin: str, timeout: float = CONNECT_TIMEOUT) -> x509.Certificate:
    """Find the relay CA whose fingerprint is ``pin``; sends no message on that connection."""
    host, port = relay_hostname(address)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                host, port, ssl=tls.discovery_context(), server_hostname=host
            )
    except (OSError, TimeoutError) as exc:
        raise TunnelError(f"cannot reach the relay at {address}: {exc}") from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return tls.ca_from_chain(tls.unverified_chain(ssl_object), pin)
    finally:
        # A clean close (close_notify, then FIN) after the handshake finished: an abort
        # could reset the connection before the relay read our Finished, and the relay
        # would count a TLS failure against this address (issue 14).
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)


async def connect_mux(
    address: str,
    context: ssl.SSLContext,
    config: MuxConfig,
    stream_handler: StreamHandler | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> MuxConnection:
    """A verified TLS connection to the relay carrying a mux session (we are the client)."""
    host, port = relay_hostname(address)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout + HANDSHAKE_TIMEOUT):
            _, conn = await loop.create_connection(
                lambda: MuxConnection(True, config, stream_handler=stream_handler),
                host,
                port,
                ssl=context,
                server_hostname=host,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
    except ssl.SSLError as exc:
        raise AuthError(f"TLS with the relay at {address} failed: {exc.reason or exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TunnelError(f"cannot reach the relay at {address}: {exc or 'timeout'}") from exc
    return conn


async def enroll(token: Token, state_dir: Path, role: Role, config: MuxConfig) -> Enrollment:
    """Trade a one-time token for a certificate; returns the stored enrollment."""
    ca = await discover_ca(token.relay, token.ca_fingerprint)
    key = generate_key()
    csr = make_csr(key, Identity(role, token.name))
    conn = await connect_mux(token.relay, tls.client_context(ca), config)
    try:
        channel = ControlChannel(conn, conn.open_stream(), Sender.PEER)
        channel.send(
            {
                "type": "enroll",
                "version": PROTOCOL_VERSION,
                "token_id": token.token_id,
                "secret": token.secret_text,
                "csr_pem": csr.decode(),
            }
        )
        try:
            reply = expect(await channel.recv(REPLY_TIMEOUT), "enrolled")
        except WicketError as exc:
            raise AuthError(f"enrollment refused: {exc}") from exc
    finally:
        conn.abort()
    cert = cert_from_pem(str(reply["cert_pem"]).encode(), source="relay reply")
    files.ensure_private_dir(state_dir)
    directory = _private_identity_dir(state_dir, token.ca_fingerprint)
    cert_file, key_file = write_identity_files(
        directory, role.value, key, cert, str(reply["ca_pem"]).encode()
    )
    use_relay(state_dir, role, token.ca_fingerprint, token.relay)
    identity = _identity_of(cert, cert_file)
    return Enrollment(identity, token.relay, ca, cert_file, key_file)


async def hello(conn: MuxConnection, identity: Identity) -> ControlChannel:
    """Open the control stream and authenticate the session (mutual TLS did the proof)."""
    channel, _ = await hello_members(conn, identity, PROTOCOL_VERSION)
    return channel


async def hello_members(
    conn: MuxConnection, identity: Identity, version: int
) -> tuple[ControlChannel, Message | None]:
    """``hello`` saying ``version``. With version 2 the relay's ``members`` (which fleet
    member this is, and the others) comes right after ``hello_ok``: returned with the
    channel (None with version 1). A relay that speaks no ``version`` (an older Wicket)
    raises :class:`~core.errors.UnsupportedVersion`."""
    channel = ControlChannel(conn, conn.open_stream(), Sender.PEER)
    role, name = identity.role.value, identity.name
    channel.send({"type": "hello", "version": version, "role": role, "name": name})
    reply = await channel.recv(REPLY_TIMEOUT)
    if reply["type"] == "error" and reply["code"] == ErrorCode.UNSUPPORTED_VERSION:
        raise UnsupportedVersion(f"relay refused: {reply['code']}: {reply['message']}")
    if expect(reply, "hello_ok")["version"] < FLEET_VERSION:
        return channel, None
    return channel, expect(await channel.recv(REPLY_TIMEOUT), "members")
