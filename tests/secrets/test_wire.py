"""The credential socket's wire format: round trips, limits, and any bytes at all."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import RemoteProtocolError
from core.secrets import wire
from core.secrets.wire import Reply, ReplyError


def test_round_trips() -> None:
    assert wire.request_to_send("prod") == b'{"v":1,"cluster":"prod"}\n'
    assert wire.request_received(wire.request_to_send("prod")) == "prod"
    for reply in [Reply(token="t"), Reply(), *(Reply(error=e) for e in ReplyError)]:
        assert wire.reply_received(wire.reply_to_send(reply)) == reply


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"v":1,"cluster":"prod"}', ReplyError.BAD_REQUEST),  # no newline
        (b'{"v":1,"cluster":"prod"}\n\n', ReplyError.BAD_REQUEST),  # two lines
        (b'["prod"]\n', ReplyError.BAD_REQUEST),
        (b"\xff\n", ReplyError.BAD_REQUEST),
        (b'{"v":1,"cluster":"' + b"a" * 2000 + b'"}\n', ReplyError.BAD_REQUEST),
        (b'{"v":"1","cluster":"prod"}\n', ReplyError.VERSION),
        (b'{"cluster":"prod"}\n', ReplyError.VERSION),
        (b'{"v":1,"cluster":7}\n', ReplyError.BAD_REQUEST),
        (b'{"v":1,"cluster":"a b"}\n', ReplyError.BAD_REQUEST),
    ],
)
def test_bad_requests(line: bytes, error: ReplyError) -> None:
    assert wire.request_received(line) is error


def test_unknown_request_fields_are_ignored() -> None:
    assert wire.request_received(b'{"v":1,"cluster":"prod","later":true}\n') == "prod"


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":2,"token":"t"}\n',
        b'{"v":1,"token":""}\n',
        b'{"v":1,"token":["t"]}\n',
        b'{"v":1,"error":"unheard-of"}\n',
        b'{"v":1,"token":"' + b"t" * wire.MAX_REPLY + b'"}\n',
        b"[]\n",
    ],
)
def test_bad_replies(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        wire.reply_received(line)


@given(st.binary(max_size=2048))
def test_any_request_bytes_give_a_cluster_or_an_error(line: bytes) -> None:
    asked = wire.request_received(line)
    assert isinstance(asked, ReplyError) or wire.request_to_send(asked)


@given(st.binary(max_size=2048))
def test_any_reply_bytes_parse_or_raise_the_protocol_error(line: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        wire.reply_received(line)
