"""Stream preamble: round trips, trailing bytes kept, early refusal, mutation sweep."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import LocalProtocolError, RemoteProtocolError
from core.protocol.preamble import (
    MAX_REQUEST_SIZE,
    EndpointKind,
    RequestDecoder,
    Status,
    StatusDecoder,
    StreamRequest,
    StreamStatus,
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
names = st.builds(
    lambda a, mid: a + mid.rstrip("._-"),
    st.sampled_from(NAME_CHARS),
    st.text(NAME_CHARS + "._-", max_size=62),
)
requests = st.builds(
    StreamRequest,
    cluster=names,
    endpoint=st.sampled_from(EndpointKind),
    client=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=255),
)
statuses = st.sampled_from(Status).flatmap(
    lambda s: st.builds(
        StreamStatus,
        status=st.just(s),
        message=st.just("")
        if s is Status.OK
        else st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60),
    )
)

Decoder = RequestDecoder | StatusDecoder


def _feed(decoder: Decoder, chunks: list[bytes]) -> tuple[object, bytes] | None:
    """Feed chunks until the header is complete; return it and every byte after it."""
    for i, chunk in enumerate(chunks):
        result = decoder.receive_data(chunk)
        if result is not None:
            header, rest = result
            return header, rest + b"".join(chunks[i + 1 :])
    return None


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@given(requests, st.binary(max_size=50), st.lists(st.integers(0, 400), max_size=6))
def test_request_round_trip_keeps_trailing_bytes(
    request: StreamRequest, trailing: bytes, cuts: list[int]
) -> None:
    data = request.encode() + trailing
    assert len(data) - len(trailing) <= MAX_REQUEST_SIZE
    expected = (request, trailing)
    assert _feed(RequestDecoder(), [data]) == expected
    assert _feed(RequestDecoder(), [bytes([b]) for b in data]) == expected
    assert _feed(RequestDecoder(), _splits(data, [c for c in cuts if c <= len(data)])) == expected


@given(statuses, st.binary(max_size=50), st.lists(st.integers(0, 300), max_size=6))
def test_status_round_trip_keeps_trailing_bytes(
    status: StreamStatus, trailing: bytes, cuts: list[int]
) -> None:
    data = status.encode() + trailing
    expected = (status, trailing)
    assert _feed(StatusDecoder(), [data]) == expected
    assert _feed(StatusDecoder(), [bytes([b]) for b in data]) == expected
    assert _feed(StatusDecoder(), _splits(data, [c for c in cuts if c <= len(data)])) == expected


def _outcome(decoder: Decoder, data: bytes, *, bytewise: bool) -> object:
    """Only a header, "need more" or a RemoteProtocolError: no other exception, ever."""
    try:
        return _feed(decoder, [bytes([b]) for b in data] if bytewise else [data])
    except RemoteProtocolError as exc:
        assert exc.code in (Status.BAD_REQUEST, Status.UNSUPPORTED_VERSION)
        return "error"


SAMPLES: list[tuple[type[RequestDecoder] | type[StatusDecoder], bytes]] = [
    (
        RequestDecoder,
        StreamRequest("prod-eu", EndpointKind.LOCAL, "127.0.0.1:5123").encode() + b"\x16\x03",
    ),
    (RequestDecoder, StreamRequest("a", EndpointKind.PUBLIC).encode()),
    (StatusDecoder, StreamStatus(Status.OK).encode() + b"HTTP/1.1"),
    (StatusDecoder, StreamStatus(Status.AGENT_OFFLINE, "agent offline ü").encode()),
]


@pytest.mark.parametrize(("decoder_cls", "sample"), SAMPLES)
def test_mutation_sweep(
    decoder_cls: type[RequestDecoder] | type[StatusDecoder], sample: bytes
) -> None:
    mutants = []
    for i in range(len(sample)):
        for bit in range(8):
            m = bytearray(sample)
            m[i] ^= 1 << bit
            mutants.append(bytes(m))
    for i in range(min(len(sample), 6)):
        for value in range(256):
            m = bytearray(sample)
            m[i] = value
            mutants.append(bytes(m))
    mutants += [sample[:n] for n in range(len(sample))]
    for mutant in mutants:
        whole = _outcome(decoder_cls(), mutant, bytewise=False)
        assert _outcome(decoder_cls(), mutant, bytewise=True) == whole


def test_truncation_is_need_more() -> None:
    data = StreamRequest("prod", EndpointKind.LOCAL, "x").encode()
    for n in range(len(data)):
        assert RequestDecoder().receive_data(data[:n]) is None


def test_garbage_is_refused_after_one_byte() -> None:
    with pytest.raises(RemoteProtocolError, match="not a Wicket stream preamble") as info:
        RequestDecoder().receive_data(b"\x16")  # a TLS ClientHello sent to the wrong place
    assert info.value.code == Status.BAD_REQUEST
    with pytest.raises(RemoteProtocolError, match="unknown stream status"):
        StatusDecoder().receive_data(b"H")


@pytest.mark.parametrize(
    ("data", "problem", "code"),
    [
        (b"WK\x02\x01\x01\x00", "version 2", Status.UNSUPPORTED_VERSION),
        (b"WK\x01\x03\x01\x00", "endpoint kind", Status.BAD_REQUEST),
        (b"WK\x01\x01\x00\x00", "cluster name length 0", Status.BAD_REQUEST),
        (b"WK\x01\x01\x40\x00", "cluster name length 64", Status.BAD_REQUEST),
        (b"WK\x01\x01\x02\x00a.", "invalid cluster name", Status.BAD_REQUEST),
        (b"WK\x01\x01\x02\x00\xc3\xa9", "invalid cluster name", Status.BAD_REQUEST),
        (b"WK\x01\x01\x01\x01a\n", "client address", Status.BAD_REQUEST),
    ],
)
def test_request_errors(data: bytes, problem: str, code: Status) -> None:
    with pytest.raises(RemoteProtocolError, match=problem) as info:
        RequestDecoder().receive_data(data)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x08\x00", "unknown stream status 8"),
        (b"\x00\x01x", "ok status carries no message"),
        (b"\x02\x01\xff", "not UTF-8"),
        (b"\x02\x01\x07", "control characters"),
    ],
)
def test_status_errors(data: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        StatusDecoder().receive_data(data)


def test_decoders_are_single_use() -> None:
    decoder = StatusDecoder()
    assert decoder.receive_data(b"\x00\x00") == (StreamStatus(Status.OK), b"")
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"more")
    request = RequestDecoder()
    assert request.receive_data(StreamRequest("c", EndpointKind.LOCAL).encode()) is not None
    with pytest.raises(LocalProtocolError):
        request.receive_data(b"")


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(LocalProtocolError, match="cluster"):
        StreamRequest("bad name", EndpointKind.LOCAL).encode()
    with pytest.raises(LocalProtocolError, match="client address"):
        StreamRequest("c", EndpointKind.LOCAL, "é").encode()
    with pytest.raises(LocalProtocolError, match="client address"):
        StreamRequest("c", EndpointKind.LOCAL, "x" * 256).encode()
    with pytest.raises(LocalProtocolError, match="no message"):
        StreamStatus(Status.OK, "fine").encode()
    with pytest.raises(LocalProtocolError, match="control"):
        StreamStatus(Status.BUSY, "a\nb").encode()
    with pytest.raises(LocalProtocolError, match="255"):
        StreamStatus(Status.BUSY, "é" * 200).encode()
    assert StreamStatus(Status.BUSY).ok is False and StreamStatus(Status.OK).ok
