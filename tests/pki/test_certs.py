"""Issuance: CSRs are verified and their names ignored; leaf profiles; server cert reuse."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import PKIError
from core.pki.ca import CertificateAuthority, create_ca
from core.pki.certs import (
    issue_server_cert,
    load_or_create_server_cert,
    make_csr,
    sign_csr,
    write_identity_files,
)
from core.pki.identity import Identity, Role
from core.pki.keys import cert_from_pem, generate_key, same_public_key

from .conftest import NOW


def _uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_sign_csr_issues_for_the_relays_choice_not_the_csrs(ca: CertificateAuthority) -> None:
    key = generate_key()
    csr = make_csr(key, Identity(Role.CLIENT, "evil-admin"))
    cert = sign_csr(ca, csr, Role.AGENT, "prod-eu", NOW)
    assert _uris(cert) == ["wicket://agent/prod-eu"]
    assert _cn(cert) == "prod-eu"
    assert same_public_key(key, cert)
    cert.verify_directly_issued_by(ca.cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=90)


def test_requested_extensions_are_ignored(ca: CertificateAuthority) -> None:
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("relay.test")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    cert = sign_csr(ca, csr, Role.CLIENT, "alice", NOW)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _uris(cert) == ["wicket://client/alice"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []


def test_tampered_csr_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr(generate_key(), Identity(Role.AGENT, "prod"))
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    # Flip a bit inside the subject (the CN "prod" is near the start of the body).
    idx = der.index(b"prod")
    der[idx] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PKIError, match="signature"):
        sign_csr(ca, tampered, Role.AGENT, "prod", NOW)


def test_csr_signed_by_another_key_is_refused(ca: CertificateAuthority) -> None:
    # Someone else's public key with a signature from a key they do not hold.
    victim = generate_key().public_key()
    own = make_csr(generate_key(), Identity(Role.AGENT, "prod"))
    csr = x509.load_pem_x509_csr(own)
    pub_der = victim.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = csr.public_bytes(serialization.Encoding.DER)
    own_pub = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped = der.replace(own_pub, pub_der)
    pem = x509.load_der_x509_csr(swapped).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PKIError, match="signature"):
        sign_csr(ca, pem, Role.AGENT, "prod", NOW)


@pytest.mark.parametrize("junk", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_unparseable_csr_is_refused(ca: CertificateAuthority, junk: bytes) -> None:
    with pytest.raises(PKIError, match="parse"):
        sign_csr(ca, junk, Role.AGENT, "prod", NOW)


def test_oversized_csr_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PKIError, match="too large"):
        sign_csr(ca, b"A" * 20_000, Role.AGENT, "prod", NOW)


def test_non_p256_keys_are_refused(ca: CertificateAuthority) -> None:
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        with pytest.raises(PKIError, match="P-256"):
            sign_csr(ca, csr, Role.AGENT, "prod", NOW)


def test_invalid_name_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr(generate_key(), Identity(Role.AGENT, "prod"))
    with pytest.raises(ValueError, match="invalid name"):
        sign_csr(ca, csr, Role.AGENT, "../etc", NOW)


def test_leaf_never_outlives_the_ca() -> None:
    ca = create_ca(NOW, validity=dt.timedelta(days=10))
    cert = sign_csr(ca, make_csr(generate_key(), Identity(Role.AGENT, "a")), Role.AGENT, "a", NOW)
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_naive_now_is_a_programming_error(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="timezone"):
        issue_server_cert(ca, generate_key().public_key(), ["relay.test"], NOW.replace(tzinfo=None))


def test_server_cert_has_hosts_and_server_auth(ca: CertificateAuthority) -> None:
    cert = issue_server_cert(ca, generate_key().public_key(), ["relay.test", "127.0.0.1"], NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["relay.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(PKIError, match="at least one"):
        issue_server_cert(ca, generate_key().public_key(), [], NOW)


def test_server_cert_is_reused_then_renewed(state_dir: Path, ca: CertificateAuthority) -> None:
    chain, key = load_or_create_server_cert(state_dir, ca, ["relay.test"], NOW)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = chain.read_bytes()
    assert first.count(b"BEGIN CERTIFICATE") == 2  # leaf + CA, for pinned discovery
    load_or_create_server_cert(state_dir, ca, ["relay.test"], NOW + dt.timedelta(days=30))
    assert chain.read_bytes() == first
    load_or_create_server_cert(state_dir, ca, ["relay.test"], NOW + dt.timedelta(days=61))
    assert chain.read_bytes() != first
    renewed = chain.read_bytes()
    load_or_create_server_cert(state_dir, ca, ["other.test"], NOW + dt.timedelta(days=61))
    assert chain.read_bytes() != renewed
    load_or_create_server_cert(state_dir, create_ca(NOW), ["other.test"], NOW)
    leaf = cert_from_pem(chain.read_bytes())
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(ca.cert)


def test_write_identity_files(state_dir: Path, ca: CertificateAuthority) -> None:
    key = generate_key()
    cert = sign_csr(ca, make_csr(key, Identity(Role.AGENT, "p")), Role.AGENT, "p", NOW)
    cert_path, key_path = write_identity_files(state_dir, "agent", key, cert, ca.cert_pem)
    for path in (cert_path, key_path, state_dir / "ca.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(PKIError, match="not for this key"):
        write_identity_files(state_dir, "agent", generate_key(), cert, ca.cert_pem)
