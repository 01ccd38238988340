"""The relay's token registry: one-time use, uniform refusals, private atomic storage."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from core.errors import AuthError, PKIError
from core.pki.registry import TOKENS_FILE, TokenRegistry
from core.pki.tokens import TokenKind

from .conftest import NOW

FP = "cd" * 32
RELAY = "relay.test:443"


def _issue(reg: TokenRegistry, name: str = "prod", **kw: object) -> tuple[str, bytes]:
    token = reg.issue(TokenKind.JOIN, name, relay=RELAY, ca_fingerprint=FP, now=NOW, **kw)  # type: ignore[arg-type]
    return token.token_id, token.secret


def test_consume_once(state_dir: Path) -> None:
    reg = TokenRegistry(state_dir)
    token_id, secret = _issue(reg)
    record = reg.consume(token_id, secret, NOW)
    assert (record.kind, record.name, record.used_at) == (TokenKind.JOIN, "prod", NOW)
    with pytest.raises(AuthError, match=r"^invalid token$"):
        reg.consume(token_id, secret, NOW)


def test_use_survives_a_restart(state_dir: Path) -> None:
    reg = TokenRegistry(state_dir)
    token_id, secret = _issue(reg)
    reg.consume(token_id, secret, NOW)
    with pytest.raises(AuthError):
        TokenRegistry(state_dir).consume(token_id, secret, NOW)


def test_secret_as_wire_text(state_dir: Path) -> None:
    reg = TokenRegistry(state_dir)
    token = reg.issue(TokenKind.CLIENT, "alice", relay=RELAY, ca_fingerprint=FP, now=NOW)
    assert reg.consume(token.token_id, token.secret_text, NOW).kind is TokenKind.CLIENT


@pytest.mark.parametrize("case", ["wrong", "unknown", "revoked", "expired", "malformed"])
def test_every_refusal_looks_the_same(state_dir: Path, case: str) -> None:
    reg = TokenRegistry(state_dir)
    token_id, secret = _issue(reg)
    now = NOW
    presented: bytes | str = secret
    if case == "wrong":
        presented = b"x" * 32
    elif case == "unknown":
        token_id = "f" * 16
    elif case == "revoked":
        assert reg.revoke(token_id)
    elif case == "expired":
        now = NOW + dt.timedelta(days=1)
    else:
        presented = "not base64!"
    with pytest.raises(AuthError) as info:
        reg.consume(token_id, presented, now)
    assert str(info.value) == "invalid token"
    if case != "unknown":
        assert reg.records()[0].used_at is None


def test_no_ttl_never_expires(state_dir: Path) -> None:
    reg = TokenRegistry(state_dir)
    token_id, secret = _issue(reg, ttl=None)
    reg.consume(token_id, secret, NOW + dt.timedelta(days=3650))


def test_file_is_private_and_holds_no_secret(state_dir: Path) -> None:
    reg = TokenRegistry(state_dir)
    token = reg.issue(TokenKind.JOIN, "prod", relay=RELAY, ca_fingerprint=FP, now=NOW)
    path = state_dir / TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token.secret_text not in text and token.secret.hex() not in text
    assert json.loads(text)["tokens"][0]["hash"].startswith("sha256:")
    assert reg.revoke("0" * 16) is False
    assert token.secret_text not in repr(reg.records())


def test_corrupt_file_is_an_error_naming_it(state_dir: Path) -> None:
    TokenRegistry(state_dir).issue(TokenKind.JOIN, "p", relay=RELAY, ca_fingerprint=FP, now=NOW)
    path = state_dir / TOKENS_FILE
    for junk in ["{", '{"version": 2, "tokens": []}', '{"version": 1, "tokens": [{}]}']:
        path.write_text(junk)
        with pytest.raises(PKIError, match="corrupt token registry"):
            TokenRegistry(state_dir)
