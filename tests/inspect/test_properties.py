"""Property and mutation tests for the sans-I/O inspect parsers (proxy core and decoders)."""

from __future__ import annotations

import copy
import itertools
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.protocol import spdy
from core.protocol.http_proxy import HttpProxy, ProxyPolicy, ProxyState, UpgradeState
from core.protocol.inspect_decoders import (
    KEEP_SIZES,
    PassiveDecoder,
    SessionDetail,
    SpdyInspector,
    WebSocketInspector,
)
from core.protocol.k8s_channels import status_exit_code, status_success
from tests.inspect.backend import Desync, parse_request

POLICY = ProxyPolicy("tok", frozenset({"h:1"}), "api", "Bearer up")
REQUEST = (
    b"GET /api/v1/namespaces/default/pods/web/exec?command=ls&command=-l HTTP/1.1\r\n"
    b"Host: h:1\r\nAuthorization: Bearer tok\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: k\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
    b"Kubectl-Command: kubectl exec\r\nX-Remote-User: root\r\n\r\n"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
)


def ws_frame(payload: bytes, opcode: int = 2, fin: bool = True, mask: bytes | None = None) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def fragments(message: bytes, cuts: list[int], mask: bytes | None) -> bytes:
    points = sorted({c % (len(message) + 1) for c in cuts} | {0, len(message)})
    parts = [message[a:b] for a, b in itertools.pairwise(points)] or [b""]
    out = b""
    for i, part in enumerate(parts):
        out += ws_frame(part, 2 if i == 0 else 0, i == len(parts) - 1, mask)
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


messages = st.lists(
    st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300), st.lists(st.integers(0, 400))),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    out=messages,
    code=st.integers(0, 255),
    stdin=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_websocket_v5_any_fragmentation_and_chunking(
    out: list[tuple[int, bytes, list[int]]], code: int, stdin: bytes, cuts: list[int]
) -> None:
    server = fragments(b"\x01", [], None)  # the "ready" message
    for channel, data, frag in out:
        server += fragments(bytes([channel]) + data, frag, None)
    status = status_success() if code == 0 else status_exit_code(code)
    server += fragments(b"\x03" + status, cuts[:3], None) + ws_frame(b"\x03\xe8", 8)
    mask = os.urandom(4)
    client = fragments(b"\x00" + stdin, cuts[3:6], mask) + ws_frame(b"\xff\x00", 2, mask=mask)
    one, many = SessionDetail(), SessionDetail()
    WebSocketInspector(one, "v5.channel.k8s.io").server_data(server)
    whole = WebSocketInspector(one, "v5.channel.k8s.io")
    whole.server_data(server)
    whole.client_data(client)
    pieces = WebSocketInspector(many, "v5.channel.k8s.io")
    for part in chunked(server, cuts):
        pieces.server_data(part)
    for part in chunked(client, cuts):
        pieces.client_data(part)
    for detail in (one, many):
        assert detail.error is None
        assert detail.exit_code == code
        assert detail.close_code == 1000
        assert {"stdout", "error", "stdin"} <= detail.channels
    assert many.channels == one.channels


def spdy_session(code: int, out: bytes) -> tuple[bytes, bytes]:
    c, s = spdy.SpdyFrameEncoder(), spdy.SpdyFrameEncoder()
    up = b"".join(
        c.encode(spdy.SynStream(sid, {"streamtype": [kind]}))
        for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"))
    )
    up += c.encode(spdy.DataFrame(3, b"input", fin=True))
    down = b"".join(s.encode(spdy.SynReply(sid, {})) for sid in (1, 3, 5))
    down += s.encode(spdy.DataFrame(5, out, fin=True))
    status = status_success() if code == 0 else status_exit_code(code)
    down += s.encode(spdy.DataFrame(1, status[:10])) + s.encode(
        spdy.DataFrame(1, status[10:], True)
    )
    return up, down


@settings(max_examples=100, deadline=None)
@given(code=st.integers(0, 255), out=st.binary(max_size=500), cuts=st.lists(st.integers(0, 5000)))
def test_spdy_exec_any_chunking(code: int, out: bytes, cuts: list[int]) -> None:
    up, down = spdy_session(code, out)
    detail = SessionDetail()
    inspector = SpdyInspector(detail)
    for part in chunked(up, cuts):
        inspector.client_data(part)
    for part in chunked(down, cuts):
        inspector.server_data(part)
    assert detail.error is None
    assert detail.exit_code == code
    assert detail.channels == {"error", "stdin", "stdout"}


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 20_000)),
)
def test_port_forward_inside_websocket(sizes: list[int], cuts: list[int]) -> None:
    c, s = spdy.SpdyFrameEncoder(), spdy.SpdyFrameEncoder()
    up = down = b""
    for i, size in enumerate(sizes):
        rid = str(i)
        err, data = 4 * i + 1, 4 * i + 3
        for sid, kind in ((err, "error"), (data, "data")):
            up += c.encode(
                spdy.SynStream(sid, {"streamtype": [kind], "port": ["80"], "requestid": [rid]})
            )
        up += c.encode(spdy.DataFrame(data, b"u" * size))
        down += s.encode(spdy.DataFrame(data, b"d" * (size + 1), fin=True))
    mask = os.urandom(4)
    client = b"".join(ws_frame(p, 2, mask=mask) for p in [*chunked(up, cuts), b""])
    server = b"".join(ws_frame(p, 2) for p in chunked(down, cuts[::-1]))
    detail = SessionDetail()
    inspector = WebSocketInspector(detail, "SPDY/3.1+portforward.k8s.io")
    for part in chunked(client, cuts):
        inspector.client_data(part)
    for part in chunked(server, cuts):
        inspector.server_data(part)
    assert detail.error is None
    assert detail.ports == [80]
    assert [(p.bytes_up, p.bytes_down) for p in detail.connections] == [
        (size, size + 1) for size in sizes
    ]


def _fed_garbage(
    kind: str, side: bool, data: bytes, step: int
) -> tuple[SessionDetail, PassiveDecoder]:
    """``data`` to one side and reversed to the server, in pieces of ``step`` bytes."""
    detail = SessionDetail(kind="exec")  # every decoder counts an exec's channels
    inspector: PassiveDecoder = (
        SpdyInspector(detail)
        if kind == "spdy"
        else WebSocketInspector(detail, "SPDY/3.1+portforward.k8s.io" if kind == "pf" else None)
    )
    feed = inspector.client_data if side else inspector.server_data
    for start in range(0, len(data), step):
        feed(data[start : start + step])
    reversed_data = data[::-1]
    for start in range(0, len(reversed_data), step):
        inspector.server_data(reversed_data[start : start + step])
    return detail, inspector


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2000), side=st.booleans(), kind=st.sampled_from(["ws", "pf", "spdy"])
)
def test_decoders_survive_garbage(data: bytes, side: bool, kind: str) -> None:
    """Garbage never raises, reads the same however it is cut, and leaves a sane detail."""
    detail, inspector = _fed_garbage(kind, side, data, max(len(data), 1))
    byte_by_byte, _ = _fed_garbage(kind, side, data, 1)
    assert byte_by_byte == detail
    assert detail.error is None or (isinstance(detail.error, str) and detail.error)
    assert all(isinstance(name, str) for name in detail.channels)
    assert detail.exit_code is None or isinstance(detail.exit_code, int)
    from_client = len(data) if side else 0
    from_server = len(data) * (1 if side else 2)
    assert all(c.bytes_up >= 0 and c.bytes_down >= 0 for c in detail.connections)
    assert sum(c.bytes_up for c in detail.connections) <= from_client
    assert sum(c.bytes_down for c in detail.connections) <= from_server
    assert all(count > 0 for count in detail.events.values())
    assert all(n > 0 for n in detail.channel_bytes.values())
    assert sum(detail.channel_bytes.values()) <= from_client + from_server
    assert len(detail.sizes) <= min(detail.resizes, KEEP_SIZES)
    assert detail.bad_resizes >= 0
    assert detail.lines == 0  # no line counter among these decoders
    before = copy.deepcopy(detail)
    inspector.finish()
    inspector.client_data(data)
    inspector.server_data(data)
    assert detail == before  # after finish(), nothing more is decoded


def run_proxy(client: list[bytes], upstream: list[bytes]) -> tuple[HttpProxy, bytes, bytes]:
    proxy = HttpProxy(POLICY)
    to_client = to_upstream = b""
    for part in client:
        proxy.client_data_received(part, 0.0)
        if proxy.wants_upstream:
            proxy.upstream_connected()
        to_client += proxy.client_data_to_send()
        to_upstream += proxy.upstream_data_to_send()
    for part in upstream:
        proxy.upstream_data_received(part, 1.0)
        to_client += proxy.client_data_to_send()
        to_upstream += proxy.upstream_data_to_send()
    return proxy, to_client, to_upstream


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000)), early=st.binary(max_size=50))
def test_proxy_byte_splits_do_not_matter(cuts: list[int], early: bytes) -> None:
    whole = run_proxy([REQUEST + early], [SWITCH + b"glued"])
    split = run_proxy(chunked(REQUEST + early, cuts), chunked(SWITCH + b"glued", cuts))
    assert whole[1:] == split[1:]
    proxy, to_client, to_upstream = split
    assert proxy.state is ProxyState.UPGRADED
    assert to_client.endswith(b"\r\n\r\nglued")
    parsed = parse_request(to_upstream)
    assert parsed is not None
    seen, used = parsed
    assert to_upstream[used:] == early
    assert seen.values("x-remote-user") == [] and seen.values("authorization") == ["Bearer up"]
    (record,) = proxy.exchanges
    assert record.upgrade_state is UpgradeState.ACCEPTED
    assert record.kubectl_command == "kubectl exec"
    assert record.detail.command == ("ls", "-l")


@settings(max_examples=500, deadline=None)
@given(
    position=st.integers(0, len(REQUEST) - 1),
    value=st.integers(0, 255),
    smuggle=st.sampled_from([b"", b"GET /x HTTP/1.1\r\nHost: h:1\r\n\r\n"]),
)
def test_proxy_mutated_requests_never_desync(position: int, value: int, smuggle: bytes) -> None:
    """Any one-byte mutation: the proxy never raises, and whatever reaches the upstream
    before the 101 is exactly one strictly-valid request (or nothing)."""
    mutated = REQUEST[:position] + bytes([value]) + REQUEST[position + 1 :] + smuggle
    proxy, to_client, to_upstream = run_proxy([mutated], [])
    if not to_upstream:
        if not to_client:  # an incomplete head: still waiting for the rest
            assert proxy.state is ProxyState.HTTP
            return
        assert to_client.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5"))
        assert proxy.state is ProxyState.CLOSED
        return
    try:
        parsed = parse_request(to_upstream)
    except Desync as exc:  # pragma: no cover - that would be the bug we look for
        raise AssertionError(f"desync: {to_upstream!r}") from exc
    assert parsed is not None
    assert parsed[1] == len(to_upstream), "bytes beyond the first request reached upstream"


def test_status_is_json() -> None:
    proxy, to_client, _ = run_proxy([b"GET / HTTP/1.1\r\nHost: h:1\r\n\r\n"], [])
    body = to_client.split(b"\r\n\r\n", 1)[1]
    status = json.loads(body)
    assert (status["kind"], status["apiVersion"], status["code"]) == ("Status", "v1", 401)
    assert proxy.state is ProxyState.CLOSED


def test_port_forward_data_is_counted_not_unmasked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed: inside WebSocket, a port-forward's data payloads are skipped unread; only
    frame heads and control frames are unmasked (the inspector records counts)."""
    from core.protocol import inspect_decoders

    unmasked: list[int] = []
    real = inspect_decoders._unmask

    def counting(data: bytes, mask: bytes, offset: int) -> bytes:
        unmasked.append(len(data))
        return real(data, mask, offset)

    monkeypatch.setattr(inspect_decoders, "_unmask", counting)
    c = spdy.SpdyFrameEncoder()
    up = b"".join(
        c.encode(spdy.SynStream(sid, {"streamtype": [kind], "port": ["9"], "requestid": ["0"]}))
        for sid, kind in ((1, "error"), (3, "data"))
    )
    setup = len(up)
    up += c.encode(spdy.DataFrame(3, os.urandom(1 << 20)))
    mask = os.urandom(4)
    client = b"".join(ws_frame(up[i : i + 40_000], 2, mask=mask) for i in range(0, len(up), 40_000))
    detail = SessionDetail()
    inspector = WebSocketInspector(detail, "SPDY/3.1+portforward.k8s.io")
    for i in range(0, len(client), 65536):
        inspector.client_data(client[i : i + 65536])
    assert detail.error is None
    assert detail.connections[0].bytes_up == 1 << 20
    assert sum(unmasked) <= setup + 8, unmasked
