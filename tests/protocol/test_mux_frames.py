"""yamux frame codec: round trips, split feeding, bad headers, mutation sweep."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import RemoteProtocolError
from core.protocol.mux import frames as wire
from core.protocol.mux.frames import (
    HEADER_SIZE,
    Flag,
    Frame,
    FrameType,
    MuxFrameDecoder,
    encode_frame,
    encode_header,
)

MAX = 1 << 20


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    ftype = draw(st.sampled_from(list(FrameType)))
    if ftype == FrameType.PING:
        return Frame(
            ftype, draw(st.sampled_from([Flag.SYN, Flag.ACK])), 0, draw(st.integers(0, 2**32 - 1))
        )
    if ftype == FrameType.GO_AWAY:
        return Frame(ftype, Flag.NONE, 0, draw(st.integers(0, 2)))
    flags = draw(st.sampled_from([0, 1, 2, 4, 8, 5, 6, 12, 9]))
    sid = draw(st.integers(1, 2**32 - 1))
    if ftype == FrameType.DATA:
        payload = draw(st.binary(max_size=300))
        return Frame(ftype, Flag(flags), sid, len(payload), payload)
    return Frame(ftype, Flag(flags), sid, draw(st.integers(0, 2**32 - 1)))


@given(st.lists(frames(), max_size=20))
def test_round_trip(items: list[Frame]) -> None:
    wire = b"".join(encode_frame(f) for f in items)
    assert MuxFrameDecoder(MAX).feed(wire) == items


@given(st.lists(frames(), max_size=12), st.binary(max_size=40), st.data())
def test_split_feeding_equals_one_chunk(
    items: list[Frame], tail: bytes, data: st.DataObject
) -> None:
    wire = b"".join(encode_frame(f) for f in items) + tail
    whole = MuxFrameDecoder(MAX)
    expected = whole.feed(wire)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    split = MuxFrameDecoder(MAX)
    got: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        got += split.feed(wire[prev:cut])
        prev = cut
    assert got == expected
    assert repr(split.error) == repr(whole.error)


def test_byte_at_a_time() -> None:
    items = [
        Frame(FrameType.DATA, Flag.SYN, 1, 5, b"hello"),
        Frame(FrameType.WINDOW_UPDATE, Flag.ACK, 2, 1000),
        Frame(FrameType.PING, Flag.SYN, 0, 7),
        Frame(FrameType.GO_AWAY, Flag.NONE, 0, 0),
    ]
    wire = b"".join(encode_frame(f) for f in items)
    dec = MuxFrameDecoder(MAX)
    got: list[Frame] = []
    for i in range(len(wire)):
        got += dec.feed(wire[i : i + 1])
    assert got == items


BAD = [
    ("wrong version", struct.pack(">BBHII", 1, 0, 0, 1, 0), "version"),
    ("unknown type", struct.pack(">BBHII", 0, 4, 0, 1, 0), "unknown frame type"),
    ("unknown flags", encode_header(0, 0x10, 1, 0), "unknown flags"),
    ("SYN with ACK", encode_header(1, 0x3, 1, 0), "SYN and ACK"),
    ("4 GiB data", encode_header(0, 0, 1, 2**32 - 1), "exceeds the largest window"),
    ("ping on a stream", encode_header(2, 1, 3, 0), "PING on stream 3"),
    ("go-away on a stream", encode_header(3, 0, 3, 0), "GO_AWAY on stream 3"),
    ("data on stream 0", encode_header(0, 0, 0, 0), "DATA on stream 0"),
    ("window update on stream 0", encode_header(1, 0, 0, 0), "WINDOW_UPDATE on stream 0"),
    ("ping without SYN or ACK", encode_header(2, 0, 0, 0), "want SYN or ACK"),
    ("go-away with flags", encode_header(3, 1, 0, 0), "go-away with flags"),
]


@pytest.mark.parametrize(("name", "wire", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_headers(name: str, wire: bytes, message: str) -> None:
    dec = MuxFrameDecoder(MAX)
    assert dec.feed(wire) == []
    assert isinstance(dec.error, RemoteProtocolError)
    assert message in str(dec.error)
    assert dec.feed(encode_frame(Frame(FrameType.PING, Flag.SYN, 0, 1))) == []  # stays failed


def test_huge_length_is_refused_before_allocating() -> None:
    tracemalloc.start()
    try:
        dec = MuxFrameDecoder(16 << 20)
        dec.feed(encode_header(0, 0, 1, 2**32 - 1) + b"x" * 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dec.error is not None
    assert dec.buffered == 0
    assert peak < 64 * 1024


def _sample_wire() -> list[bytes]:
    return [
        encode_frame(Frame(FrameType.DATA, Flag.SYN, 1, 4, b"abcd")),
        encode_frame(Frame(FrameType.WINDOW_UPDATE, Flag.ACK, 2, 65536)),
        encode_frame(Frame(FrameType.PING, Flag.SYN, 0, 99)),
        encode_frame(Frame(FrameType.GO_AWAY, Flag.NONE, 0, 0)),
        encode_frame(Frame(FrameType.DATA, Flag.FIN, 1, 0)),
        encode_frame(Frame(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0)),
    ]


def _decode_only(wire: bytes) -> None:
    dec = MuxFrameDecoder(1 << 20)
    for frame in dec.feed(wire):
        assert isinstance(frame, Frame)
    assert dec.error is None or isinstance(dec.error, RemoteProtocolError)
    assert dec.buffered <= len(wire)


def test_mutation_sweep_every_byte_value_at_every_header_offset() -> None:
    """Each frame type, each header offset, all 256 values: frames or a protocol error."""
    tracemalloc.start()
    try:
        for wire in _sample_wire():
            for offset in range(HEADER_SIZE):
                for value in range(256):
                    mutated = bytearray(wire)
                    mutated[offset] = value
                    _decode_only(bytes(mutated) + wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_mutation_sweep_bit_flips_and_truncations() -> None:
    stream = b"".join(_sample_wire())
    for bit in range(len(stream) * 8):
        mutated = bytearray(stream)
        mutated[bit // 8] ^= 1 << (bit % 8)
        _decode_only(bytes(mutated))
    for cut in range(len(stream)):
        dec = MuxFrameDecoder(1 << 20)
        dec.feed(stream[:cut])
        assert dec.error is None  # a truncation is only "not yet"


def test_mutated_input_to_a_session_only_yields_events() -> None:
    """A session fed mutated frames never raises: events, or a protocol error event."""
    from core.protocol.mux import MuxConfig, MuxSession
    from core.protocol.mux import events as ev

    wires = [
        encode_frame(Frame(FrameType.DATA, Flag.SYN, 1, 4, b"abcd")),
        encode_frame(Frame(FrameType.WINDOW_UPDATE, Flag.SYN, 3, 65536)),
        encode_frame(Frame(FrameType.DATA, Flag.FIN, 1, 2, b"zz")),
        encode_frame(Frame(FrameType.PING, Flag.SYN, 0, 99)),
        encode_frame(Frame(FrameType.WINDOW_UPDATE, Flag.RST, 3, 0)),
        encode_frame(Frame(FrameType.GO_AWAY, Flag.NONE, 0, 0)),
    ]
    stream = b"".join(wires)
    for offset in range(len(stream)):
        for value in (0x00, 0x01, 0x02, 0x04, 0x08, 0x7F, 0x80, 0xFF):
            mutated = bytearray(stream)
            mutated[offset] = value
            for is_client in (False, True):
                session = MuxSession(is_client, 0.0, MuxConfig(keepalive_interval=None))
                session.receive_data(bytes(mutated), 0.0)
                for event in session.events_received():
                    if isinstance(event, ev.SessionTerminated):
                        assert isinstance(event.error, (RemoteProtocolError, Exception))
                session.data_to_send(0.0)
                assert session.stream_count <= 2


def test_the_plain_constants_are_the_enum_values() -> None:
    """The session's hot path reads types and flags as plain ints (frames.DATA, SYN...)."""
    assert list(FrameType) == [wire.DATA, wire.WINDOW_UPDATE, wire.PING, wire.GO_AWAY]
    assert list(Flag) == [wire.SYN, wire.ACK, wire.FIN, wire.RST]
    assert wire.HEADER.size == HEADER_SIZE


def test_feed_raw_is_feed_without_the_objects() -> None:
    data = b"".join(
        encode_frame(f)
        for f in (
            Frame(FrameType.DATA, Flag.SYN, 1, 5, b"hello"),
            Frame(FrameType.WINDOW_UPDATE, Flag.ACK | Flag.FIN, 2, 1000),
            Frame(FrameType.PING, Flag.SYN, 0, 7),
        )
    )
    raw = MuxFrameDecoder(1 << 20).feed_raw(data)
    assert raw == [(0, 1, 1, 5, b"hello"), (1, 6, 2, 1000, b""), (2, 1, 0, 7, b"")]
    assert MuxFrameDecoder(1 << 20).feed(data) == [
        Frame(FrameType(t), Flag(f), sid, n, p) for t, f, sid, n, p in raw
    ]
