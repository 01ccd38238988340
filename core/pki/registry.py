"""The relay's one-time token store: ``<state>/tokens.json`` (0600, atomic writes).

Only hashes are kept (docs/tokens.md). Every refusal is the same ``AuthError("invalid
token")`` whatever the reason, so a peer learns nothing about which ids exist, and an
unknown id still costs one hash and one constant-time compare.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import AuthError, PKIError, TokenError
from core.pki import files
from core.pki.tokens import Token, TokenKind, decode_secret, hash_secret, verify_secret

TOKENS_FILE = "tokens.json"
DEFAULT_TTL = dt.timedelta(days=1)
_DUMMY_HASH = hash_secret(b"\0" * 32)


@dataclass(frozen=True)
class TokenRecord:
    """What the relay remembers about an issued token (never the secret)."""

    token_id: str
    kind: TokenKind
    name: str
    secret_hash: str = field(repr=False)
    created: dt.datetime
    expires: dt.datetime | None
    used_at: dt.datetime | None = None
    revoked: bool = False

    def usable(self, now: dt.datetime) -> bool:
        return (
            self.used_at is None
            and not self.revoked
            and (self.expires is None or now < self.expires)
        )


class TokenRegistry:
    """Issue, consume (once) and revoke tokens; every change is on disk before it counts."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / TOKENS_FILE
        self._records: dict[str, TokenRecord] = _load(self._path)

    def issue(
        self,
        kind: TokenKind,
        name: str,
        *,
        relay: str,
        ca_fingerprint: str,
        now: dt.datetime,
        ttl: dt.timedelta | None = DEFAULT_TTL,
    ) -> Token:
        """A new token; the returned object is the only place its secret exists."""
        token = Token.new(kind, relay, ca_fingerprint, name)
        self._records[token.token_id] = TokenRecord(
            token.token_id,
            kind,
            name,
            hash_secret(token.secret),
            now,
            None if ttl is None else now + ttl,
        )
        self._save()
        return token

    def consume(self, token_id: str, secret: bytes | str, now: dt.datetime) -> TokenRecord:
        """Mark a token used and return its record; ``AuthError`` for any refusal."""
        try:
            secret_bytes = decode_secret(secret) if isinstance(secret, str) else secret
        except TokenError:
            secret_bytes = b""
        record = self._records.get(token_id)
        ok = verify_secret(secret_bytes, record.secret_hash if record else _DUMMY_HASH)
        if record is None or not ok or not record.usable(now):
            raise AuthError("invalid token")
        used = replace(record, used_at=now)
        self._records[token_id] = used
        self._save()
        return used

    def revoke(self, token_id: str) -> bool:
        """Revoke an unused token; False if the id is unknown."""
        record = self._records.get(token_id)
        if record is None:
            return False
        self._records[token_id] = replace(record, revoked=True)
        self._save()
        return True

    def records(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: (r.created, r.token_id))

    def _save(self) -> None:
        doc = {"version": 1, "tokens": [_to_json(r) for r in self.records()]}
        files.write_private(self._path, json.dumps(doc, indent=1).encode())


def _to_json(r: TokenRecord) -> dict[str, Any]:
    return {
        "id": r.token_id,
        "kind": r.kind.value,
        "name": r.name,
        "hash": r.secret_hash,
        "created": r.created.isoformat(),
        "expires": _iso(r.expires),
        "used_at": _iso(r.used_at),
        "revoked": r.revoked,
    }


def _load(path: Path) -> dict[str, TokenRecord]:
    if not path.exists():
        return {}
    try:
        doc = json.loads(files.read_file(path, private=True))
        if doc["version"] != 1:
            raise ValueError("unknown version")
        records = [
            TokenRecord(
                str(t["id"]),
                TokenKind(t["kind"]),
                str(t["name"]),
                str(t["hash"]),
                dt.datetime.fromisoformat(t["created"]),
                _from_iso(t["expires"]),
                _from_iso(t["used_at"]),
                bool(t["revoked"]),
            )
            for t in doc["tokens"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise PKIError(f"{path}: corrupt token registry") from exc
    return {r.token_id: r for r in records}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("timestamp must be a string")
    return dt.datetime.fromisoformat(value)
