"""The demo apiserver in-process: auth, negotiation answers, raw SPDY/WebSocket clients,
clean shutdown, PKI and the standalone entry point."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import h11
import psutil  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from ruamel.yaml import YAML
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message

from core.demo import DemoApiServer
from core.demo.apiserver import KUBECONFIG_OWNER
from core.demo.transport import websocket_accept
from core.kube import Mode
from core.kube.model import owner_marker
from core.protocol import k8s_channels as kc
from core.protocol import spdy
from tests.demo.kubectl import KUBECTL, Kubectl

EXEC = "/api/v1/namespaces/default/pods/web/exec"


def _client_context(
    server: DemoApiServer, *, cert: bool = False, alpn: bool = False
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    if cert:
        ctx.load_cert_chain(*server.client_cert_paths)
    if alpn:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def _open(
    server: DemoApiServer, ctx: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if server.tls and ctx is None:
        ctx = _client_context(server)
    return await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost" if ctx else None
    )


async def _request(
    server: DemoApiServer,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    ctx: ssl.SSLContext | None = None,
) -> tuple[
    h11.Response | h11.InformationalResponse,
    bytes,
    asyncio.StreamReader,
    asyncio.StreamWriter,
    bytes,
]:
    """Send one request; returns the head, body, the open stream and bytes past a 101."""
    reader, writer = await _open(server, ctx)
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("host", "localhost"), *(headers or [])]
    writer.write(conn.send(h11.Request(method=method, target=target, headers=all_headers)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    body = b""
    head: h11.Response | h11.InformationalResponse | None = None
    async with asyncio.timeout(10):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                return event, b"", reader, writer, conn.trailing_data[0]
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                assert head is not None
                return head, body, reader, writer, b""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[DemoApiServer]:
    server = DemoApiServer(tmp_path / "plain", tls=False)
    await server.start()
    yield server
    await server.stop()


# -- auth and TLS --------------------------------------------------------------------


async def test_no_credentials_gets_401_status(demo: DemoApiServer) -> None:
    head, body, _, writer, _ = await _request(demo, "GET", "/api/v1/namespaces/default/pods")
    await _close(writer)
    assert head.status_code == 401
    status = json.loads(body)
    assert status["kind"] == "Status"
    assert status["reason"] == "Unauthorized"
    assert status["code"] == 401


async def test_token_and_client_certificate_are_accepted(demo: DemoApiServer) -> None:
    auth = [("authorization", f"Bearer {demo.bearer_token}")]
    head, body, _, writer, _ = await _request(demo, "GET", "/version", auth)
    await _close(writer)
    assert head.status_code == 200
    assert json.loads(body)["gitVersion"].startswith("v1.32.")
    ctx = _client_context(demo, cert=True)
    head, _, _, writer, _ = await _request(demo, "GET", "/api/v1/namespaces", ctx=ctx)
    await _close(writer)
    assert head.status_code == 200
    bad = [("authorization", "Bearer nope")]
    head, _, _, writer, _ = await _request(demo, "GET", "/version", bad)
    await _close(writer)
    assert head.status_code == 401


async def test_alpn_never_selects_h2(demo: DemoApiServer) -> None:
    _, writer = await _open(demo, _client_context(demo, alpn=True))
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.selected_alpn_protocol() == "http/1.1"
    await _close(writer)


def test_server_certificate_names(tmp_path: Path) -> None:
    server = DemoApiServer(tmp_path)
    cert = x509.load_pem_x509_certificate(server.pki.server_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    assert {"localhost", "kubernetes.default.svc", "wicket-demo.local"} <= names
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert oct(server.pki.client_key.stat().st_mode & 0o777) == "0o600"
    again = DemoApiServer(tmp_path)
    assert again.ca_pem == server.ca_pem  # reused, so old kubeconfigs keep working


def test_kubeconfig_for_a_tunnel(tmp_path: Path) -> None:
    server = DemoApiServer(tmp_path)
    path = server.write_kubeconfig(
        tmp_path / "kc", "https://127.0.0.1:9999", context="x", tls_server_name="wicket-demo.local"
    )
    config = YAML(typ="safe").load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:9999"
    assert cluster["tls-server-name"] == "wicket-demo.local"
    assert base64.b64decode(cluster["certificate-authority-data"]) == server.ca_pem
    owned = [owner_marker(KUBECONFIG_OWNER, Mode.PASSTHROUGH)]
    assert config["users"][0]["user"] == {"token": server.bearer_token, "extensions": owned}
    assert config["current-context"] == "x"


# -- negotiation answers -------------------------------------------------------------

WS_HEADERS = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
]


async def test_websocket_refused_with_400_when_disabled(tmp_path: Path) -> None:
    async with DemoApiServer(tmp_path, tls=False, websocket=False) as server:
        headers = [*WS_HEADERS, ("sec-websocket-protocol", kc.V5_PROTOCOL)]
        head, body, _, writer, _ = await _request(server, "GET", f"{EXEC}?command=true", headers)
        await _close(writer)
        assert head.status_code == 400
        assert json.loads(body)["kind"] == "Status"


async def test_spdy_refused_when_disabled_and_unknown_protocols(tmp_path: Path) -> None:
    async with DemoApiServer(tmp_path, tls=False, spdy=False) as server:
        headers = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]
        head, _, _, writer, _ = await _request(server, "POST", f"{EXEC}?command=true", headers)
        await _close(writer)
        assert head.status_code == 400
    async with DemoApiServer(tmp_path, tls=False) as server:
        headers = [
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "channel.k8s.io"),
        ]
        head, _, _, writer, _ = await _request(server, "POST", f"{EXEC}?command=true", headers)
        await _close(writer)
        assert head.status_code == 403


async def test_not_found_answers(plain: DemoApiServer) -> None:
    for target, needle in [
        ("/api/v1/namespaces/default/pods/nope/exec?command=true", 'pods "nope" not found'),
        (f"{EXEC}?command=true&container=nope", "container nope is not valid"),
        ("/api/v1/namespaces/nope", 'namespaces "nope" not found'),
        ("/apis/batch/v1", "could not find"),
    ]:
        head, body, _, writer, _ = await _request(plain, "GET", target, WS_HEADERS)
        await _close(writer)
        assert head.status_code == 404, target
        assert needle in json.loads(body)["message"]


async def test_discovery_documents(plain: DemoApiServer) -> None:
    _, body, _, writer, _ = await _request(plain, "GET", "/api/v1")
    await _close(writer)
    names = {r["name"] for r in json.loads(body)["resources"]}
    assert {"pods", "pods/exec", "pods/attach", "pods/portforward", "pods/log"} <= names
    accept = [("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")]
    _, body, _, writer, _ = await _request(plain, "GET", "/api/v1/namespaces/default/pods", accept)
    await _close(writer)
    table = json.loads(body)
    assert table["kind"] == "Table"
    assert [row["cells"][0] for row in table["rows"]] == ["chat", "ticker", "web"]


# -- raw protocol clients ------------------------------------------------------------


async def _spdy_upgrade(
    server: DemoApiServer, target: str, protocols: list[str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes, str]:
    headers = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]
    headers += [("x-stream-protocol-version", p) for p in protocols]
    head, _, reader, writer, rest = await _request(server, "POST", target, headers)
    assert head.status_code == 101
    chosen = dict((k.decode(), v.decode()) for k, v in head.headers)["x-stream-protocol-version"]
    return reader, writer, rest, chosen


async def _pump_spdy(
    conn: spdy.SpdyConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> list[spdy.SpdyEvent]:
    writer.write(conn.data_to_send())
    data = await asyncio.wait_for(reader.read(65536), 10)
    if not data:
        return []
    conn.receive_data(data)
    return conn.events_received()


async def test_spdy_exec_with_our_own_client(plain: DemoApiServer) -> None:
    script = "cat;echo+oops+>%262;exit+7"
    target = f"{EXEC}?command=sh&command=-c&command={script}&stdin=true&stdout=true&stderr=true"
    reader, writer, rest, chosen = await _spdy_upgrade(
        plain, target, ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    )
    assert chosen == "v4.channel.k8s.io"
    assert rest == b""  # nothing before our first frame
    conn = spdy.SpdyConnection(client_side=True)
    ids = {
        kind: conn.open_stream({"streamtype": kind})
        for kind in ("error", "stdin", "stdout", "stderr")
    }
    ping = conn.ping()
    conn.send_data(ids["stdin"], b"piped", fin=True)
    got: dict[int, bytes] = {}
    ended: set[int] = set()
    replied: set[int] = set()
    acked = False
    try:
        async with asyncio.timeout(10):
            while ids["error"] not in ended:
                events = await _pump_spdy(conn, reader, writer)
                assert events or not reader.at_eof()
                for event in events:
                    if isinstance(event, spdy.StreamReplied):
                        replied.add(event.stream_id)
                    elif isinstance(event, spdy.StreamDataReceived):
                        got[event.stream_id] = got.get(event.stream_id, b"") + event.data
                    elif isinstance(event, spdy.StreamEnded):
                        ended.add(event.stream_id)
                    elif isinstance(event, spdy.PingAcked):
                        acked = event.ping_id == ping
    finally:
        await _close(writer)
    assert replied == set(ids.values())
    assert acked
    assert got[ids["stdout"]] == b"piped"
    assert got[ids["stderr"]] == b"oops\n"
    assert kc.exit_code_from_status(got[ids["error"]]) == 7
    assert {ids["stdout"], ids["stderr"]} <= ended


async def test_websocket_port_forward_tunnel_cut_anywhere(plain: DemoApiServer) -> None:
    headers = [*WS_HEADERS, ("sec-websocket-protocol", kc.PORTFORWARD_WEBSOCKET_PROTOCOL)]
    target = "/api/v1/namespaces/default/pods/web/portforward"
    head, _, reader, writer, rest = await _request(plain, "GET", target, headers)
    assert head.status_code == 101
    head_headers = dict((k.decode(), v.decode()) for k, v in head.headers)
    assert head_headers["sec-websocket-accept"] == websocket_accept("dGhlIHNhbXBsZSBub25jZQ==")
    assert head_headers["sec-websocket-protocol"] == kc.PORTFORWARD_WEBSOCKET_PROTOCOL
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(rest)
    conn = spdy.SpdyConnection(client_side=True)
    payload = os.urandom(300_000)
    for request_id in ("0", "1"):  # two connections through one session, to the echo port
        h = {"port": "7", "requestid": request_id}
        conn.open_stream({"streamtype": "error", **h}, fin=True)
        data_id = conn.open_stream({"streamtype": "data", **h})
        conn.send_data(data_id, payload, fin=True)
        wire = conn.data_to_send()
        cuts = [0, 1, 1, 7, 100, 5000, *range(20_000, len(wire), 65_000), len(wire)]
        for a, b in itertools.pairwise(cuts):
            writer.write(ws.send(Message(data=wire[a:b])))  # includes an empty message
        echoed = b""
        async with asyncio.timeout(15):
            while True:
                data = await reader.read(65536)
                assert data, "connection closed early"
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        conn.receive_data(bytes(event.data))
                done = False
                for ev in conn.events_received():
                    if isinstance(ev, spdy.StreamDataReceived) and ev.stream_id == data_id:
                        echoed += ev.data
                    if isinstance(ev, spdy.StreamEnded) and ev.stream_id == data_id:
                        done = True
                if done:
                    break
        assert echoed == payload
    writer.write(ws.send(CloseConnection(code=1000)))
    await _close(writer)


# -- lifecycle -----------------------------------------------------------------------


async def test_stop_kills_children_and_closes_everything(tmp_path: Path) -> None:
    me = psutil.Process()
    fds_before = me.num_fds()
    children_before = {p.pid for p in me.children(recursive=True)}
    server = DemoApiServer(tmp_path, tls=False)
    await server.start()
    kube = Kubectl(tmp_path / "home", server.write_kubeconfig(tmp_path / "kc", auth="none"))
    async with kube.background("exec", "web", "--", "sh", "-c", "echo started; sleep 300") as bg:
        await bg.read_until(b"started")
        async with kube.background("get", "pods", "-w") as watch:
            await watch.read_until(b"web")
            sleepers = [p for p in me.children(recursive=True) if "sleep" in p.name()]
            assert sleepers
            await server.stop()
            await watch.stop()
        await bg.stop()
    assert {p.pid for p in me.children(recursive=True)} <= children_before
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in sleepers)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert me.num_fds() <= fds_before


async def test_standalone_entry_point(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.demo",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        kubeconfig = Path(line.decode().strip())
        assert kubeconfig.exists()
        kube = Kubectl(tmp_path / "home", kubeconfig)
        result = await kube.run("exec", "web", "--", "echo", "standalone")
        assert result.out == "standalone\n", result.err
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert KUBECTL.exists()


async def test_websocket_exec_sequence_and_live_resize(plain: DemoApiServer) -> None:
    script = "stty+size;read+x;stty+size;exit+2"
    target = f"{EXEC}?command=sh&command=-c&command={script}&stdin=true&stdout=true&tty=true"
    headers = [*WS_HEADERS, ("sec-websocket-protocol", kc.V5_PROTOCOL)]
    head, _, reader, writer, rest = await _request(plain, "GET", target, headers)
    assert head.status_code == 101
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(rest)
    messages: list[bytes] = []
    closed: CloseConnection | None = None

    async def until(predicate: Callable[[], bool]) -> None:
        nonlocal closed
        async with asyncio.timeout(10):
            while not predicate():
                data = await reader.read(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        messages.append(bytes(event.data))
                    elif isinstance(event, CloseConnection):
                        closed = event
                        writer.write(ws.send(event.response()))
                if not data:
                    return

    def stdout() -> bytes:
        return b"".join(m[1:] for m in messages if m[:1] == b"\x01")

    writer.write(ws.send(Message(data=kc.encode_message(4, b'{"Width":80,"Height":24}'))))
    await until(lambda: b"24 80" in stdout())
    assert messages[0] == b"\x01"  # the "ready" message came first
    writer.write(ws.send(Message(data=kc.encode_message(4, b'{"Width":100,"Height":40}'))))
    await asyncio.sleep(0.2)
    writer.write(ws.send(Message(data=kc.encode_message(0, b"\r"))))
    await until(lambda: closed is not None)
    await _close(writer)
    assert b"40 100" in stdout()
    assert kc.exit_code_from_status(messages[-1][1:]) == 2
    assert messages[-1][:1] == b"\x03"
    assert closed is not None
    assert closed.code == 1000
