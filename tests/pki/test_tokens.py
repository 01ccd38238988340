"""Tokens: canonical round trip, strict parsing, mutation safety, redaction, hashing."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import TokenError
from core.pki.tokens import (
    Token,
    TokenKind,
    encode,
    hash_secret,
    parse,
    redact,
    split_relay_address,
    verify_secret,
)

FP = "ab" * 32
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

names = st.builds(
    lambda a, mid, b: a + mid + b if mid or b else a,
    st.sampled_from(NAME_CHARS),
    st.text(NAME_CHARS + "._-", max_size=20),
    st.text(NAME_CHARS, max_size=1),
).filter(lambda n: n[-1] not in "._-")
relays = st.sampled_from(
    ["relay.example.com:443", "10.0.0.1:8443", "[2001:db8::1]:443", "localhost:1"]
)
tokens = st.builds(
    Token,
    kind=st.sampled_from(TokenKind),
    relay=relays,
    ca_fingerprint=st.text("0123456789abcdef", min_size=64, max_size=64),
    name=names,
    token_id=st.text("0123456789abcdef", min_size=16, max_size=16),
    secret=st.binary(min_size=32, max_size=32),
)


def _raw(kind: str, payload: bytes) -> str:
    prefix = f"wicket-{kind}-v1."
    crc = zlib.crc32(prefix.encode() + payload).to_bytes(4, "big")
    return prefix + base64.urlsafe_b64encode(payload + crc).rstrip(b"=").decode()


def _payload(**fields: object) -> bytes:
    base: dict[str, object] = {
        "ca": FP,
        "id": "0123456789abcdef",
        "name": "prod",
        "relay": "relay.example.com:443",
        "secret": base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode(),
    }
    base.update(fields)
    return json.dumps(
        {k: v for k, v in base.items() if v is not None}, sort_keys=True, separators=(",", ":")
    ).encode()


@given(tokens)
def test_round_trip(token: Token) -> None:
    text = encode(token)
    assert text.startswith(f"wicket-{token.kind}-v1.")
    assert parse(text) == token
    assert parse(f"  {text}\n") == token


@given(tokens, st.data())
def test_a_mutation_errors_or_changes_nothing(token: Token, data: st.DataObject) -> None:
    text = encode(token)
    i = data.draw(st.integers(0, len(text) - 1))
    op = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
    char = data.draw(st.characters(codec="ascii"))
    mutated = {
        "replace": text[:i] + char + text[i + 1 :],
        "delete": text[:i] + text[i + 1 :],
        "insert": text[:i] + char + text[i:],
        "truncate": text[:i],
    }[op]
    try:
        parsed = parse(mutated)
    except TokenError as exc:
        assert token.secret_text not in str(exc)
        return
    assert parsed == token
    assert mutated.strip() == text


def test_every_single_character_substitution_is_detected() -> None:
    token = Token.new(TokenKind.JOIN, "relay.example.com:443", FP, "prod")
    text = encode(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    for i in range(len(text)):
        for c in alphabet:
            if c != text[i]:
                with pytest.raises(TokenError):
                    parse(text[:i] + c + text[i + 1 :])


@given(
    st.lists(
        st.one_of(
            st.text(max_size=20).map(lambda text: (text, False)),
            tokens.map(lambda token: (encode(token), True)),
        ),
        max_size=6,
    )
)
@example([("wicket-", False)])  # what Hypothesis found: text is not a token for looking like one
def test_redact_removes_every_token(parts: list[tuple[str, bool]]) -> None:
    """Among any text (which may itself look like the start of a token: ``wicket-``)."""
    out = redact(" ".join(text for text, _ in parts))
    tokens_in = [text for text, is_token in parts if is_token]
    for text in tokens_in:
        assert text not in out
        assert parse(text).secret_text not in out
    assert out.count("<redacted>") >= len(tokens_in)


def test_redact_examples() -> None:
    token = encode(Token.new(TokenKind.CLIENT, "r.test:443", FP, "alice"))
    assert redact(f"join with {token}, thanks") == "join with wicket-client-v1.<redacted>, thanks"
    assert redact("url?t=wicket-join-v9.abc&x=1") == "url?t=wicket-join-v9.<redacted>&x=1"
    assert redact("nothing here") == "nothing here"


def test_repr_hides_the_secret() -> None:
    token = Token.new(TokenKind.JOIN, "r.test:443", FP, "prod")
    assert token.secret_text not in repr(token)
    assert str(token.secret) not in repr(token)


def test_fresh_tokens_are_random() -> None:
    a = Token.new(TokenKind.JOIN, "r.test:443", FP, "prod")
    b = Token.new(TokenKind.JOIN, "r.test:443", FP, "prod")
    assert a.secret != b.secret and a.token_id != b.token_id
    assert len(a.secret) == 32 and len(a.secret_text) == 43


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not a Wicket token"),
        ("hello", "not a Wicket token"),
        ("wicket-join-v2.AAAA", "unknown token kind or version"),
        ("wicket-admin-v1.AAAA", "unknown token kind or version"),
        ("wicket-join-v1.", "checksum"),
        ("wicket-join-v1.A", "base64url"),
        ("wicket-join-v1.AAA=", "base64url"),
        ("wicket-join-v1.AA+A", "base64url"),
        ("wicket-join-v1.AB", "canonical base64url"),
        ("wicket-join-v1." + "A" * 2000, "too long"),
        (_raw("join", b"not json"), "not valid JSON"),
        (_raw("join", b"[1]"), "exactly the fields"),
        (_raw("join", _payload(extra="x")), "exactly the fields"),
        (_raw("join", _payload(secret=None)), "exactly the fields"),
        (_raw("join", _payload(name=5)), "must be strings"),
        (_raw("join", _payload(name="bad name")), "field name"),
        (_raw("join", _payload(ca="AB" * 32)), "field ca"),
        (_raw("join", _payload(ca="ab" * 31)), "field ca"),
        (_raw("join", _payload(id="0123")), "field id"),
        (_raw("join", _payload(secret="c2hvcnQ")), "32 bytes"),
        (_raw("join", _payload(relay="relay.example.com")), "host:port"),
        (_raw("join", _payload(relay="relay:0")), "host:port"),
        (_raw("join", _payload(relay="relay:70000")), "1-65535"),
        (_raw("join", _payload(relay="relay:\u00b2")), "host:port"),
        (_raw("join", _payload(relay="relay:080")), "host:port"),
        (_raw("join", _payload(relay="-bad-:443")), "relay host"),
        (_raw("join", _payload().replace(b":", b": ", 1)), "canonical form"),
    ],
)
def test_parse_errors_are_clear(text: str, problem: str) -> None:
    with pytest.raises(TokenError, match=problem) as info:
        parse(text)
    assert "c3Nzc3Nz" not in str(info.value)


def test_split_relay_address() -> None:
    assert split_relay_address("relay.example.com:443") == ("relay.example.com", 443)
    assert split_relay_address("[::1]:8443") == ("::1", 8443)
    assert split_relay_address("10.1.2.3:65535") == ("10.1.2.3", 65535)
    for bad in ["::1:443", "host:", ":443", "host:99999", "a b:1"]:
        with pytest.raises(TokenError):
            split_relay_address(bad)


def test_hash_and_verify_secret() -> None:
    secret = b"\x01" * 32
    stored = hash_secret(secret)
    assert stored.startswith("sha256:") and secret.hex() not in stored
    assert verify_secret(secret, stored)
    assert not verify_secret(b"\x02" * 32, stored)
    assert not verify_secret(secret, "sha256:" + "0" * 64)
    assert not verify_secret(secret, "garbage")
