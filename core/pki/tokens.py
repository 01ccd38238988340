"""Join and client tokens: format, strict parsing, secret hashing, log redaction.

Spec: docs/tokens.md. A token is ``wicket-<kind>-v1.<base64url(json || crc32)>``; one
token has exactly one valid spelling, so any mutation either fails to parse or yields the
same token. Error messages name the problem, never the token or its secret.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
import secrets
import zlib
from dataclasses import dataclass, field

from core.errors import TokenError
from core.pki.identity import is_valid_name

VERSION = 1
SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 1024
_FIELDS = ("ca", "id", "name", "relay", "secret")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_TOKEN_RE = re.compile(r"wicket-([a-z]+)-v([0-9]+)\.[A-Za-z0-9_-]*")
_HASH_DOMAIN = b"wicket-token-v1\0"


class TokenKind(enum.StrEnum):
    """Who the token enrolls: an agent (``join``) or a desktop client (``client``)."""

    JOIN = "join"
    CLIENT = "client"

    @property
    def prefix(self) -> str:
        return f"wicket-{self.value}-v{VERSION}."


@dataclass(frozen=True)
class Token:
    """A parsed token; ``repr`` leaves the secret out so it cannot reach a log."""

    kind: TokenKind
    relay: str
    ca_fingerprint: str
    name: str
    token_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_fields(self)

    @classmethod
    def new(cls, kind: TokenKind, relay: str, ca_fingerprint: str, name: str) -> Token:
        """A fresh token with a random 64-bit id and a 256-bit secret."""
        return cls(kind, relay, ca_fingerprint, name, secrets.token_hex(8), _new_secret())

    @property
    def secret_text(self) -> str:
        """The secret as it travels in ``enroll`` (43 base64url characters)."""
        return _b64encode(self.secret)


def encode(token: Token) -> str:
    """The token's one canonical string form."""
    payload = json.dumps(
        {
            "ca": token.ca_fingerprint,
            "id": token.token_id,
            "name": token.name,
            "relay": token.relay,
            "secret": token.secret_text,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    prefix = token.kind.prefix
    return prefix + _b64encode(payload + _crc(prefix, payload))


def parse(text: str) -> Token:
    """Parse and validate a token (surrounding whitespace is ignored)."""
    text = text.strip()
    if len(text) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    kind = next((k for k in TokenKind if text.startswith(k.prefix)), None)
    if kind is None:
        if text.startswith("wicket-"):
            raise TokenError("unknown token kind or version (this Wicket reads v1 tokens)")
        raise TokenError("not a Wicket token (expected wicket-join-v1.… or wicket-client-v1.…)")
    raw = _b64decode(text[len(kind.prefix) :])
    payload, crc = raw[:-4], raw[-4:]
    if len(raw) < 5 or not hmac.compare_digest(crc, _crc(kind.prefix, payload)):
        raise TokenError("token checksum mismatch (incomplete or mistyped copy?)")
    try:
        obj = json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError("token body is not valid JSON") from exc
    if not isinstance(obj, dict) or sorted(obj) != list(_FIELDS):
        raise TokenError(f"token must have exactly the fields {', '.join(_FIELDS)}")
    if not all(isinstance(obj[f], str) for f in _FIELDS):
        raise TokenError("token fields must be strings")
    token = Token(kind, obj["relay"], obj["ca"], obj["name"], obj["id"], _secret(obj["secret"]))
    if encode(token) != text:
        raise TokenError("token is not in canonical form")
    return token


def redact(text: str) -> str:
    """Replace every token-shaped run in ``text`` with ``wicket-<kind>-v<N>.<redacted>``."""
    return _TOKEN_RE.sub(lambda m: f"wicket-{m[1]}-v{m[2]}.<redacted>", text)


def hash_secret(secret: bytes) -> str:
    """What the relay stores instead of the secret (docs/tokens.md: why plain SHA-256)."""
    return "sha256:" + hashlib.sha256(_HASH_DOMAIN + secret).hexdigest()


def verify_secret(secret: bytes, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


def decode_secret(text: str) -> bytes:
    """The 32 secret bytes from their 43-character wire form (``enroll.secret``)."""
    return _secret(text)


def split_relay_address(address: str) -> tuple[str, int]:
    """``host:port`` → (host, port); IPv6 hosts are bracketed and returned without."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not _PORT.fullmatch(port_text):
        raise TokenError("relay address must be host:port")
    port = int(port_text)
    if port > 65535:
        raise TokenError("relay port must be 1-65535")
    if _IPV6.fullmatch(host):
        return host[1:-1], port
    if not _HOST.fullmatch(host):
        raise TokenError("relay host must be a DNS name, an IPv4 address or [IPv6]")
    return host, port


def _check_fields(token: Token) -> None:
    split_relay_address(token.relay)
    if not _HEX64.fullmatch(token.ca_fingerprint):
        raise TokenError("token field ca must be 64 lowercase hex characters (SHA-256)")
    if not is_valid_name(token.name):
        raise TokenError("token field name is not a valid cluster or client name")
    if not _HEX16.fullmatch(token.token_id):
        raise TokenError("token field id must be 16 lowercase hex characters")
    if len(token.secret) != SECRET_BYTES:
        raise TokenError(f"token secret must be {SECRET_BYTES} bytes")


def _secret(text: str) -> bytes:
    secret = _b64decode(text)
    if len(secret) != SECRET_BYTES:
        raise TokenError(f"token secret must be {SECRET_BYTES} bytes")
    return secret


def _new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def _crc(prefix: str, payload: bytes) -> bytes:
    return zlib.crc32(prefix.encode("ascii") + payload).to_bytes(4, "big")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding: canonical (unused bits zero) or ``TokenError``."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError("token body is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("token body is not base64url") from exc
    if _b64encode(data) != text:
        raise TokenError("token body is not canonical base64url")
    return data
