"""One-time join and client tokens: issue, consume once, revoke (docs/tokens.md).

Only hashes are stored. Every refusal is the same ``AuthError("invalid token")``
whatever the reason, so a peer learns nothing about which ids exist, and an unknown id
still costs one hash and one constant-time compare. Whether a token is used is decided
by the store's single conditional update, so of two processes presenting one token at
once exactly one succeeds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from core.errors import AuthError, TokenError
from core.pki.tokens import Token, TokenKind, decode_secret, hash_secret, verify_secret
from core.registry.store import RegistryStore, Scope, TokenRecord

DEFAULT_TTL = dt.timedelta(days=1)
_DUMMY_HASH = hash_secret(b"\0" * 32)


class TokenRegistry:
    """The token rules over a store; every change is committed before it counts."""

    def __init__(self, store: RegistryStore) -> None:
        self._store = store

    def issue(
        self,
        kind: TokenKind,
        name: str,
        *,
        relay: str,
        ca_fingerprint: str,
        now: dt.datetime,
        ttl: dt.timedelta | None = DEFAULT_TTL,
        scope: Scope = frozenset(),
    ) -> Token:
        """A new token; the returned object is the only place its secret exists."""
        token = Token.new(kind, relay, ca_fingerprint, name)
        self._store.add_token(
            TokenRecord(
                token.token_id,
                kind,
                name,
                hash_secret(token.secret),
                now,
                None if ttl is None else now + ttl,
                scope=scope,
            )
        )
        return token

    def consume(self, token_id: str, secret: bytes | str, now: dt.datetime) -> TokenRecord:
        """Mark a token used and return its record; ``AuthError`` for any refusal."""
        try:
            secret_bytes = decode_secret(secret) if isinstance(secret, str) else secret
        except TokenError:
            secret_bytes = b""
        record = self._store.token(token_id)
        ok = verify_secret(secret_bytes, record.secret_hash if record else _DUMMY_HASH)
        if record is None or not ok or not self._store.use_token(token_id, now):
            raise AuthError("invalid token")
        return replace(record, used_at=now)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token; False if the id is unknown."""
        return self._store.revoke_token(token_id)

    def records(self) -> list[TokenRecord]:
        return self._store.tokens()
