"""What inspect mode records besides the bytes: headers (redacted at the source, bounded),
an exec's bytes per channel and its terminal sizes (malformed ones counted, never raised)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.protocol import spdy
from core.protocol.http_proxy import Exchange, HttpProxy, ProxyPolicy
from core.protocol.inspect_decoders import (
    KEEP_SIZES,
    MAX_RESIZE_LINE,
    ResizeReader,
    SessionDetail,
    SpdyInspector,
    WebSocketInspector,
)
from core.protocol.k8s_channels import TerminalSize, status_exit_code, status_success
from core.protocol.redaction import (
    MAX_BYTES,
    MAX_LINES,
    MAX_VALUE,
    REDACTED,
    RecordedHeaders,
    record_headers,
    redact,
)
from tests.inspect.test_properties import SWITCH, chunked, fragments, ws_frame

# -- redaction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "recorded"),
    [
        ("Authorization", "Bearer abc.def", f"Bearer {REDACTED}"),
        ("authorization", "  bearer\tabc", f"bearer {REDACTED}"),
        ("Authorization", "Basic dXNlcjpwdw==", f"Basic {REDACTED}"),
        ("Authorization", "abc.def", REDACTED),  # no scheme: the first word is the secret
        ("Authorization", "secret-token more", REDACTED),  # not a known scheme
        ("Authorization", "Bearer", REDACTED),
        ("Proxy-Authorization", "Negotiate YII=", f"Negotiate {REDACTED}"),
        ("Cookie", "session=abc", REDACTED),
        ("Set-Cookie", "session=abc; Path=/", REDACTED),
        ("X-Auth-Token", "abc", REDACTED),
        ("X-API-KEY", "abc", REDACTED),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZQ==", REDACTED),
        ("Client-Secret", "abc", REDACTED),
        ("X-Password", "abc", REDACTED),
        ("X-Forwarded-Auth", "by proxy: Bearer abc", REDACTED),  # a credential by its value
        ("X-Note", "basic\tabc", REDACTED),
        ("User-Agent", "kubectl/v1.33.0 (linux/amd64)", "kubectl/v1.33.0 (linux/amd64)"),
        ("Kubectl-Command", "kubectl exec", "kubectl exec"),
        ("Accept", "application/json", "application/json"),
        ("X-Note", "a basic idea", REDACTED),  # the safe side: it reads like a credential
        ("X-Note", "basically fine", "basically fine"),
    ],
)
def test_redaction(name: str, value: str, recorded: str) -> None:
    assert redact(name, value) == recorded


TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
header_names = st.text("abcdefghijklmnopqrstuvwxyz-_ABCXYZ0123456789", min_size=1, max_size=30)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(TOKEN_CHARS, min_size=12, max_size=200),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr"]),
    gap=st.sampled_from([" ", "  ", "\t", " \t "]),
    name=st.one_of(st.sampled_from(["Authorization", "authorization"]), header_names),
    before=header_values,
    after=st.text(" ,;x", max_size=3),
    others=st.lists(st.tuples(header_names, header_values), max_size=80),
    at=st.integers(0, 80),
)
def test_no_bearer_token_is_ever_recorded(
    token: str,
    scheme: str,
    gap: str,
    name: str,
    before: str,
    after: str,
    others: list[tuple[str, str]],
    at: int,
) -> None:
    """Whatever the header's name and wherever in its value, among any other headers,
    a bearer token is not in the record (any part of it, its names or its cut note)."""
    assume(all(token not in n + v for n, v in others) and token not in name)
    value = f"{before}{scheme}{gap}{token}{after}"
    lines = [(n.encode(), v.encode("latin-1")) for n, v in others]
    lines.insert(min(at, len(lines)), (name.encode(), value.encode("latin-1")))
    record = record_headers(lines)
    assert token not in repr(record)
    assert len(record.lines) + record.cut_lines == len(lines)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.tuples(header_names, st.text(st.characters(max_codepoint=0xFF), max_size=2000)),
        max_size=120,
    )
)
def test_records_are_bounded(lines: list[tuple[str, str]]) -> None:
    """At most ``MAX_LINES`` lines and ``MAX_BYTES`` characters; every line kept or
    counted, in order; no control character survives."""
    record = record_headers((n.encode(), v.encode("latin-1")) for n, v in lines)
    assert len(record.lines) <= MAX_LINES
    assert sum(len(n) + len(v) for n, v in record.lines) <= MAX_BYTES
    assert len(record.lines) + record.cut_lines == len(lines)
    assert [n for n, _ in record.lines] == [n for n, _ in lines[: len(record.lines)]]
    assert (record.cut is None) == (record.cut_lines == 0)
    for _, value in record.lines:
        assert all(ord(c) >= 0x20 and c != "\x7f" for c in value)
        assert len(value) <= MAX_VALUE + 40


def test_bounds_say_what_is_cut() -> None:
    many = record_headers((f"X-H{i}".encode(), b"v") for i in range(MAX_LINES + 3))
    assert len(many.lines) == MAX_LINES
    assert many.cut == "3 more lines (18 characters) not recorded"
    long = record_headers([(b"X-Long", b"a" * (MAX_VALUE + 10)), (b"X-Ctl", b"a\x01\x7fb")])
    assert long.lines[0][1] == "a" * MAX_VALUE + "… (10 more characters)"
    assert long.lines[1] == ("X-Ctl", "a\\x01\\x7fb")
    assert record_headers([]) == RecordedHeaders()
    full = [(b"X-A", b"a" * 500)] * (MAX_BYTES // 503) + [(b"X-B", b"b" * 500), (b"X-C", b"c")]
    record = record_headers(full)  # once one line did not fit, none after it is kept
    assert [n for n, _ in record.lines] == ["X-A"] * (MAX_BYTES // 503)
    assert (record.cut_lines, record.cut_bytes) == (2, 503 + 4)


# -- headers through the proxy -------------------------------------------------------

ENDPOINT_TOKEN = "endpoint-credential-" + "k" * 30
UPSTREAM = "upstream-credential-" + "u" * 30
POLICY = ProxyPolicy(ENDPOINT_TOKEN, frozenset({"h:1"}), "api", f"Bearer {UPSTREAM}")


def _request(auth: str, *extra: str) -> bytes:
    head = [
        "GET /api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true HTTP/1.1",
        "Host: h:1",
        f"Authorization: {auth}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Key: k",
        "Sec-WebSocket-Protocol: v5.channel.k8s.io",
        "User-Agent: kubectl/v1.33.0",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _run(request: bytes, answer: bytes) -> Exchange:
    proxy = HttpProxy(POLICY)
    proxy.client_data_received(request, 0.0)
    proxy.upstream_connected()
    sent_upstream = proxy.upstream_data_to_send()
    if answer:
        assert UPSTREAM.encode() in sent_upstream  # the upstream credential went out…
        proxy.upstream_data_received(answer, 1.0)
    (exchange,) = proxy.exchanges
    assert UPSTREAM not in repr(exchange)  # … and was never recorded
    assert ENDPOINT_TOKEN not in repr(exchange)
    return exchange


def test_the_proxy_records_both_heads_redacted() -> None:
    exchange = _run(
        _request(f"Bearer {ENDPOINT_TOKEN}", "Cookie: a=b", "X-Secret-Thing: s"), SWITCH
    )
    request = dict(exchange.request_headers.lines)
    assert request["Authorization"] == f"Bearer {REDACTED}"  # kubectl's own spelling
    assert (request["Cookie"], request["X-Secret-Thing"]) == (REDACTED, REDACTED)
    assert request["User-Agent"] == "kubectl/v1.33.0"
    assert request["Host"] == "h:1"
    response = dict(exchange.response_headers.lines)
    assert response["Upgrade"] == "websocket"
    assert response["Sec-WebSocket-Protocol"] == "v5.channel.k8s.io"


def test_a_refused_request_is_recorded_without_its_wrong_credential() -> None:
    exchange = _run(_request(f"Bearer {UPSTREAM}"), b"")  # not the endpoint's token
    assert exchange.status == 401
    assert dict(exchange.request_headers.lines)["Authorization"] == f"Bearer {REDACTED}"
    assert dict(exchange.response_headers.lines)["content-type"] == "application/json"


def test_a_plain_response_is_recorded() -> None:
    request = (
        f"GET /api/v1/pods HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer {ENDPOINT_TOKEN}\r\n\r\n"
    ).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: s=1\r\n"
    exchange = _run(request, answer + b"Content-Length: 2\r\n\r\n{}")
    assert exchange.response_headers.lines == (
        ("Content-Type", "application/json"),
        ("Set-Cookie", REDACTED),
        ("Content-Length", "2"),
    )


# -- exec: bytes per channel and resizes ----------------------------------------------


def _resize(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}).encode() + b"\n"


BAD_RESIZES = [
    b"{",
    b"[]",
    b"null",
    b'{"Width":"80","Height":24}',
    b'{"Width":true,"Height":24}',
    b'{"Width":80,"Height":70000}',
    b'{"Width":-1,"Height":2}',
    b'{"Width":80.5,"Height":24}',
    b"\xff\xfe{",
    b"x" * (MAX_RESIZE_LINE + 1),
    b'{"Width":80,' + b" " * MAX_RESIZE_LINE + b'"Height":24}',  # JSON, but too long
]


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=12),
    bad=st.lists(st.sampled_from(BAD_RESIZES), max_size=4),
    stdin=st.lists(st.binary(max_size=300), max_size=4),
    out=st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=400)), max_size=5),
    code=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
)
def test_v5_bytes_per_channel_and_resizes(
    sizes: list[tuple[int, int]],
    bad: list[bytes],
    stdin: list[bytes],
    out: list[tuple[int, bytes]],
    code: int,
    cuts: list[int],
) -> None:
    """Each channel's payload bytes (not its channel byte), each size in order (the last
    ``KEEP_SIZES`` kept), each malformed resize counted: however fragmented and cut."""
    mask = os.urandom(4)
    client = b"".join(fragments(b"\x00" + data, cuts[:2], mask) for data in stdin)
    resizes = [_resize(w, h)[: -1 if i % 2 else None] for i, (w, h) in enumerate(sizes)]
    resizes += [line + b"\n" for line in bad]  # a v5 message ends its line, newline or not
    for line in resizes:
        client += fragments(b"\x04" + line, cuts[2:4], mask)
    status = status_exit_code(code) if code else status_success()
    server = b"".join(fragments(bytes([ch]) + data, cuts[4:6], None) for ch, data in out)
    server += fragments(b"\x03" + status, cuts[6:8], None) + ws_frame(b"\x03\xe8", 8)
    detail = SessionDetail(kind="exec")
    inspector = WebSocketInspector(detail, "v5.channel.k8s.io")
    for part in chunked(client, cuts):
        inspector.client_data(part)
    for part in chunked(server, cuts[::-1]):
        inspector.server_data(part)
    assert detail.error is None and detail.exit_code == code
    expected = {
        "stdin": sum(map(len, stdin)),
        "stdout": sum(len(d) for ch, d in out if ch == 1),
        "stderr": sum(len(d) for ch, d in out if ch == 2),
        "resize": sum(map(len, resizes)),
        "error": len(status),
    }
    assert detail.channel_bytes == {k: v for k, v in expected.items() if v}
    assert detail.resizes == len(sizes)
    assert detail.sizes == [TerminalSize(w, h) for w, h in sizes][-KEEP_SIZES:]
    assert detail.bad_resizes == len(bad)


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=10),
    out=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 3000), max_size=10),
)
def test_spdy_bytes_per_channel_and_resizes(
    sizes: list[tuple[int, int]], out: bytes, cuts: list[int]
) -> None:
    """SPDY's resize stream is one byte stream: lines cut across data frames still
    read as sizes; each stream's bytes count under its ``streamtype``."""
    c, s = spdy.SpdyFrameEncoder(), spdy.SpdyFrameEncoder()
    up = b"".join(
        c.encode(spdy.SynStream(sid, {"streamtype": [kind]}))
        for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize"))
    )
    wire = b"".join(_resize(w, h) for w, h in sizes)[:-1]  # the stream's end ends a line
    frames = chunked(wire, cuts)
    for i, piece in enumerate(frames):
        up += c.encode(spdy.DataFrame(7, piece, fin=i == len(frames) - 1))
    up += c.encode(spdy.DataFrame(3, b"input", fin=True))
    status = status_exit_code(4)
    down = s.encode(spdy.DataFrame(5, out, fin=True)) + s.encode(spdy.DataFrame(1, status, True))
    detail = SessionDetail(kind="exec")
    inspector = SpdyInspector(detail)
    for part in chunked(up, cuts[::-1]):
        inspector.client_data(part)
    for part in chunked(down, cuts):
        inspector.server_data(part)
    assert detail.error is None and detail.exit_code == 4
    expected = {"stdin": 5, "stdout": len(out), "resize": len(wire), "error": len(status)}
    assert detail.channel_bytes == {k: v for k, v in expected.items() if v}
    assert detail.resizes == len(sizes)
    assert detail.sizes == [TerminalSize(w, h) for w, h in sizes][-KEEP_SIZES:]
    assert detail.bad_resizes == 0


def test_spdy_port_forward_streams_are_no_exec_channels() -> None:
    """A port-forward's ``error`` stream is a connection's, not an exec's error channel."""
    c = spdy.SpdyFrameEncoder()
    up = b"".join(
        c.encode(spdy.SynStream(sid, {"streamtype": [kind], "port": ["80"], "requestid": ["0"]}))
        for sid, kind in ((1, "error"), (3, "data"))
    )
    detail = SessionDetail(kind="portforward")
    inspector = SpdyInspector(detail)
    inspector.client_data(up + c.encode(spdy.DataFrame(3, b"GET /", fin=True)))
    assert detail.channel_bytes == {}
    assert detail.connections[0].bytes_up == 5


def _oracle(line: bytes) -> TerminalSize | str | None:
    """What a resize line is, decided apart from the reader: a size, nothing (blank),
    or ``"bad"``."""
    if len(line) > MAX_RESIZE_LINE:
        return "bad"
    if not line.strip():
        return None
    try:
        obj = json.loads(line.strip())
    except ValueError:
        return "bad"
    if not isinstance(obj, dict):
        return "bad"
    width, height = obj.get("Width", 0), obj.get("Height", 0)
    if type(width) is not int or type(height) is not int:
        return "bad"
    return TerminalSize(width, height) if 0 <= width < 65536 and 0 <= height < 65536 else "bad"


resize_lines = st.one_of(
    st.tuples(st.integers(-5, 70_000), st.integers(-5, 70_000)).map(
        lambda s: json.dumps({"Width": s[0], "Height": s[1]}).encode()
    ),
    st.sampled_from(BAD_RESIZES),
    st.binary(max_size=MAX_RESIZE_LINE + 20).map(lambda b: b.replace(b"\n", b"")),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(st.sampled_from(["Width", "Height", "x"]), st.integers(-3, 3)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(resize_lines, max_size=20), step=st.integers(1, 64))
def test_resize_reader_against_an_oracle(lines: list[bytes], step: int) -> None:
    """Any lines, in any pieces: sizes counted and kept in order, the rest counted as
    bad, nothing raised; the bounds hold."""
    detail = SessionDetail()
    reader = ResizeReader(detail)
    wire = b"".join(line + b"\n" for line in lines)
    for start in range(0, len(wire), step):
        reader.receive(wire[start : start + step])
    verdicts = [_oracle(line) for line in lines]
    good = [v for v in verdicts if isinstance(v, TerminalSize)]
    assert detail.resizes == len(good)
    assert detail.sizes == good[-KEEP_SIZES:]
    assert detail.bad_resizes == verdicts.count("bad")


def test_resize_reader_ends_a_pending_line() -> None:
    """A v5 message or a SPDY stream that ends without a newline still ends its line."""
    detail = SessionDetail()
    reader = ResizeReader(detail)
    reader.receive(b'{"Width":100,')
    reader.receive(b'"Height":30}')
    assert detail.resizes == 0
    reader.end()
    reader.receive(b"x" * (MAX_RESIZE_LINE + 1))
    reader.end()
    reader.end()  # nothing pending: nothing counted
    assert (detail.sizes, detail.bad_resizes) == ([TerminalSize(100, 30)], 1)
