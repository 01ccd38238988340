"""The relay CA: created once with private files, reused, and never silently replaced."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from core.errors import PKIError
from core.pki import files
from core.pki.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertificateAuthority,
    create_ca,
    load_or_create_ca,
)
from core.pki.keys import format_fingerprint, normalize_fingerprint, verify_pin

from .conftest import NOW


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_files_are_private(state_dir: Path, ca: CertificateAuthority) -> None:
    assert _mode(state_dir) == 0o700
    assert _mode(state_dir / CA_CERT_FILE) == 0o600
    assert _mode(state_dir / CA_KEY_FILE) == 0o600
    assert not [p for p in state_dir.iterdir() if p.name.endswith(".tmp")]


def test_ca_is_reused_on_second_load(state_dir: Path, ca: CertificateAuthority) -> None:
    again = load_or_create_ca(state_dir, NOW + dt.timedelta(days=30))
    assert again.cert == ca.cert
    assert again.fingerprint == ca.fingerprint


def test_ca_certificate_profile(ca: CertificateAuthority) -> None:
    cert = ca.cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.not_valid_after_utc - NOW >= dt.timedelta(days=3649)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_fingerprint_is_stable_and_pin_checks(ca: CertificateAuthority) -> None:
    fp = ca.fingerprint
    assert len(fp) == 64 and fp == fp.lower()
    assert fp == ca.fingerprint
    verify_pin(ca.cert, fp)
    verify_pin(ca.cert, "sha256:" + format_fingerprint(fp))
    other = create_ca(NOW)
    with pytest.raises(PKIError, match="pinned"):
        verify_pin(other.cert, fp)
    with pytest.raises(PKIError, match="64 hex"):
        normalize_fingerprint("abc")


def test_name_constraints_when_hosts_are_given() -> None:
    ca = create_ca(NOW, permitted_hosts=["relay.example.com", "10.0.0.1"])
    nc = ca.cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees is not None
    assert len(nc.value.permitted_subtrees) == 2


@pytest.mark.parametrize("missing", [CA_CERT_FILE, CA_KEY_FILE])
def test_half_a_ca_is_an_error_naming_the_file(
    state_dir: Path, ca: CertificateAuthority, missing: str
) -> None:
    (state_dir / missing).unlink()
    with pytest.raises(PKIError, match=re.escape(str(state_dir / missing))):
        load_or_create_ca(state_dir, NOW)


@pytest.mark.parametrize("name", [CA_CERT_FILE, CA_KEY_FILE])
def test_corrupt_ca_file_is_an_error_naming_the_file(
    state_dir: Path, ca: CertificateAuthority, name: str
) -> None:
    files.write_private(state_dir / name, b"-----BEGIN garbage-----\n")
    with pytest.raises(PKIError, match=re.escape(str(state_dir / name))):
        load_or_create_ca(state_dir, NOW)


def test_mismatched_pair_is_refused(state_dir: Path, ca: CertificateAuthority) -> None:
    other = create_ca(NOW)
    files.write_private(state_dir / CA_CERT_FILE, other.cert_pem)
    with pytest.raises(PKIError, match="does not match"):
        load_or_create_ca(state_dir, NOW)


def test_world_readable_key_is_refused(state_dir: Path, ca: CertificateAuthority) -> None:
    (state_dir / CA_KEY_FILE).chmod(0o644)
    with pytest.raises(PKIError, match="too open"):
        load_or_create_ca(state_dir, NOW)


def test_existing_loose_state_dir_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    load_or_create_ca(loose, NOW)
    assert _mode(loose) == 0o700


def test_write_private_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f"
    files.write_private(target, b"one")
    files.write_private(target, b"two")
    assert target.read_bytes() == b"two"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["f"]


def test_read_errors_are_pki_errors(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="missing"):
        files.read_file(tmp_path / "nope")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    with pytest.raises(PKIError, match="too large"):
        files.read_file(big, max_size=10)
