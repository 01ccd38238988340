"""EC P-256 keys, PEM (de)serialization and SHA-256 certificate fingerprints.

P-256 everywhere: fast to generate (~20 µs, fine on a UI thread's worker), small
certificates, supported by every TLS stack kubectl and Go speak. Parsing translates
``cryptography``'s ``ValueError``/``TypeError`` into ``PKIError`` at this boundary.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import PKIError

PrivateKey = ec.EllipticCurvePrivateKey
_HEX64 = re.compile(r"[0-9a-f]{64}")


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: files holding it are 0600 in a 0700 directory."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes, *, source: str = "key") -> PrivateKey:
    """Load an EC P-256 private key; anything else is a ``PKIError`` naming ``source``."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{source}: not a readable private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PKIError(f"{source}: not an EC P-256 private key")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(data: bytes, *, source: str = "certificate") -> x509.Certificate:
    """Load exactly one PEM certificate (the first, if a chain is given)."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"{source}: not a readable PEM certificate") from exc


def same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True if ``cert`` certifies ``key`` (detects a key/cert pair that got mixed up)."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the certificate's DER encoding, 64 lowercase hex characters."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def format_fingerprint(fp: str) -> str:
    """Colon-separated upper-case pairs, the way browsers and ``openssl`` show it."""
    return ":".join(fp[i : i + 2] for i in range(0, len(fp), 2)).upper()


def normalize_fingerprint(text: str) -> str:
    """Accept ``sha256:``-prefixed, colon-separated or upper-case forms; return 64 hex."""
    fp = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX64.fullmatch(fp):
        raise PKIError("a CA fingerprint is 64 hex characters (SHA-256)")
    return fp


def verify_pin(cert: x509.Certificate | bytes, expected: str) -> None:
    """Raise ``PKIError`` unless the certificate's fingerprint equals the pinned one."""
    if not hmac.compare_digest(fingerprint(cert), normalize_fingerprint(expected)):
        raise PKIError("the relay CA does not match the pinned fingerprint")
