"""SPDY/3.1 codec and connection: round trips, chunking, mutation sweeps, dictionary."""

from __future__ import annotations

import hashlib
import random
import zlib
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import LocalProtocolError, RemoteProtocolError
from core.protocol import spdy
from core.protocol.spdy import (
    DataFrame,
    Frame,
    GoAway,
    HeaderCompressor,
    HeaderDecompressor,
    HeadersFrame,
    Ping,
    RstStream,
    Settings,
    SpdyConnection,
    SpdyFrameDecoder,
    SpdyFrameEncoder,
    SynReply,
    SynStream,
    UnknownControlFrame,
    WindowUpdate,
)

EXPECTED_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_dictionary_is_the_spdy3_dictionary() -> None:
    raw = resources.files("core.protocol").joinpath("data/spdy3-dictionary.bin").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == EXPECTED_SHA256
    assert len(raw) == 1423
    assert zlib.adler32(raw) == 0xE3C6A7C2
    assert spdy.header_dictionary() == raw


# -- strategies ----------------------------------------------------------------------

u31 = st.integers(0, 2**31 - 1)
stream_ids = st.integers(1, 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:", min_size=1, max_size=12)
values = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=20)
headers = st.dictionaries(names, st.lists(values, min_size=1, max_size=3), max_size=6)


frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(DataFrame, stream_ids, st.binary(max_size=300), st.booleans()),
    st.builds(
        SynStream,
        stream_ids,
        headers,
        st.booleans(),
        st.booleans(),
        u31,
        st.integers(0, 7),
        st.integers(0, 255),
    ),
    st.builds(SynReply, stream_ids, headers, st.booleans()),
    st.builds(HeadersFrame, stream_ids, headers, st.booleans()),
    st.builds(RstStream, stream_ids, u32),
    st.builds(
        Settings,
        st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**24 - 1), u32), max_size=4).map(
            tuple
        ),
        st.booleans(),
    ),
    st.builds(Ping, u32),
    st.builds(GoAway, u31, u32),
    st.builds(WindowUpdate, stream_ids, u31),
    st.builds(UnknownControlFrame, st.just(10), st.integers(0, 255), st.binary(max_size=40)),
)


def _encode_all(items: list[Frame]) -> bytes:
    encoder = SpdyFrameEncoder()
    return b"".join(encoder.encode(f) for f in items)


# -- properties ----------------------------------------------------------------------


@given(st.lists(frames, max_size=30))
@settings(max_examples=200, deadline=None)
def test_frames_round_trip_in_one_chunk(items: list[Frame]) -> None:
    decoder = SpdyFrameDecoder()
    decoder.receive_data(_encode_all(items))
    assert decoder.frames_received() == items


@given(st.lists(frames, max_size=12), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_any_chunking_gives_the_same_frames(items: list[Frame], rnd: random.Random) -> None:
    wire = _encode_all(items)
    whole = SpdyFrameDecoder()
    whole.receive_data(wire)
    expected = whole.frames_received()

    one_by_one = SpdyFrameDecoder()
    got: list[Frame] = []
    for i in range(len(wire)):
        one_by_one.receive_data(wire[i : i + 1])
        got += one_by_one.frames_received()
    assert got == expected

    chunked = SpdyFrameDecoder()
    got = []
    pos = 0
    while pos < len(wire):
        n = rnd.randint(0, 64)
        chunked.receive_data(wire[pos : pos + n])
        got += chunked.frames_received()
        pos += n
    assert got == expected


@given(st.lists(headers, min_size=1, max_size=60))
@settings(max_examples=50, deadline=None)
def test_header_blocks_share_one_zlib_context(blocks: list[dict[str, list[str]]]) -> None:
    compressor, decompressor = HeaderCompressor(), HeaderDecompressor()
    for block in blocks:
        assert decompressor.decompress(compressor.compress(block)) == block


def test_header_context_is_really_shared() -> None:
    compressor = HeaderCompressor()
    block = {"streamtype": ["stdout"], "port": ["8080"], "requestid": ["0"]}
    first = compressor.compress(block)
    second = compressor.compress(block)
    assert len(second) < len(first)  # the second block refers back to the first
    fresh = HeaderDecompressor()
    with pytest.raises(RemoteProtocolError):
        fresh.decompress(second)  # without the first block, the context is wrong


def test_header_values_are_joined_by_nul_and_names_lowercased() -> None:
    raw = spdy.encode_header_block({"X-Stream-Protocol-Version": ["v4", "v5"]})
    assert b"x-stream-protocol-version" in raw
    assert b"v4\x00v5" in raw
    assert spdy.decode_header_block(raw) == {"x-stream-protocol-version": ["v4", "v5"]}


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"\x00\x00\x00\x01",
        b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",  # empty name
        b"\x00\x00\x00\x00extra",
        b"\xff\xff\xff\xff",
    ],
)
def test_malformed_header_blocks(block: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        spdy.decode_header_block(block)


def test_header_bomb_is_refused() -> None:
    compressor = HeaderCompressor()
    huge = compressor.compress({"x": ["a" * (spdy.MAX_HEADER_BLOCK + 10)]})
    with pytest.raises(RemoteProtocolError, match="too large"):
        HeaderDecompressor().decompress(huge)


# -- mutation sweep ------------------------------------------------------------------


def _decode_or_error(wire: bytes) -> None:
    decoder = SpdyFrameDecoder()
    try:
        decoder.receive_data(wire)
        for frame in decoder.frames_received():
            assert isinstance(frame, Frame)
    except RemoteProtocolError:
        pass


def _sample_wire() -> bytes:
    return _encode_all(
        [
            SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
            SynReply(1, {}),
            DataFrame(1, b"hello", False),
            SynStream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}, fin=True),
            HeadersFrame(3, {"x": ["y"]}),
            Ping(1),
            Settings(((0, 7, 65536),)),
            WindowUpdate(3, 1000),
            RstStream(3, 5),
            GoAway(3, 0),
            DataFrame(3, b"", True),
        ]
    )


def test_mutation_sweep_bit_flips_and_truncations() -> None:
    wire = _sample_wire()
    for i in range(len(wire)):
        for bit in range(8):
            mutated = bytearray(wire)
            mutated[i] ^= 1 << bit
            _decode_or_error(bytes(mutated))
    for cut in range(len(wire)):
        _decode_or_error(wire[:cut])
        _decode_or_error(wire[cut:])


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_frames_or_remote_errors(wire: bytes) -> None:
    _decode_or_error(wire)


@given(st.lists(frames, min_size=1, max_size=6), st.data())
@settings(max_examples=200, deadline=None)
def test_mutated_frame_sequences(items: list[Frame], data: st.DataObject) -> None:
    wire = bytearray(_encode_all(items))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(wire))


def test_decoder_stays_broken_after_an_error() -> None:
    decoder = SpdyFrameDecoder()
    decoder.receive_data(b"\x80\x02\x00\x01\x00\x00\x00\x00")  # version 2
    with pytest.raises(RemoteProtocolError, match="version"):
        decoder.next_frame()
    with pytest.raises(RemoteProtocolError):
        decoder.receive_data(b"")


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00\x00\x00\x00\x00\x00\x00",  # data on stream 0
        b"\x00\x00\x00\x01\x02\x00\x00\x00",  # unknown data flag
        b"\x80\x03\x00\x06\x00\x00\x00\x03abc",  # short PING
        b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01",  # RST stream 0
        b"\x80\x03\x00\x04\x00\x00\x00\x04\x00\x00\x00\x02",  # SETTINGS count too big
    ],
)
def test_specific_malformed_frames(wire: bytes) -> None:
    decoder = SpdyFrameDecoder()
    decoder.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        decoder.frames_received()


def test_data_frame_length_limit_is_checked_from_the_header() -> None:
    decoder = SpdyFrameDecoder(max_data_length=10)
    decoder.receive_data(b"\x00\x00\x00\x01\x00\x00\x00\x0b")
    with pytest.raises(RemoteProtocolError, match="too large"):
        decoder.next_frame()


def test_encoder_refuses_out_of_range_values() -> None:
    encoder = SpdyFrameEncoder()
    with pytest.raises(LocalProtocolError):
        encoder.encode(DataFrame(2**31, b""))
    with pytest.raises(LocalProtocolError):
        encoder.encode(SynStream(1, {}, priority=8))
    with pytest.raises(LocalProtocolError):
        spdy.encode_header_block({"": ["x"]})


# -- connection ----------------------------------------------------------------------


def _pair() -> tuple[SpdyConnection, SpdyConnection]:
    return SpdyConnection(client_side=True), SpdyConnection(client_side=False)


def _move(src: SpdyConnection, dst: SpdyConnection) -> list[spdy.SpdyEvent]:
    dst.receive_data(src.data_to_send())
    return dst.events_received()


def test_exec_like_exchange() -> None:
    client, server = _pair()
    sid = client.open_stream({"streamtype": "stdin"})
    assert sid == 1
    events = _move(client, server)
    assert events == [spdy.StreamOpened(1, {"streamtype": ["stdin"]})]
    server.reply(1)
    assert _move(server, client) == [spdy.StreamReplied(1, {})]
    client.send_data(1, b"abc", fin=True)
    assert _move(client, server) == [spdy.StreamDataReceived(1, b"abc"), spdy.StreamEnded(1)]
    server.end_stream(1)
    assert _move(server, client) == [spdy.StreamEnded(1)]
    assert not server.is_open(1)
    assert not client.is_open(1)


def test_pings_are_echoed_only_when_the_peer_started_them() -> None:
    client, server = _pair()
    ping_id = client.ping()
    assert ping_id % 2 == 1
    assert _move(client, server) == [spdy.PingReceived(ping_id)]
    assert _move(server, client) == [spdy.PingAcked(ping_id)]
    assert client.data_to_send() == b""  # an ack is not echoed again


def test_bad_stream_ids_are_session_errors() -> None:
    client, server = _pair()
    client.open_stream({})
    client.open_stream({})
    wire = client.data_to_send()
    server.receive_data(wire)
    replay = SpdyConnection(client_side=False)
    encoder = SpdyFrameEncoder()
    replay.receive_data(encoder.encode(SynStream(3, {})))
    with pytest.raises(RemoteProtocolError):
        replay.receive_data(encoder.encode(SynStream(1, {})))  # not increasing
    even = SpdyConnection(client_side=False)
    with pytest.raises(RemoteProtocolError):
        even.receive_data(SpdyFrameEncoder().encode(SynStream(2, {})))  # server parity


def test_frames_for_unknown_streams_are_dropped_and_rst_reported() -> None:
    client, server = _pair()
    encoder = SpdyFrameEncoder()
    server.receive_data(encoder.encode(DataFrame(7, b"late")))
    assert server.events_received() == []
    sid = client.open_stream({})
    _move(client, server)
    client.reset_stream(sid)
    assert _move(client, server) == [spdy.RstStreamReceived(sid, spdy.RstStatus.CANCEL)]
    with pytest.raises(LocalProtocolError):
        server.send_data(sid, b"x")


def test_local_misuse_is_a_local_error() -> None:
    client, server = _pair()
    sid = client.open_stream({}, fin=True)
    with pytest.raises(LocalProtocolError):
        client.send_data(sid, b"x")
    _move(client, server)
    server.reply(sid)
    with pytest.raises(LocalProtocolError):
        server.reply(sid)


def test_go_away_is_reported() -> None:
    client, server = _pair()
    client.open_stream({})
    _move(client, server)
    server.go_away()
    assert _move(server, client) == [spdy.GoAwayReceived(1, 0)]


def test_large_data_is_split_into_legal_frames() -> None:
    client, server = _pair()
    sid = client.open_stream({})
    _move(client, server)
    payload = b"x" * (spdy.MAX_LENGTH + 5)
    client.send_data(sid, payload, fin=True)
    events = _move(client, server)
    data = b"".join(e.data for e in events if isinstance(e, spdy.StreamDataReceived))
    assert data == payload
    assert events[-1] == spdy.StreamEnded(sid)
