"""The relay CA: created once in the relay's state directory, loaded on every start.

Losing or silently replacing the CA would orphan every enrolled agent and client, so a
missing half of the pair, a corrupt file or a key that does not match the certificate is
a ``PKIError`` naming the file, never a quiet re-creation. Only a directory with neither
file gets a new CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from core.errors import PKIError
from core.pki import files
from core.pki.keys import (
    PrivateKey,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    generate_key,
    key_from_pem,
    key_to_pem,
    same_public_key,
)

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key (keep the object, not the key bytes)."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_to_pem(self.cert)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate (DER): what tokens pin."""
        return fingerprint(self.cert)


def create_ca(
    now: dt.datetime,
    *,
    common_name: str = "Wicket relay CA",
    validity: dt.timedelta = CA_VALIDITY,
    permitted_hosts: Sequence[str] = (),
) -> CertificateAuthority:
    """A new self-signed EC P-256 CA.

    ``permitted_hosts`` (DNS names or IP addresses) become critical name constraints, so
    even a CA that leaked into some trust store cannot vouch for anyone else's hosts.
    Identity URIs stay unconstrained (no URI subtree is listed).
    """
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        cert_builder(name, name, key.public_key(), now, now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if permitted_hosts:
        subtrees = [_subtree(h) for h in permitted_hosts]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None),
            critical=True,
        )
    return CertificateAuthority(builder.sign(key, hashes.SHA256()), key)


def save_ca(state_dir: Path, ca: CertificateAuthority) -> None:
    """Write ``ca-key.pem`` then ``ca.pem`` (0600 both; the key first so a crash in
    between leaves a state that ``load_ca`` reports instead of a cert without key)."""
    files.write_private(state_dir / CA_KEY_FILE, key_to_pem(ca.key))
    files.write_private(state_dir / CA_CERT_FILE, ca.cert_pem)


def load_ca(state_dir: Path) -> CertificateAuthority:
    """Load and check the CA pair; ``PKIError`` names the file at fault."""
    cert_path, key_path = state_dir / CA_CERT_FILE, state_dir / CA_KEY_FILE
    return ca_from_pem(
        files.read_file(cert_path),
        files.read_file(key_path, private=True),
        cert_source=str(cert_path),
        key_source=str(key_path),
    )


def ca_from_pem(
    cert_pem: bytes, key_pem: bytes, *, cert_source: str, key_source: str
) -> CertificateAuthority:
    """A CA pair from PEM (files, or a fleet's store), checked: the key is the
    certificate's, and the certificate a CA's. ``PKIError`` names the source at fault."""
    cert = cert_from_pem(cert_pem, source=cert_source)
    key = key_from_pem(key_pem, source=key_source)
    if not same_public_key(key, cert):
        raise PKIError(f"{key_source}: does not match the certificate in {cert_source}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PKIError(f"{cert_source}: not a CA certificate")
    return CertificateAuthority(cert, key)


def load_or_create_ca(
    state_dir: Path, now: dt.datetime, *, permitted_hosts: Sequence[str] = ()
) -> CertificateAuthority:
    """The relay's CA: loaded if both files exist, created if neither does."""
    files.ensure_private_dir(state_dir)
    cert_exists = (state_dir / CA_CERT_FILE).exists()
    key_exists = (state_dir / CA_KEY_FILE).exists()
    if not cert_exists and not key_exists:
        ca = create_ca(now, permitted_hosts=permitted_hosts)
        save_ca(state_dir, ca)
        return ca
    if cert_exists != key_exists:
        missing = CA_KEY_FILE if cert_exists else CA_CERT_FILE
        raise PKIError(f"{state_dir / missing}: missing (the other half of the CA exists)")
    return load_ca(state_dir)


def cert_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    now: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """What every certificate Wicket (or its demo) issues starts from: the names, the
    key, a random serial, and validity from ``now`` less ``CLOCK_SKEW`` (a peer whose
    clock runs a little behind must not see a certificate from the future)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
    )


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures only: a leaf signs its handshakes; a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _subtree(host: str) -> x509.GeneralName:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host)
    return x509.IPAddress(ipaddress.ip_network(addr))
