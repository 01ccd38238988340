"""Hostile requests and responses through the inspect endpoint, checked by a second parser.

Every case goes kubectl-side TLS → ``InspectEndpoint`` → upstream TLS → ``StrictBackend``
(raw sockets, its own strict parser). Each case asserts what the client sees and what
the backend parsed; every case also asserts 0 desyncs and 0 smuggled bytes at the
backend: nothing it received failed to parse, nothing was left over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from core.aio.inspect import InspectEndpoint
from tests.inspect.backend import Reply, Seen, StrictBackend
from tests.inspect.conftest import (
    ENDPOINT_TOKEN,
    UPSTREAM_TOKEN,
    Answer,
    ask,
    settle,
    start_endpoint,
)
from tests.support.certs import LoopbackPKI

SMUGGLED = b"GET /api/v1/secrets HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
WS_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
)
SPDY_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
)
WS_HEADERS = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
)
SPDY_HEADERS = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n" + "".join(
    f"X-Stream-Protocol-Version: {v}\r\n"
    for v in ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
)
EXEC = "/api/v1/namespaces/default/pods/web/exec?command=id&stdout=true"
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade", "proxy-authorization", "http2-settings"}  # fmt: skip


def request(
    headers: str = "",
    *,
    method: str = "GET",
    target: str = "/api/v1/namespaces",
    auth: bool = True,
    host: bool = True,
    body: bytes = b"",
    line: str | None = None,
) -> bytes:
    head = line if line is not None else f"{method} {target} HTTP/1.1"
    head += "\r\n"
    if host:
        head += "Host: @HOST@\r\n"
    if auth:
        head += f"Authorization: Bearer {ENDPOINT_TOKEN}\r\n"
    return (head + headers + "\r\n").encode() + body


@dataclass
class Case:
    id: str
    raw: bytes
    status: int | None
    forwarded: int = 1
    """Complete requests the backend must parse."""
    reply: Reply = field(default_factory=Reply)
    upgrade: bool = False
    closes: bool = False
    then: bytes = b""
    check: Check | None = None


Check = Callable[["Seen | None", "Answer"], None]


def both(*checks: Check) -> Check:
    def check(seen: Seen | None, answer: Answer) -> None:
        for one in checks:
            one(seen, answer)

    return check


def absent(*names: str) -> Check:
    def check(seen: Seen | None, _: Answer) -> None:
        assert seen is not None
        assert not (seen.names() & {n.lower() for n in names}), seen.headers

    return check


def present(name: str, *values: str) -> Check:
    def check(seen: Seen | None, _: Answer) -> None:
        assert seen is not None
        assert seen.values(name) == list(values), seen.headers

    return check


def answer_body(body: bytes) -> Check:
    def check(_: Seen | None, answer: Answer) -> None:
        assert answer.body == body

    return check


def body_is(body: bytes) -> Check:
    def check(seen: Seen | None, _: Answer) -> None:
        assert seen is not None and seen.body == body

    return check


def reply_lacks(*names: str) -> Check:
    def check(_: Seen | None, answer: Answer) -> None:
        assert not ({k for k, _ in answer.headers} & set(names)), answer.headers

    return check


# -- A: framing, smuggling, malformed heads: refused before anything reaches upstream -----

FRAMING = [
    Case("cl-te", request("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", method="POST",
         body=b"3\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("te-cl", request("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", method="POST",
         body=b"3\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("cl-te-case", request("Content-Length: 3\r\nTransfer-Encoding: Chunked\r\n",
         method="POST", body=b"3\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("te-gzip-chunked", request("Transfer-Encoding: gzip, chunked\r\n", method="POST"), 501, 0),
    Case("te-identity", request("Transfer-Encoding: identity\r\n", method="POST"), 501, 0),
    Case("te-double", request("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
         method="POST"), 501, 0),
    Case("te-space-name", request("Transfer-Encoding : chunked\r\n", method="POST"), 400, 0),
    Case("te-vertical-tab", request("Transfer-Encoding:\x0bchunked\r\n", method="POST"), 400, 0),
    Case("cl-double-different", request("Content-Length: 3\r\nContent-Length: 4\r\n",
         method="POST", body=b"abcd"), 400, 0),
    Case("cl-list-different", request("Content-Length: 3, 4\r\n", method="POST", body=b"abcd"),
         400, 0),
    Case("cl-negative", request("Content-Length: -1\r\n", method="POST"), 400, 0),
    Case("cl-plus", request("Content-Length: +3\r\n", method="POST", body=b"abc"), 400, 0),
    Case("cl-hex", request("Content-Length: 0x3\r\n", method="POST", body=b"abc"), 400, 0),
    Case("cl-inner-space", request("Content-Length: 3 3\r\n", method="POST", body=b"abc"), 400, 0),
    Case("cl-huge", request("Content-Length: 99999999999999999999999\r\n", method="POST"), 400, 0),
    Case("chunk-0x", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"0x3\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-negative", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"-3\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-huge", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-empty-size", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"\r\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-too-long", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"3\r\nabcd\r\n0\r\n\r\n" + SMUGGLED), 400, 0),
    Case("chunk-bare-lf", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"3\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-ext-bare-lf", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"3;a=b\nabc\r\n0\r\n\r\n"), 400, 0),
    Case("chunk-data-bare-lf-end", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"3\r\nabc\n0\r\n\r\n"), 400, 0),
    Case("chunk-smuggle-in-ext", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b'3;x="\r\n' + SMUGGLED + b'"\r\nabc\r\n0\r\n\r\n'), 400, 0),
    Case("bare-lf-request-line", request(line="GET /api HTTP/1.1\n".rstrip("\n")).replace(
         b"HTTP/1.1\r\n", b"HTTP/1.1\n", 1), 400, 0),
    Case("bare-lf-header", request("X-A: 1\nX-B: 2\r\n"), 400, 0),
    Case("bare-lf-terminator", request()[:-2] + b"\n", 400, 0),
    Case("bare-lf-everywhere", request().replace(b"\r\n", b"\n"), 400, 0),
    Case("bare-lf-smuggle", request("X-A: 1\n\n" + SMUGGLED.decode()), 400, 0),
    Case("bare-cr-header", request("X-A: 1\rX-B: 2\r\n"), 400, 0),
    Case("obs-fold-space", request("X-A: 1\r\n  folded\r\n"), 400, 0),
    Case("obs-fold-tab", request("X-A: 1\r\n\tfolded\r\n"), 400, 0),
    Case("obs-fold-host", request(host=False, headers="Host: \r\n @HOST@\r\n"), 400, 0),
    Case("obs-fold-authorization", request(auth=False, headers=(
         f"Authorization: Bearer\r\n {ENDPOINT_TOKEN}\r\n")), 400, 0),
    Case("obs-fold-te", request("Transfer-Encoding: \r\n chunked\r\n", method="POST"), 400, 0),
    Case("absolute-form-http", request(target="http://localhost/api"), 400, 0),
    Case("absolute-form-https", request(target="https://evil.example/api"), 400, 0),
    Case("double-slash-target", request(target="//evil.example/api"), 400, 0),
    Case("asterisk-form", request(method="OPTIONS", target="*"), 400, 0),
    Case("connect", request(method="CONNECT", target="evil.example:443"), 405, 0),
    Case("connect-origin-form", request(method="CONNECT", target="/x"), 405, 0),
    Case("nul-in-header", request("X-A: a\x00b\r\n"), 400, 0),
    Case("space-before-colon", request("X-A : b\r\n"), 400, 0),
    Case("space-in-name", request("X A: b\r\n"), 400, 0),
    Case("no-colon", request("X-A b\r\n"), 400, 0),
    Case("missing-host", request(host=False), 400, 0),
    Case("double-host", request("Host: evil.example\r\n"), 400, 0),
    Case("http10-no-host", request(line="GET /api HTTP/1.0", host=False), 505, 0),
    Case("http2-version", request(line="GET /api HTTP/2.0"), 505, 0),
    Case("http10-with-host", request(line="GET /api HTTP/1.0"), 505, 0),
    Case("oversize-split-head", request("X-Big: " + "a" * 40_000 + "\r\n"), 431, 0),
    Case("bad-method", request(line="G(T /api HTTP/1.1"), 400, 0),
    Case("leading-blank-line", b"\r\n" + request(), 400, 0),
    Case("oversize-header", request("X-Big: " + "a" * 100_000 + "\r\n"), 431, 0),
    Case("oversize-many-headers", request("".join(f"X-{i}: v\r\n" for i in range(4000))), 431, 0),
    Case("oversize-target", request(target="/" + "a" * 60_000), 431, 0),
    Case("connection-nominates-cl", request("Connection: content-length\r\nContent-Length: 3\r\n",
         method="POST", body=b"abc" + SMUGGLED), 400, 0),
    Case("connection-nominates-te", request("Connection: transfer-encoding\r\n"
         "Transfer-Encoding: chunked\r\n", method="POST", body=b"0\r\n\r\n"), 400, 0),
]  # fmt: skip

# -- B: hop-by-hop and Connection-nominated request headers ---------------------------

HOP_REQUESTS = [
    Case("close-and-nominated", request("Connection: close, X-Foo\r\nX-Foo: 1\r\nX-Keep: 2\r\n"),
         200, closes=True, check=both(absent("x-foo", *HOP), present("x-keep", "2"))),
    Case("keep-alive", request("Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"), 200,
         check=absent("keep-alive", "connection")),
    Case("several-connection-headers", request(
         "Connection: X-A\r\nX-A: 1\r\nConnection: X-B\r\nX-B: 2\r\n"), 200,
         check=absent("x-a", "x-b", "connection")),
    Case("empty-first-element", request("Connection: , X-Foo\r\nX-Foo: 1\r\n"), 200,
         check=absent("x-foo")),
    Case("empty-elements", request("Connection: ,,, X-Foo ,,\r\nX-Foo: 1\r\n"), 200,
         check=absent("x-foo")),
    Case("odd-spacing", request("Connection:   X-Foo  ,\tX-Bar\t\r\nX-Foo: 1\r\nX-Bar: 2\r\n"),
         200, check=absent("x-foo", "x-bar")),
    Case("odd-case", request("Connection: X-FOO\r\nx-foo: 1\r\n"), 200, check=absent("x-foo")),
    Case("odd-case-header", request("connection: x-foo\r\nX-FOO: 1\r\n"), 200,
         check=absent("x-foo")),
    Case("te-trailers", request("TE: trailers\r\nConnection: TE\r\n"), 200, check=absent("te")),
    Case("trailer", request("Trailer: X-T\r\n"), 200, check=absent("trailer")),
    Case("proxy-connection", request("Proxy-Connection: keep-alive\r\n"), 200,
         check=absent("proxy-connection")),
    Case("proxy-authorization", request("Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"), 200,
         check=absent("proxy-authorization")),
    Case("http2-settings", request("HTTP2-Settings: AAMAAABkAAQAAP__\r\n"), 200,
         check=absent("http2-settings")),
    Case("upgrade-without-token", request("Upgrade: websocket\r\n"), 200,
         check=absent("upgrade", "connection")),
    Case("nominated-sec-websocket-kept", request(
         "Connection: Sec-WebSocket-Key\r\nSec-WebSocket-Key: abc\r\n"), 200,
         check=present("sec-websocket-key", "abc")),
    Case("nominated-stream-protocol-kept", request(
         "Connection: X-Stream-Protocol-Version\r\n"
         "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"),
         200, check=present("x-stream-protocol-version", "v4.channel.k8s.io")),
    Case("nominated-authorization", request("Connection: Authorization\r\n"), 200,
         check=present("authorization", f"Bearer {UPSTREAM_TOKEN}")),
    Case("nominated-host", request("Connection: Host\r\n"), 200,
         check=present("host", "localhost")),
    Case("nominated-impersonate", request(
         "Connection: Impersonate-User\r\nImpersonate-User: a\r\n"),
         200, check=absent("impersonate-user")),
    Case("repeated-lines-kept", request("".join(
         f"X-Stream-Protocol-Version: v{i}\r\n" for i in range(5))), 200,
         check=present("x-stream-protocol-version", *(f"v{i}" for i in range(5)))),
    Case("repeated-accept-kept", request("Accept: a\r\nAccept: b\r\n"), 200,
         check=present("accept", "a", "b")),
    Case("chunked-body-reframed", request("Transfer-Encoding: chunked\r\n", method="POST",
         body=b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 200,
         check=both(present("transfer-encoding", "chunked"), body_is(b"abcde"))),
    Case("cl-duplicate-same", request("Content-Length: 3\r\nContent-Length: 3\r\n",
         method="POST", body=b"abc"), 200,
         check=both(present("content-length", "3"), body_is(b"abc"))),
    Case("pipelined-plain", request() + request(target="/api/v1/nodes"), 200, forwarded=2),
]  # fmt: skip


# -- C: hop-by-hop response headers ----------------------------------------------------


def response(headers: str, body: bytes = b"ok") -> Reply:
    return Reply(f"HTTP/1.1 200 OK\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)


HOP_RESPONSES = [
    Case("resp-nominated", request(), 200,
         reply=response("Connection: X-Secret\r\nX-Secret: s\r\n"),
         check=reply_lacks("x-secret")),
    Case("resp-several-connection", request(), 200,
         reply=response("Connection: X-A\r\nConnection: , X-B\r\nX-A: 1\r\nX-B: 2\r\n"),
         check=reply_lacks("x-a", "x-b")),
    Case("resp-keep-alive", request(), 200, reply=response("Keep-Alive: timeout=1\r\n"),
         check=reply_lacks("keep-alive")),
    Case("resp-proxy-authenticate", request(), 200, reply=response("Proxy-Authenticate: Basic\r\n"),
         check=reply_lacks("proxy-authenticate")),
    Case("resp-upgrade-on-200", request(), 200, reply=response("Upgrade: websocket\r\n"),
         check=reply_lacks("upgrade")),
    Case("resp-trailer", request(), 200, reply=response("Trailer: X-T\r\n"),
         check=reply_lacks("trailer")),
    Case("resp-chunked-reframed", request(), 200, reply=Reply(
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"),
         check=answer_body(b"ok!!!")),
    Case("resp-close", request(), 200, reply=response("Connection: close\r\n"), closes=True),
    Case("resp-302-not-followed", request(), 302, reply=Reply(
         b"HTTP/1.1 302 Found\r\nLocation: https://evil.example/\r\nContent-Length: 0\r\n\r\n")),
]  # fmt: skip


# -- D: refused upgrades with pipelined bytes, bad 101s, h2c, early bytes --------------

REFUSALS = [
    Case(f"refused-{kind}-{code}",
         request(headers, method=method, target=EXEC) + SMUGGLED,
         code, reply=Reply(f"HTTP/1.1 {code} X\r\nContent-Length: 2\r\n"
                           f"{'Location: /elsewhere' + chr(13) + chr(10) if code == 302 else ''}"
                           "\r\nno".encode()),
         upgrade=True, closes=True, then=SMUGGLED)
    for kind, headers, method in (("ws", WS_HEADERS, "GET"), ("spdy", SPDY_HEADERS, "POST"))
    for code in (400, 401, 403, 404, 500, 302)
]  # fmt: skip

BAD_101 = [
    Case("101-ws-got-spdy", request(WS_HEADERS, target=EXEC) + b"EARLY", 502,
         reply=Reply(SPDY_101), upgrade=True, closes=True),
    Case("101-spdy-got-ws", request(SPDY_HEADERS, method="POST", target=EXEC) + b"EARLY", 502,
         reply=Reply(WS_101), upgrade=True, closes=True),
    Case("101-unsolicited", request() + b"EARLY", 502, reply=Reply(WS_101), closes=True),
    Case("101-no-upgrade-header", request(WS_HEADERS, target=EXEC), 502,
         reply=Reply(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"),
         upgrade=True, closes=True),
    Case("101-no-connection-token", request(WS_HEADERS, target=EXEC), 502,
         reply=Reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
         upgrade=True, closes=True),
    Case("101-two-protocols", request(WS_HEADERS, target=EXEC), 502, reply=Reply(
         b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, h2c\r\n"
         b"Connection: Upgrade\r\n\r\n"),
         upgrade=True, closes=True),
    Case("h2c-stripped", request("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                 "HTTP2-Settings: AAMAAABkAAQAAP__\r\n"), 200,
         check=absent("upgrade", "http2-settings", "connection")),
    Case("h2c-then-101", request("Connection: Upgrade\r\nUpgrade: h2c\r\n"), 502,
         reply=Reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                     b"Connection: Upgrade\r\n\r\n"), closes=True),
    Case("h2c-and-websocket", request(
         WS_HEADERS.replace("Upgrade: websocket", "Upgrade: h2c, websocket"),
         target=EXEC), 101, reply=Reply(WS_101, upgrade=True), upgrade=True,
         check=present("upgrade", "websocket")),
    Case("two-upgrade-protocols", request(WS_HEADERS.replace("Upgrade: websocket",
         "Upgrade: websocket, SPDY/3.1"), target=EXEC), 400, 0, upgrade=True),
    Case("two-upgrade-headers", request(WS_HEADERS + "Upgrade: SPDY/3.1\r\n", target=EXEC), 400, 0,
         upgrade=True),
]  # fmt: skip

# -- E: the endpoint's own checks: credential, Host, Origin ----------------------------

GATE = [
    Case("no-credential", request(auth=False), 401, 0),
    Case("wrong-credential", request(auth=False, headers="Authorization: Bearer nope\r\n"), 401, 0),
    Case("basic-credential", request(auth=False, headers="Authorization: Basic Zm9vOmJhcg==\r\n"),
         401, 0),
    Case("two-credentials", request("Authorization: Bearer other\r\n"), 401, 0),
    Case("upstream-token-is-not-ours", request(auth=False,
         headers=f"Authorization: Bearer {UPSTREAM_TOKEN}\r\n"), 401, 0),
    Case("origin", request("Origin: https://evil.example\r\n"), 403, 0),
    Case("origin-null", request("Origin: null\r\n"), 403, 0),
    Case("evil-host", request(host=False, headers="Host: evil.example\r\n"), 403, 0),
    Case("host-without-port", request(host=False, headers="Host: 127.0.0.1\r\n"), 403, 0),
    Case("rebinding-host", request(host=False, headers="Host: attacker.example:@PORT@\r\n"),
         403, 0),
    Case("localhost-host", request(host=False, headers="Host: localhost:@PORT@\r\n"), 200),
    Case("refused-upgrade-no-credential", request(WS_HEADERS, target=EXEC, auth=False) + SMUGGLED,
         401, 0, upgrade=True, closes=True),
]  # fmt: skip

ALL = FRAMING + HOP_REQUESTS + HOP_RESPONSES + REFUSALS + BAD_101 + GATE


async def run_case(endpoint: InspectEndpoint, backend: StrictBackend, case: Case) -> None:
    backend.reply_for = lambda _: case.reply
    raw = case.raw.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode())
    raw = raw.replace(b"@PORT@", str(endpoint.port).encode())
    answer = await ask(
        endpoint, raw, upgrade=case.upgrade, wait_close=3.0 if case.closes else 0.3, then=case.then
    )
    await settle(backend)
    requests = [r for c in backend.conns for r in c.requests]
    assert answer.status == case.status, (answer.status, answer.body, answer.raw[:300])
    if case.closes or case.status not in (101, 200, 302):
        assert answer.closed, "the connection must end after this answer"
    assert len(requests) == case.forwarded, [(r.method, r.target) for r in requests]
    for conn in backend.conns:
        assert conn.desyncs == [], conn.desyncs
        assert conn.leftover == b"", conn.leftover[:200]
        if not case.reply.upgrade:
            assert conn.upgraded == b""
    if case.status not in (101,) and case.upgrade:
        assert SMUGGLED not in b"".join(c.upgraded + c.leftover for c in backend.conns)
    if answer.status is not None and answer.status >= 400 and not case.forwarded:
        assert b'"kind": "Status"' in answer.body, answer.body
    for seen in requests:
        assert seen.values("authorization") == [f"Bearer {UPSTREAM_TOKEN}"]
        assert seen.values("host") == ["localhost"]
    if case.check is not None:
        case.check(requests[0] if requests else None, answer)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
async def test_hostile(endpoint: InspectEndpoint, backend: StrictBackend, case: Case) -> None:
    await run_case(endpoint, backend, case)


# -- F: the identity-header matrix on plain, WebSocket and SPDY requests ---------------

IDENTITY = [
    "Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-Scopes",
    "IMPERSONATE-USER", "Impersonate_User", "X-Remote-User", "X-Remote-Group",
    "X-Remote-Extra-Scopes", "x-remote-user", "X_Remote_User",
]  # fmt: skip
KINDS = {
    "plain": (request, "GET", "/api/v1/namespaces", "", Reply()),
    "websocket": (request, "GET", EXEC, WS_HEADERS, Reply(WS_101, upgrade=True)),
    "spdy": (request, "POST", EXEC, SPDY_HEADERS, Reply(SPDY_101, upgrade=True)),
}


@pytest.mark.parametrize("own", [False, True], ids=["injected", "callers-own"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", IDENTITY)
async def test_identity_headers(
    inspect_state: object,
    backend: StrictBackend,
    backend_pki: LoopbackPKI,
    own: bool,
    kind: str,
    name: str,
) -> None:
    from pathlib import Path

    assert isinstance(inspect_state, Path)
    make, method, target, headers, reply = KINDS[kind]
    endpoint = await start_endpoint(inspect_state, backend, backend_pki, callers_own=own)
    try:
        raw = make(f"{headers}{name}: system:admin\r\n", method=method, target=target)

        def check(seen: Seen | None, _: Answer) -> None:
            assert seen is not None
            normal = name.lower()
            passes = own and normal.startswith("impersonate-")
            assert seen.values(normal) == (["system:admin"] if passes else []), seen.headers
            assert not any(k.startswith(("x-remote", "x_remote")) or "_" in k for k in seen.names())

        def refused(seen: Seen | None, answer: Answer) -> None:
            assert seen is None
            assert b"--credential-is-callers-own" in answer.body, answer.body
            assert b'"reason": "Forbidden"' in answer.body, answer.body

        # Impersonation is refused (403 Status) unless the credential is the caller's own.
        if not own and name.lower().replace("_", "-").startswith("impersonate-"):
            case = Case(f"{kind}-{name}", raw, 403, forwarded=0, reply=reply,
                        upgrade=kind != "plain", check=refused)  # fmt: skip
        else:
            case = Case(f"{kind}-{name}", raw, 101 if kind != "plain" else 200, reply=reply,
                        upgrade=kind != "plain", check=check)  # fmt: skip
        await run_case(endpoint, backend, case)
    finally:
        await endpoint.stop()


def test_case_count() -> None:
    assert len(ALL) + len(IDENTITY) * len(KINDS) * 2 >= 100
