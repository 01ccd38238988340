"""The relay's token registry: one-time use, uniform refusals, private atomic storage."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
from pathlib import Path

import pytest

from core.errors import AuthError, RegistryError
from core.pki.tokens import TokenKind
from core.registry.sqlite import DB_FILE, SqliteStore
from core.registry.tokens import TokenRegistry
from tests.support.registry import Registry

from .conftest import NOW

FP = "cd" * 32
RELAY = "relay.test:443"


def _registry(registry: Registry | Path) -> TokenRegistry:
    """A registry on its own connection, as each process (relay, CLI) has."""
    if isinstance(registry, Registry):
        return TokenRegistry(registry.open(NOW))
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    return TokenRegistry(SqliteStore.open(registry, NOW))


def _issue(reg: TokenRegistry, name: str = "prod", **kw: object) -> tuple[str, bytes]:
    token = reg.issue(TokenKind.JOIN, name, relay=RELAY, ca_fingerprint=FP, now=NOW, **kw)  # type: ignore[arg-type]
    return token.token_id, token.secret


def test_consume_once(registry: Registry) -> None:
    reg = _registry(registry)
    token_id, secret = _issue(reg)
    record = reg.consume(token_id, secret, NOW)
    assert (record.kind, record.name, record.used_at) == (TokenKind.JOIN, "prod", NOW)
    with pytest.raises(AuthError, match=r"^invalid token$"):
        reg.consume(token_id, secret, NOW)


def test_use_survives_a_restart(registry: Registry) -> None:
    reg = _registry(registry)
    token_id, secret = _issue(reg)
    reg.consume(token_id, secret, NOW)
    with pytest.raises(AuthError):
        _registry(registry).consume(token_id, secret, NOW)


def test_secret_as_wire_text(registry: Registry) -> None:
    reg = _registry(registry)
    token = reg.issue(TokenKind.CLIENT, "alice", relay=RELAY, ca_fingerprint=FP, now=NOW)
    assert reg.consume(token.token_id, token.secret_text, NOW).kind is TokenKind.CLIENT


@pytest.mark.parametrize("case", ["wrong", "unknown", "revoked", "expired", "malformed"])
def test_every_refusal_looks_the_same(registry: Registry, case: str) -> None:
    reg = _registry(registry)
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


def test_no_ttl_never_expires(registry: Registry) -> None:
    reg = _registry(registry)
    later = NOW + dt.timedelta(days=3650)
    token_id, secret = _issue(reg, ttl=None)
    default_id, default_secret = _issue(reg, "lab")  # the default TTL: one day
    record = reg.consume(token_id, secret, later)
    assert (record.expires, record.used_at) == (None, later)
    with pytest.raises(AuthError, match=r"^invalid token$"):
        reg.consume(default_id, default_secret, later)


def test_file_is_private_and_holds_no_secret(state_dir: Path) -> None:
    reg = _registry(state_dir)
    token = reg.issue(TokenKind.JOIN, "prod", relay=RELAY, ca_fingerprint=FP, now=NOW)
    paths = sorted(state_dir.glob(DB_FILE + "*"))
    assert state_dir / DB_FILE in paths and len(paths) > 1  # the WAL beside it
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        data = path.read_bytes()
        assert token.secret_text.encode() not in data and token.secret not in data, path
        assert token.secret.hex().encode() not in data, path
    with sqlite3.connect(state_dir / DB_FILE) as conn:
        (stored,) = conn.execute("SELECT secret_hash FROM tokens").fetchone()
    assert stored.startswith("sha256:")
    assert reg.revoke("0" * 16) is False
    assert token.secret_text not in repr(reg.records())


def test_corrupt_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """A tokens.json the migration cannot read: refused, and the directory left as it was."""
    junks = ["{", '{"version": 2, "tokens": []}', '{"version": 1, "tokens": [{}]}']
    for n, junk in enumerate(junks):
        state_dir = tmp_path / str(n)
        state_dir.mkdir(mode=0o700)
        path = state_dir / "tokens.json"
        path.write_text(junk)
        path.chmod(0o600)
        with pytest.raises(RegistryError, match="corrupt token registry"):
            _registry(state_dir)
        assert [p.name for p in state_dir.iterdir()] == ["tokens.json"]
        assert path.read_text() == junk
