"""Control-stream codec: round trips, chunking invariance, strictness, mutation sweep."""

from __future__ import annotations

import base64
import json
import re
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import LocalProtocolError, RemoteProtocolError
from core.protocol.control import (
    MAX_MESSAGE_SIZE,
    MESSAGES,
    ControlDecoder,
    ErrorCode,
    Message,
    Sender,
    encode_message,
    redacted,
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PEM_BODY = "MIIBszCCAVmgAwIBAgIU\nAAAA+/==\n"

names = st.builds(
    lambda a, mid: a + mid.rstrip("._-"),
    st.sampled_from(NAME_CHARS),
    st.text(NAME_CHARS + "._-", max_size=30),
)
uints = st.integers(0, 2**53 - 1)
texts = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60)
addrs = st.none() | texts


def _pem(label: str) -> st.SearchStrategy[str]:
    return st.just(f"-----BEGIN {label}-----\n{PEM_BODY}-----END {label}-----\n")


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "version": uints,
    "role": st.sampled_from(["agent", "client"]),
    "name": names,
    "cluster": names,
    "token_id": st.text("0123456789abcdef", min_size=16, max_size=16),
    "secret": st.binary(min_size=32, max_size=32).map(
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    ),
    "csr_pem": _pem("CERTIFICATE REQUEST"),
    "cert_pem": _pem("CERTIFICATE"),
    "ca_pem": _pem("CERTIFICATE"),
    "target": texts,
    "public_address": addrs,
    "watch": st.booleans(),
    "state": st.sampled_from(["online", "offline", "removed"]),
    "count": uints,
    "stream_id": uints,
    "endpoint": st.sampled_from(["local", "public"]),
    "client": addrs,
    "bytes_in": uints,
    "bytes_out": uints,
    "duration_ms": uints,
    "reason": st.sampled_from(["eof", "reset", "timeout", "refused", "error"]),
    "code": st.sampled_from(list(ErrorCode)).map(str),
    "message": texts,
    "self": st.none() | st.text("0123456789abcdef", min_size=16, max_size=16),
    "members": st.lists(
        st.fixed_dictionaries(
            {"id": st.text("0123456789abcdef", min_size=16, max_size=16), "address": texts}
        ),
        max_size=5,
    ),
}


def messages_for(sender: Sender) -> st.SearchStrategy[Message]:
    kinds = sorted(k for k, spec in MESSAGES.items() if sender in spec.senders)
    return st.sampled_from(kinds).flatmap(
        lambda kind: st.fixed_dictionaries(
            {"type": st.just(kind), **{f: FIELDS[f] for f in MESSAGES[kind].fields}}
        )
    )


def _decode_all(
    chunks: list[bytes], sender: Sender, eof: bool = True
) -> tuple[list[Message], str | None]:
    """Feed chunks; return the messages delivered and the error (if any) they ended with."""
    decoder = ControlDecoder(sender)
    out: list[Message] = []
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (message := decoder.next_message()) is not None:
                out.append(message)
        if eof:
            decoder.receive_eof()
        out.extend(decoder.messages_received())
    except RemoteProtocolError as exc:
        return out, str(exc)
    return out, None


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def test_every_table_field_has_a_strategy() -> None:
    for spec in MESSAGES.values():
        assert set(spec.fields) <= set(FIELDS)


@given(st.sampled_from(list(Sender)).flatmap(lambda s: st.tuples(st.just(s), messages_for(s))))
def test_round_trip(pair: tuple[Sender, Message]) -> None:
    sender, message = pair
    data = encode_message(message, sender)
    assert _decode_all([data], sender) == ([message], None)


@given(st.lists(messages_for(Sender.PEER), max_size=5), st.binary(max_size=40), st.data())
def test_chunking_never_changes_the_result(
    messages: list[Message], junk: bytes, data: st.DataObject
) -> None:
    stream = b"".join(encode_message(m, Sender.PEER) for m in messages) + junk
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = _decode_all([stream], Sender.PEER)
    assert _decode_all(chunks, Sender.PEER) == whole
    assert _decode_all([bytes([b]) for b in stream], Sender.PEER) == whole
    assert whole[0][: len(messages)] == messages


def _samples() -> list[bytes]:
    return [
        encode_message(
            {"type": "hello", "version": 1, "role": "agent", "name": "prod-eu"}, Sender.PEER
        ),
        encode_message({"type": "list_clusters", "watch": True}, Sender.PEER),
        encode_message(
            {
                "type": "stream_closed",
                "stream_id": 7,
                "bytes_in": 10,
                "bytes_out": 2**40,
                "duration_ms": 5,
                "reason": "eof",
            },
            Sender.PEER,
        ),
        encode_message({"type": "error", "code": "forbidden", "message": "nö"}, Sender.PEER),
    ]


def _check_mutant(data: bytes) -> None:
    """Only messages or a RemoteProtocolError: no other exception, ever."""
    for chunks in ([data], [data[:5], data[5:]]):
        messages, _ = _decode_all(chunks, Sender.PEER)
        for m in messages:
            assert isinstance(m, dict) and isinstance(m["type"], str)


def test_mutation_sweep() -> None:
    for sample in _samples():
        for i in range(len(sample)):
            for bit in range(8):
                mutant = bytearray(sample)
                mutant[i] ^= 1 << bit
                _check_mutant(bytes(mutant))
        for i in range(4):
            for value in range(256):
                mutant = bytearray(sample)
                mutant[i] = value
                _check_mutant(bytes(mutant))
        for n in range(len(sample)):
            messages, error = _decode_all([sample[:n]], Sender.PEER)
            assert messages == [] and (error is not None) == (n > 0)


def test_declared_4_gib_is_refused_without_allocating() -> None:
    decoder = ControlDecoder(Sender.PEER)
    tracemalloc.start()
    try:
        decoder.receive_data(b"\xff\xff\xff\xff")
        with pytest.raises(RemoteProtocolError, match="length 4294967295"):
            decoder.next_message()
        for _ in range(64):
            decoder.receive_data(b"x" * 65536)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()


def test_oversize_refused_before_the_body() -> None:
    decoder = ControlDecoder(Sender.PEER)
    decoder.receive_data((MAX_MESSAGE_SIZE + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="outside"):
        decoder.next_message()
    exactly = {"type": "error", "code": "internal", "message": ""}
    body = json.dumps(exactly).encode()
    padded = body[:-1] + b" " * (MAX_MESSAGE_SIZE - len(body)) + b"}"
    assert _decode_all([_frame(padded)], Sender.PEER) == ([exactly], None)


def test_zero_length_refused() -> None:
    assert _decode_all([b"\0\0\0\0"], Sender.PEER)[1] is not None


def test_valid_messages_before_an_error_are_delivered() -> None:
    good = encode_message({"type": "list_clusters", "watch": False}, Sender.PEER)
    messages, error = _decode_all([good + _frame(b"[]") + good], Sender.PEER)
    assert messages == [{"type": "list_clusters", "watch": False}]
    assert error == "control message is not a JSON object"


def test_dead_decoder_stays_dead() -> None:
    decoder = ControlDecoder(Sender.PEER)
    decoder.receive_data(_frame(b"\xff"))
    for _ in range(2):
        with pytest.raises(RemoteProtocolError, match="UTF-8"):
            decoder.next_message()
        decoder.receive_data(encode_message({"type": "list_clusters", "watch": False}, Sender.PEER))
    decoder.receive_eof()
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"x")


def test_clean_eof_and_truncated_eof() -> None:
    assert _decode_all([], Sender.PEER) == ([], None)
    assert _decode_all([b"\0\0"], Sender.PEER) == ([], "control stream ended inside a message")


def test_messages_received_returns_what_precedes_an_error() -> None:
    good = encode_message({"type": "list_clusters", "watch": False}, Sender.PEER)
    decoder = ControlDecoder(Sender.PEER)
    decoder.receive_data(good + good + b"\0\0\0\0")
    assert len(decoder.messages_received()) == 2
    with pytest.raises(RemoteProtocolError):
        decoder.messages_received()


HELLO = '"type":"hello","version":1,"role":"agent","name":"p"'


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xc3\x28", "UTF-8"),
        (b"\xed\xa0\x80", "UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"type":"hello"} x', "not valid JSON"),
        (b"[" * 60000, "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),
        (
            b'{"type":"error","code":"internal","message":"x","message":"y"}',
            "not valid JSON",
        ),
        (b'{"type":"stream_closed","stream_id":NaN}', "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"hello"', "not a JSON object"),
        (b"{}", "no string 'type'"),
        (b'{"type":5}', "no string 'type'"),
        (b'{"type":"shutdown"}', "unknown message type"),
        (b'{"type":"__proto__"}', "unknown message type"),
        (
            b'{"type":"enrolled","role":"agent","name":"p","cert_pem":"","ca_pem":""}',
            "may not be sent",
        ),
        (b'{"type":"hello","version":1,"role":"agent"}', "missing fields \\['name'\\]"),
        (("{" + HELLO + ',"admin":true}').encode(), "unexpected fields \\['admin'\\]"),
        (("{" + HELLO.replace('"version":1', '"version":true') + "}").encode(), "'version'"),
        (("{" + HELLO.replace('"version":1', '"version":1.0') + "}").encode(), "'version'"),
        (("{" + HELLO.replace('"version":1', '"version":-1') + "}").encode(), "'version'"),
        (("{" + HELLO.replace('"version":1', '"version":1e400') + "}").encode(), "'version'"),
        (
            ("{" + HELLO.replace('"version":1', '"version":9007199254740992') + "}").encode(),
            "'version'",
        ),
        (("{" + HELLO.replace('"agent"', '"admin"') + "}").encode(), "'role'"),
        (("{" + HELLO.replace('"p"', '"../x"') + "}").encode(), "'name'"),
        (("{" + HELLO.replace('"p"', '"p\\u0000"') + "}").encode(), "'name'"),
        (b'{"type":"error","code":"internal","message":"\\ud800"}', "'message'"),
        (b'{"type":"error","code":"internal","message":"a\\u001bb"}', "'message'"),
        (b'{"type":"error","code":"teapot","message":""}', "'code'"),
        (b'{"type":"list_clusters","watch":1}', "'watch'"),
        (b'{"type":"renew","csr_pem":"-----BEGIN CERTIFICATE-----"}', "'csr_pem'"),
        (b'{"type":"renew","csr_pem":"-----BEGIN CERTIFICATE REQUEST-----\\u0000"}', "'csr_pem'"),
    ],
)
def test_strictness(body: bytes, problem: str) -> None:
    messages, error = _decode_all([_frame(body)], Sender.PEER)
    assert messages == []
    assert error is not None
    assert re.search(problem, error), error


def test_direction_is_enforced_both_ways() -> None:
    hello_ok = {"type": "hello_ok", "version": 1, "role": "client", "name": "a"}
    data = encode_message(hello_ok, Sender.RELAY)
    assert _decode_all([data], Sender.RELAY) == ([hello_ok], None)
    assert "may not be sent by the peer" in str(_decode_all([data], Sender.PEER)[1])
    with pytest.raises(LocalProtocolError, match="may not be sent"):
        encode_message(hello_ok, Sender.PEER)


def test_encode_refuses_invalid_and_oversize() -> None:
    with pytest.raises(LocalProtocolError, match="invalid field 'name'"):
        encode_message({"type": "hello", "version": 1, "role": "agent", "name": ""}, Sender.PEER)
    big = {"type": "stream_opened", "stream_id": 1, "cluster": "c", "endpoint": "local"}
    with pytest.raises(LocalProtocolError, match="missing fields"):
        encode_message(big, Sender.PEER)
    many = [{"type": "error", "code": "internal", "message": "é" * 1024}]
    assert len(encode_message(many[0], Sender.PEER)) < MAX_MESSAGE_SIZE


def test_redacted_hides_the_enrollment_secret() -> None:
    secret = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
    enroll = {
        "type": "enroll",
        "version": 1,
        "token_id": "0" * 16,
        "secret": secret,
        "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n",
    }
    assert _decode_all([encode_message(enroll, Sender.PEER)], Sender.PEER) == ([enroll], None)
    safe = redacted(enroll)
    assert secret not in repr(safe) and safe["token_id"] == "0" * 16


@pytest.mark.parametrize(
    "members",
    [
        [{"id": "0123456789abcdef", "address": "relay-1:7443", "extra": 1}],
        [{"id": "0123456789ABCDEF", "address": "relay-1:7443"}],
        [{"id": "0123456789abcdef", "address": "relay\n1"}],
        [{"id": "0123456789abcdef"}],
        [["0123456789abcdef", "relay-1:7443"]],
        {"id": "0123456789abcdef", "address": "relay-1:7443"},
        [{"id": f"{i:016x}", "address": "r:1"} for i in range(65)],
    ],
)
def test_members_list_is_strict(members: object) -> None:
    """``members`` (version 2): each entry exactly an id and an address, at most 64."""
    message = {"type": "members", "self": None, "members": members}
    with pytest.raises(LocalProtocolError):
        encode_message(message, Sender.RELAY)
    with pytest.raises(LocalProtocolError):
        encode_message({**message, "members": []}, Sender.PEER)  # relay to peer only
