"""The fallback vault: one file encrypted with a key derived from the user's passphrase.

Used only when no secure keyring exists and the user chose to remember secrets. The
key comes from scrypt over the passphrase and a random per-file salt, and lives only in
memory: a key stored next to the file would be obfuscation, not security.

File layout (all of it authenticated; the header is AES-GCM associated data)::

    magic "WKTSEC1\\n" | log2(n) r p (1 byte each) | salt (16) | check (16)
    | nonce (12) | AES-256-GCM(JSON {"secrets": {key: secret}}) with its 16-byte tag

scrypt yields 48 bytes: 32 for the AES key, 16 for ``check``. Comparing ``check``
first tells a wrong passphrase apart from a damaged file without trying to decrypt.

Writes go to a temporary file in the same directory (mode 0600), are fsynced, then
``os.replace``d over the old file and the directory is fsynced: a crash leaves the old
file or the new one, never half of one. A file that fails to open is never
overwritten, so nothing is lost to a mistyped passphrase or a bad sector.
"""

from __future__ import annotations

import hmac
import json
import secrets
import struct
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core import fsutil
from core.errors import SecretFileCorrupt, SecretPassphraseError, SecretStoreError

MAGIC = b"WKTSEC1\n"
_PARAMS = struct.Struct(">BBB")
_SALT, _CHECK, _NONCE, _TAG = 16, 16, 12, 16
_HEADER = len(MAGIC) + _PARAMS.size + _SALT + _CHECK + _NONCE
_MAX_SCRYPT_MEMORY = 512 * 1024 * 1024
_MAX_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ScryptCost:
    """scrypt work factors; the default (n=2**17, r=8: 128 MiB, ~0.4 s) follows OWASP."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        memory = 128 * self.r * (1 << self.log2_n)
        if not (10 <= self.log2_n <= 22 and 1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise SecretFileCorrupt(f"implausible scrypt parameters {self}")
        if memory > _MAX_SCRYPT_MEMORY:
            raise SecretFileCorrupt(f"scrypt parameters ask for {memory >> 20} MiB")


def _derive(passphrase: str, salt: bytes, cost: ScryptCost) -> tuple[bytes, bytes]:
    if not passphrase:
        raise SecretPassphraseError("an empty passphrase cannot protect secrets")
    kdf = Scrypt(salt=salt, length=32 + _CHECK, n=1 << cost.log2_n, r=cost.r, p=cost.p)
    material = kdf.derive(unicodedata.normalize("NFC", passphrase).encode())
    return material[:32], material[32:]


@dataclass(frozen=True)
class _Key:
    cost: ScryptCost
    salt: bytes
    aes: bytes
    check: bytes


def _parse_header(path: Path, blob: bytes) -> tuple[ScryptCost, bytes, bytes, bytes]:
    if len(blob) < _HEADER + _TAG or not blob.startswith(MAGIC):
        raise SecretFileCorrupt(f"{path}: not a Wicket secrets file, or truncated")
    at = len(MAGIC)
    cost = ScryptCost(*_PARAMS.unpack_from(blob, at))
    cost.check()
    at += _PARAMS.size
    salt, at = blob[at : at + _SALT], at + _SALT
    check, at = blob[at : at + _CHECK], at + _CHECK
    return cost, salt, check, blob[at : at + _NONCE]


class EncryptedFileVault:
    """A passphrase-encrypted secrets file; every call re-reads it (another process may)."""

    def __init__(self, path: Path, key: _Key) -> None:
        self.path = path
        self._key = key
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path | str, passphrase: str, cost: ScryptCost | None = None
    ) -> EncryptedFileVault:
        """Open ``path`` with ``passphrase``, or prepare a new file there (written on set).

        Raises :class:`SecretPassphraseError` or :class:`SecretFileCorrupt` for an
        existing file that does not open; ``cost`` applies to new files only.
        """
        path = Path(path)
        blob = _read(path)
        if blob is None:
            cost = cost or ScryptCost()
            cost.check()
            salt = secrets.token_bytes(_SALT)
            aes, check = _derive(passphrase, salt, cost)
            return cls(path, _Key(cost, salt, aes, check))
        file_cost, salt, stored_check, _ = _parse_header(path, blob)
        aes, check = _derive(passphrase, salt, file_cost)
        if not hmac.compare_digest(check, stored_check):
            raise SecretPassphraseError(f"{path}: wrong passphrase (or an altered header)")
        vault = cls(path, _Key(file_cost, salt, aes, check))
        vault._decrypt(blob)
        return vault

    def _decrypt(self, blob: bytes) -> dict[str, str]:
        cost, salt, check, nonce = _parse_header(self.path, blob)
        if (cost, salt) != (self._key.cost, self._key.salt):
            raise SecretStoreError(f"{self.path}: replaced by another program; open it again")
        if not hmac.compare_digest(check, self._key.check):
            raise SecretFileCorrupt(f"{self.path}: header was altered")
        try:
            plain = AESGCM(self._key.aes).decrypt(nonce, blob[_HEADER:], blob[:_HEADER])
        except InvalidTag:
            raise SecretFileCorrupt(
                f"{self.path}: damaged or altered (authentication failed)"
            ) from None
        try:
            table = json.loads(plain)["secrets"]
        except (ValueError, KeyError, TypeError):
            raise SecretFileCorrupt(f"{self.path}: unreadable contents") from None
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in table.items()
        ):
            raise SecretFileCorrupt(f"{self.path}: unreadable contents")
        return table

    def _load(self) -> dict[str, str]:
        blob = _read(self.path)
        return {} if blob is None else self._decrypt(blob)

    def _store(self, table: dict[str, str]) -> None:
        k = self._key
        nonce = secrets.token_bytes(_NONCE)
        header = MAGIC + _PARAMS.pack(k.cost.log2_n, k.cost.r, k.cost.p) + k.salt + k.check
        header += nonce
        plain = json.dumps({"secrets": table}, sort_keys=True).encode()
        _write_atomic(self.path, header + AESGCM(k.aes).encrypt(nonce, plain, header))

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._load().get(key)

    def set(self, key: str, secret: str) -> None:
        with self._lock:
            table = self._load()
            table[key] = secret
            self._store(table)

    def delete(self, key: str) -> bool:
        with self._lock:
            table = self._load()
            if table.pop(key, None) is None:
                return False
            self._store(table)
            return True


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            blob = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretStoreError(f"{path}: cannot read: {exc.strerror}") from None
    if len(blob) > _MAX_FILE:
        raise SecretFileCorrupt(f"{path}: larger than any secrets file Wicket writes")
    return blob


def _write_atomic(path: Path, data: bytes) -> None:
    """Old file or new file after any crash; the new one is 0600 from its first byte."""
    try:
        fsutil.ensure_private_dir(path.parent)
        fsutil.replace_atomic(path, data)
    except OSError as exc:
        raise SecretStoreError(f"{path}: cannot write: {exc.strerror}") from None
