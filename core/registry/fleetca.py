"""One CA for a fleet, kept in its shared store (as Teleport keeps its CAs in its backend).

Every member signs enrollments with it and presents a server certificate it issued, so
a peer that pinned the CA's fingerprint at enrollment (its token carries it) accepts
whichever member it reaches, and the CA fingerprint that keys a peer's identities
(``relays/<fp>/``) names the whole fleet.

The first member creates the CA and inserts it unless one is there (one transaction:
of members starting at once, all end with the first one's); later members, even with
an empty state directory, load it. A member whose state directory still holds a CA of
its own (a single relay becoming the fleet's first member) brings that one in instead
of making a new one, so the peers enrolled with it keep working; if the fleet already
has another CA, the member is refused rather than split the fleet.

The private key is sealed at rest when the members are given a key file
(``--ca-key-file``: 32 random bytes, raw or base64): AES-256-GCM, a fresh nonce, the
certificate's fingerprint as associated data (a key cannot be paired with another
certificate). Without a key file the key is stored as PEM: whoever can read the
database can then issue identities. A fleet is one or the other: a member given a
key file refuses a clear key, and one without a key file refuses a sealed one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import PKIError
from core.pki import files
from core.pki.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertificateAuthority,
    ca_from_pem,
    create_ca,
    load_ca,
)
from core.pki.keys import cert_from_pem, fingerprint, key_to_pem
from core.registry.store import CaRecord, FleetStore

KEY_SIZE = 32
NONCE_SIZE = 12
CLEAR, SEALED = "none", "aes-256-gcm"
_AAD = b"wicket fleet CA key v1\0"
WHERE = "the fleet's store"

log = logging.getLogger("wicket.registry")


def read_key_file(path: Path) -> bytes:
    """The 32-byte key in ``path`` (0600): raw, or base64 text of it."""
    data = files.read_file(path, private=True)
    if len(data) == KEY_SIZE:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise PKIError(
            f"{path}: not a CA key file ({KEY_SIZE} random bytes, raw or base64; "
            f"make one with: head -c {KEY_SIZE} /dev/urandom > FILE)"
        )
    return key


def fleet_ca(
    store: FleetStore, key: bytes | None, state_dir: Path | None, now: dt.datetime
) -> CertificateAuthority:
    """The fleet's CA: loaded from ``store``, or made (or brought from ``state_dir``) by
    the first member and stored; ``PKIError`` when this member cannot use the fleet's."""
    local = _local_ca(state_dir)
    record = store.ca()
    if record is None:
        ca = local or create_ca(now)
        record = store.add_ca(seal(ca, key, now))
        if local is not None and record.cert_pem == ca.cert_pem:
            log.info("the fleet's CA is this state dir's (%s)", ca.fingerprint[:16])
    ca = unseal(record, key)
    if record.key_encryption == CLEAR:
        log.warning("the fleet CA's key is stored in the clear in %s (no --ca-key-file)", WHERE)
    if local is not None and local.fingerprint != ca.fingerprint:
        raise PKIError(
            f"{state_dir}: holds CA {local.fingerprint[:16]}…, but the fleet's is "
            f"{ca.fingerprint[:16]}…; refused (its peers would not know this member). "
            f"Move {CA_CERT_FILE} and {CA_KEY_FILE} out of the state dir to join the fleet"
        )
    return ca


def seal(ca: CertificateAuthority, key: bytes | None, now: dt.datetime) -> CaRecord:
    """The record to store: the key as PEM, or sealed with ``key``."""
    pem = key_to_pem(ca.key)
    if key is None:
        return CaRecord(ca.cert_pem, pem, CLEAR, now)
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(key).encrypt(nonce, pem, _AAD + bytes.fromhex(ca.fingerprint))
    return CaRecord(ca.cert_pem, nonce + sealed, SEALED, now)


def unseal(record: CaRecord, key: bytes | None) -> CertificateAuthority:
    """The CA of a record, its key opened with ``key`` if it is sealed."""
    pem = record.key
    if record.key_encryption == SEALED:
        if key is None:
            raise PKIError(
                f"{WHERE}: the CA key is sealed; give this member --ca-key-file "
                "(the file every member of the fleet has)"
            )
        pem = _open(record, key)
    elif key is not None:
        raise PKIError(
            f"{WHERE}: the CA key is stored in the clear (the fleet was started without "
            "--ca-key-file), and this member was given one; refused. Start every member "
            "the same way"
        )
    return ca_from_pem(
        record.cert_pem, pem, cert_source=f"{WHERE} (CA)", key_source=f"{WHERE} (CA key)"
    )


def _open(record: CaRecord, key: bytes) -> bytes:
    cert = cert_from_pem(record.cert_pem, source=f"{WHERE} (CA)")
    nonce, sealed = record.key[:NONCE_SIZE], record.key[NONCE_SIZE:]
    try:
        return AESGCM(key).decrypt(nonce, sealed, _AAD + bytes.fromhex(fingerprint(cert)))
    except InvalidTag as exc:
        raise PKIError(
            f"{WHERE}: --ca-key-file does not open the fleet's CA key (not the fleet's "
            "key file, or the stored key was altered)"
        ) from exc


def _local_ca(state_dir: Path | None) -> CertificateAuthority | None:
    """The CA a state directory holds from before the fleet, if any."""
    if state_dir is None:
        return None
    if not (state_dir / CA_CERT_FILE).exists() and not (state_dir / CA_KEY_FILE).exists():
        return None
    return load_ca(state_dir)
