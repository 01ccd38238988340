"""Leaf certificates: the relay's server certificate and agent/client certificates.

Agents and clients create their own key and send a CSR (``make_csr``); the relay signs
it (``sign_csr``) so private keys never travel. The relay trusts only the CSR's public
key and signature: role and name come from the relay's own decision (the token record),
and every requested extension is ignored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import PKIError
from core.pki import files
from core.pki.ca import CertificateAuthority, cert_builder, key_usage
from core.pki.identity import Identity, Role
from core.pki.keys import (
    PrivateKey,
    cert_from_pem,
    cert_to_pem,
    generate_key,
    key_from_pem,
    key_to_pem,
    same_public_key,
)

LEAF_VALIDITY = dt.timedelta(days=90)
MAX_CSR_PEM = 16 * 1024
SERVER_CERT_FILE = "relay.pem"
SERVER_KEY_FILE = "relay-key.pem"


def make_csr(key: PrivateKey, identity: Identity) -> bytes:
    """A PEM CSR for ``identity``; the relay overrides the names anyway."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(
    ca: CertificateAuthority,
    csr_pem: bytes | str,
    role: Role,
    name: str,
    now: dt.datetime,
    *,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue a client certificate for ``role``/``name`` to the CSR's public key.

    ``PKIError`` if the CSR does not parse, its self-signature does not verify (it was
    altered, or the sender does not hold the key), or the key is not EC P-256.
    """
    data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
    if len(data) > MAX_CSR_PEM:
        raise PKIError("CSR too large")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise PKIError("CSR does not parse") from exc
    if not csr.is_signature_valid:
        raise PKIError("CSR signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != (
        "secp256r1"
    ):
        raise PKIError("CSR key must be EC P-256")
    return issue_client_cert(ca, public_key, Identity(role, name), now, validity=validity)


def issue_client_cert(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    identity: Identity,
    now: dt.datetime,
    *,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> x509.Certificate:
    """An agent or desktop-client certificate: CN = name, SAN URI = identity, clientAuth."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)])
    return _issue(
        ca,
        public_key,
        identity.name,
        san,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        now=now,
        validity=validity,
    )


def issue_server_cert(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    hosts: Sequence[str],
    now: dt.datetime,
    *,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> x509.Certificate:
    """The relay's server certificate for the DNS names and IP addresses in ``hosts``."""
    if not hosts:
        raise PKIError("a server certificate needs at least one host name or address")
    san = x509.SubjectAlternativeName([_general_name(h) for h in hosts])
    return _issue(
        ca, public_key, hosts[0], san, ExtendedKeyUsageOID.SERVER_AUTH, now=now, validity=validity
    )


def load_or_create_server_cert(
    state_dir: Path,
    ca: CertificateAuthority,
    hosts: Sequence[str],
    now: dt.datetime,
    *,
    validity: dt.timedelta = LEAF_VALIDITY,
) -> tuple[Path, Path]:
    """Chain file (leaf + CA) and key file for the relay's TLS server context.

    The pair is derived state: it is reissued (new key too) when missing, unreadable,
    issued by another CA, for other hosts, or in the last third of its validity.
    The chain includes the CA so new peers can find it by its pinned fingerprint.
    """
    chain_path, key_path = state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE
    if not _server_cert_usable(chain_path, key_path, ca, hosts, now=now, validity=validity):
        key = generate_key()
        cert = issue_server_cert(ca, key.public_key(), hosts, now, validity=validity)
        files.write_private(key_path, key_to_pem(key))
        files.write_private(chain_path, cert_to_pem(cert) + ca.cert_pem)
    return chain_path, key_path


def write_identity_files(
    state_dir: Path, stem: str, key: PrivateKey, cert: x509.Certificate, ca_pem: bytes
) -> tuple[Path, Path]:
    """Store an enrolled peer's ``<stem>.pem``, ``<stem>-key.pem`` and ``ca.pem`` (0600).

    Returns (certificate file, key file) ready for ``tls.client_context``.
    """
    if not same_public_key(key, cert):
        raise PKIError("the issued certificate is not for this key")
    cert_path, key_path = state_dir / f"{stem}.pem", state_dir / f"{stem}-key.pem"
    files.write_private(key_path, key_to_pem(key))
    files.write_private(cert_path, cert_to_pem(cert))
    files.write_private(state_dir / "ca.pem", ca_pem)
    return cert_path, key_path


def _issue(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    san: x509.SubjectAlternativeName,
    usage: x509.ObjectIdentifier,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        cert_builder(subject, ca.cert.subject, public_key, now, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    return builder.sign(ca.key, hashes.SHA256())


def _server_cert_usable(
    chain_path: Path,
    key_path: Path,
    ca: CertificateAuthority,
    hosts: Sequence[str],
    *,
    now: dt.datetime,
    validity: dt.timedelta,
) -> bool:
    try:
        cert = cert_from_pem(files.read_file(chain_path), source=str(chain_path))
        key = key_from_pem(files.read_file(key_path, private=True), source=str(key_path))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca.cert)
    except (PKIError, x509.ExtensionNotFound, InvalidSignature, ValueError, TypeError):
        return False
    wanted = {_general_name(h) for h in hosts}
    fresh = cert.not_valid_after_utc - now > validity / 3
    return same_public_key(key, cert) and set(san) == wanted and fresh


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
