"""The demo apiserver's own small PKI: a CA, a server certificate and a client certificate.

EC P-256 throughout. Files live in ``<state_dir>/pki`` and are reused across runs, so a
kubeconfig written once keeps working. Self-contained on purpose: the tunnel's PKI is
``core.pki``; this one only has to satisfy kubectl.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core import fsutil
from core.errors import PKIError
from core.format import utcnow
from core.pki.ca import cert_builder

SERVER_NAMES = ("localhost", "kubernetes.default.svc", "wicket-demo.local")
SERVER_IPS = ("127.0.0.1", "::1")
CLIENT_USER = "wicket-demo-user"


@dataclass(frozen=True)
class DemoPKI:
    """Paths of the demo's PEM files, plus the bearer token."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    token_file: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    @property
    def bearer_token(self) -> str:
        return self.token_file.read_text().strip()


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    server: bool = False,
    days: int = 825,
) -> x509.Certificate:
    now = utcnow()
    not_after = now + datetime.timedelta(days=days)
    builder = (
        cert_builder(subject, issuer, key.public_key(), now, not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_pki(state_dir: Path) -> DemoPKI:
    """Load the demo PKI from ``state_dir/pki``, creating whatever is missing."""
    directory = state_dir / "pki"
    pki = DemoPKI(
        directory,
        directory / "ca.crt",
        directory / "ca.key",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
        directory / "token",
    )
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = [pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key]
        files += [pki.client_cert, pki.client_key, pki.token_file]
        if all(p.exists() for p in files):
            return pki
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("wicket-demo-ca")
        ca_cert = _issue(ca_name, ca_key, ca_name, ca_key, ca=True, days=3650)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _issue(
            _name("wicket-demo-apiserver"), server_key, ca_name, ca_key, ca=False, server=True
        )
        client_key = ec.generate_private_key(ec.SECP256R1())
        client_cert = _issue(
            _name(CLIENT_USER, "system:masters"), client_key, ca_name, ca_key, ca=False
        )
        pem = serialization.Encoding.PEM
        fsutil.replace_atomic(pki.ca_key, _key_pem(ca_key))
        fsutil.replace_atomic(pki.server_key, _key_pem(server_key))
        fsutil.replace_atomic(pki.client_key, _key_pem(client_key))
        fsutil.replace_atomic(pki.token_file, secrets.token_urlsafe(32).encode() + b"\n")
        fsutil.replace_atomic(pki.server_cert, server_cert.public_bytes(pem), mode=0o644)
        fsutil.replace_atomic(pki.client_cert, client_cert.public_bytes(pem), mode=0o644)
        fsutil.replace_atomic(pki.ca_cert, ca_cert.public_bytes(pem), mode=0o644)
    except OSError as exc:
        raise PKIError(f"cannot create the demo PKI in {directory}: {exc}") from exc
    return pki
