"""The ClientHello peek: real hellos, any fragmentation, garbage and mutations.

Hellos come from Python's own TLS client (``ssl.MemoryBIO``), as kubectl's would: SNI
and ALPN offers of ``h2,http/1.1`` (API connections) and ``http/1.1`` (upgrades).
"""

from __future__ import annotations

import itertools
import os
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.protocol.tls_hello import LIMIT, ClientHello, HelloPeek, parse_client_hello


def client_hello(server_name: str | None, alpn: list[str] | None) -> bytes:
    """The first flight of a real TLS client (one or more handshake records)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


API = client_hello("api.example", ["h2", "http/1.1"])
UPGRADE = client_hello("kubernetes.default.svc", ["http/1.1"])
BARE = client_hello(None, None)


def peek(*chunks: bytes, limit: int = LIMIT) -> HelloPeek:
    p = HelloPeek(limit)
    for chunk in chunks:
        p.receive_data(chunk)
    return p


def handshake_message(flight: bytes) -> bytes:
    """The handshake bytes inside a flight's records."""
    out, pos = b"", 0
    while pos < len(flight):
        length = int.from_bytes(flight[pos + 3 : pos + 5], "big")
        out += flight[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return out


def records(message: bytes, sizes: list[int]) -> bytes:
    """``message`` re-framed as handshake records of the given fragment sizes."""
    out, pos, i = b"", 0, 0
    while pos < len(message):
        size = max(1, sizes[i % len(sizes)] if sizes else len(message))
        fragment = message[pos : pos + size]
        out += bytes([22, 3, 1]) + len(fragment).to_bytes(2, "big") + fragment
        pos, i = pos + size, i + 1
    return out


@pytest.mark.parametrize(
    ("flight", "expected"),
    [
        (API, ClientHello("api.example", ("h2", "http/1.1"))),
        (UPGRADE, ClientHello("kubernetes.default.svc", ("http/1.1",))),
        (BARE, ClientHello(None, ())),
        (client_hello("127.0.0.1", ["http/1.1"]), ClientHello(None, ("http/1.1",))),
    ],
    ids=["api", "upgrade", "bare", "ip-literal"],
)
def test_real_hellos(flight: bytes, expected: ClientHello) -> None:
    whole = peek(flight)
    assert whole.done and whole.failure is None and whole.hello == expected
    one_by_one = peek(*[flight[i : i + 1] for i in range(len(flight))])
    assert one_by_one.hello == expected


def test_not_done_until_the_hello_is_complete() -> None:
    p = peek(API[:-1])
    assert not p.done and p.hello is None
    p.receive_data(API[-1:] + b"\x17\x03\x03\x00\x01x")  # then anything at all
    assert p.hello == ClientHello("api.example", ("h2", "http/1.1"))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 600), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
)
def test_any_record_fragmentation_and_any_read_boundaries(
    sizes: list[int], cuts: list[int]
) -> None:
    flight = records(handshake_message(API), sizes)
    points = sorted({0, len(flight), *(c % (len(flight) + 1) for c in cuts)})
    chunks = [flight[a:b] for a, b in itertools.pairwise(points)]
    assert peek(*chunks).hello == ClientHello("api.example", ("h2", "http/1.1"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 64))
def test_garbage_never_raises_and_ends_within_the_limit(data: bytes, step: int) -> None:
    p = HelloPeek(1024)
    for i in range(0, len(data), step):
        p.receive_data(data[i : i + step])
    assert p.done or len(data) < 1024
    if p.done:
        assert (p.hello is None) == (p.failure is not None)


def test_mutation_sweep() -> None:
    """Every byte of a real hello replaced by a few values: no exception, and a result
    or a give-up (or, for a longer length field, still waiting within the limit)."""
    for pos in range(len(API)):
        for value in {0x00, 0xFF, API[pos] ^ 0x01, API[pos] ^ 0x80}:
            mutated = API[:pos] + bytes([value]) + API[pos + 1 :]
            p = peek(mutated, limit=4096)
            if not p.done:
                p.receive_data(os.urandom(4096))
            assert p.done, pos
            assert (p.hello is None) == (p.failure is not None), pos


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a handshake"),
        (b"\x17\x03\x03\x00\x05hello", "not a handshake"),
        (b"\x16\x03\x03\x00\x00", "handshake record of 0 bytes"),
        (b"\x16\x03\x03\x48\x01", "handshake record of 18433 bytes"),
        (b"\x16\x02\x00\x00\x05", "not a TLS record"),
        (b"\x16\x03\x03\x00\x04\x02\x00\x00\x00", "not a ClientHello"),
    ],
)
def test_gives_up_at_once(first: bytes, why: str) -> None:
    p = peek(first)
    assert p.done and p.hello is None and p.failure is not None and why in p.failure


def test_buffering_is_bounded() -> None:
    """A hello that claims to be huge, then endless bytes: given up at the limit."""
    p = HelloPeek(2048)
    assert not p.receive_data(b"\x16\x03\x03\x40\x00\x01\x00\x3f\xfc")  # 16 KiB claimed
    done = [p.receive_data(b"\x00" * 1000) for _ in range(10)]
    assert done == [False, False, *[True] * 8]  # 9 + 3000 bytes reach the limit
    assert len(p._records) + len(p._message) <= 2048
    assert p.failure == "no complete ClientHello in the first 2048 bytes"


def test_parse_rejects_trailing_bytes_and_repeated_extensions() -> None:
    body = handshake_message(API)[4:]
    assert parse_client_hello(body).sni == "api.example"
    with pytest.raises(ValueError, match="after the extensions"):
        parse_client_hello(body + b"\x00")
    with pytest.raises(ValueError, match="truncated"):
        parse_client_hello(body[:40])
