"""Kubernetes channel helpers: messages, Status objects, resize decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import RemoteProtocolError
from core.protocol import k8s_channels as kc


@given(st.integers(0, 254), st.binary(max_size=100))
def test_message_round_trip(channel: int, data: bytes) -> None:
    assert kc.decode_message(kc.encode_message(channel, data)) == kc.ChannelData(channel, data)


def test_close_and_malformed_messages() -> None:
    assert kc.decode_message(kc.encode_close(0)) == kc.ChannelClosed(0)
    for bad in (b"", b"\xff", b"\xff\x00\x00"):
        with pytest.raises(RemoteProtocolError):
            kc.decode_message(bad)


def test_status_objects() -> None:
    assert kc.exit_code_from_status(kc.status_success()) == 0
    assert kc.exit_code_from_status(kc.status_exit_code(3)) == 3
    assert kc.exit_code_from_status(kc.status_failure("boom")) is None
    status = json.loads(kc.status_exit_code(42))
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]
    with pytest.raises(RemoteProtocolError):
        kc.exit_code_from_status(b"not json")
    with pytest.raises(RemoteProtocolError):
        kc.exit_code_from_status(b"[]")


def test_choose_protocol_prefers_ours() -> None:
    offered = ["v5.channel.k8s.io", "v4.channel.k8s.io, v3.channel.k8s.io"]
    assert kc.choose_protocol(offered, kc.EXEC_SPDY_PROTOCOLS) == "v4.channel.k8s.io"
    assert kc.choose_protocol(["channel.k8s.io"], kc.EXEC_SPDY_PROTOCOLS) is None


def test_parse_resize() -> None:
    assert kc.parse_resize(b'{"Width":80,"Height":24}') == kc.TerminalSize(80, 24)
    bad_sizes = (b"nope", b"[]", b'{"Width":"x"}', b'{"Width":70000,"Height":1}')
    for bad in (*bad_sizes, b'{"Width":true,"Height":1}', b'{"Width":1,"Height":-1}'):
        with pytest.raises(RemoteProtocolError):
            kc.parse_resize(bad)


@given(
    st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=10),
    st.integers(1, 7),
)
@settings(max_examples=100)
def test_resize_stream_in_any_chunks(sizes: list[tuple[int, int]], step: int) -> None:
    wire = b"".join(json.dumps({"Width": w, "Height": h}).encode() + b"\n" for w, h in sizes)
    decoder = kc.ResizeDecoder()
    got = []
    for i in range(0, len(wire), step):
        got += decoder.receive_data(wire[i : i + step])
    assert got == [kc.TerminalSize(w, h) for w, h in sizes]


def test_resize_stream_garbage_is_an_error() -> None:
    decoder = kc.ResizeDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.receive_data(b"x" * (kc.ResizeDecoder.MAX_PENDING + 1))
