"""The real kubectl through the whole tunnel with the local endpoint in inspect mode.

kubectl → local inspect endpoint (TLS ends here, Wicket's CA, endpoint credential) →
relay → agent → demo apiserver (TLS re-originated, the demo bearer token). The same
matrix as ``test_kubectl_tunnel.py``, over WebSocket and over SPDY, and for each
command the record the service snapshot shows (``StreamView``): method, path, status,
``Kubectl-Command``, upgrade state, protocol and subprotocol, decoded detail.

The 61 s idle exec runs through this stack too, in the same minute as the tunnel's
(``test_kubectl_tunnel.py``, ``slow``): inspect mode has its own timeouts (request heads,
keep-alive), none of which may touch an upgraded session.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import shlex
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.aio.endpoint import InspectSettings, LocalEndpoint
from core.aio.inspected import InspectedStream
from core.aio.status import read_all_status
from core.demo.embedded import CONTEXT, TLS_SERVER_NAME, DemoStack
from core.registry.store import ALL_CLUSTERS
from core.service import StreamView, WicketService
from tests.demo import scenarios
from tests.demo.kubectl import Kubectl, Result
from tests.demo.scenarios import MiB

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXPECTED = {
    # protocol: (exec upgrade, exec subprotocol, port-forward upgrade, its subprotocol)
    "websocket": ("websocket", "v5.channel.k8s.io", "websocket", "SPDY/3.1+portforward.k8s.io"),
    "spdy": ("SPDY/3.1", "v4.channel.k8s.io", "SPDY/3.1", "portforward.k8s.io"),
}
_CONNECTION = re.compile(r"port (\d+|\?), (\d+) B up, (\d+) B down")


# -- reading the service snapshot ---------------------------------------------------------


def inspected(service: WicketService) -> list[StreamView]:
    return [s for s in service.refresh().streams if s.inspected]


async def wait_for(
    service: WicketService,
    check: Callable[[StreamView], bool],
    count: int = 1,
    timeout: float = 5.0,
) -> list[StreamView]:
    """The records that pass ``check`` once there are ``count`` of them."""
    async with asyncio.timeout(timeout):
        while len(found := [s for s in inspected(service) if check(s)]) < count:
            await asyncio.sleep(0.05)
    return found


def session_of(
    service: WicketService, suffix: str, command: tuple[str, ...] | None = None
) -> list[StreamView]:
    return [
        s
        for s in inspected(service)
        if s.path is not None
        and s.path.endswith(suffix)
        and (command is None or s.detail_value("command") == shlex.join(command))
    ]


def assert_upgraded(view: StreamView, protocol: str, *, portforward: bool = False) -> None:
    want = EXPECTED[protocol][2:] if portforward else EXPECTED[protocol][:2]
    assert view.status == 101, view
    assert view.upgrade == "accepted", view
    assert (view.protocol, view.subprotocol) == want, view
    assert view.method == ("GET" if protocol == "websocket" else "POST"), view
    assert view.detail_value("error") is None, view.detail


def channels(view: StreamView) -> set[str]:
    return set((view.detail_value("channels") or "").split(","))


def connections(view: StreamView) -> list[tuple[int | None, int, int]]:
    out = []
    for name, value in view.detail:
        if name.startswith("connection "):
            match = _CONNECTION.match(value)
            assert match, value
            port = None if match[1] == "?" else int(match[1])
            out.append((port, int(match[2]), int(match[3])))
    return out


# -- exec and attach --------------------------------------------------------------------


async def test_exec_matrix(
    inspect_kubectl: Kubectl,
    inspect_stack: DemoStack,
    inspect_service: WicketService,
    protocol: str,
) -> None:
    """stdout + stderr, exit code 3, stdin until EOF, -it with a live resize; records."""
    ran = await scenarios.exec_matrix(inspect_kubectl, scenarios.workdir(inspect_stack), protocol)

    # The records: one accepted upgrade each, with what was decoded.
    expect = {
        ran.both: ("0", {"stdout", "stderr"}),
        ran.failing: ("3", {"stdout"}),
        ran.stdin: ("0", {"stdin", "stdout"}),
        ran.tty: ("4", {"stdin", "stdout", "resize"}),
    }
    for command, (code, seen) in expect.items():
        (view,) = session_of(inspect_service, "/exec", command)
        assert_upgraded(view, protocol)
        assert view.kubectl_command == "kubectl exec", view
        assert view.detail_value("kind") == "exec", view.detail
        assert view.detail_value("exit_code") == code, view.detail
        assert seen <= channels(view), view.detail
        assert view.state == "closed" and view.closed_at is not None, view
        if protocol == "websocket":
            assert view.detail_value("close_code") == "1000", view.detail
    (stdin_view,) = session_of(inspect_service, "/exec", ran.stdin)
    assert stdin_view.bytes_up > len(ran.data)
    gets = [
        v for v in inspected(inspect_service) if v.path == "/api/v1/namespaces/default/pods/web"
    ]
    assert gets and all(v.status == 200 and v.upgrade == "none" for v in gets)
    assert not [v for v in inspected(inspect_service) if v.upgrade == "refused"]


async def test_attach(
    inspect_kubectl: Kubectl, inspect_service: WicketService, protocol: str
) -> None:
    before = {v.key for v in session_of(inspect_service, "/attach")}
    async with scenarios.attached(inspect_kubectl, "hello through the inspector"):
        (view,) = [v for v in session_of(inspect_service, "/attach") if v.key not in before]
        assert_upgraded(view, protocol)
        assert view.kubectl_command == "kubectl attach"
        assert view.detail_value("kind") == "attach", view.detail
        assert {"stdin", "stdout"} <= channels(view), view.detail
        assert view.state == "open" and view.closed_at is None
        assert view.bytes_up >= len(b"hello through the inspector\n")


# -- cp ---------------------------------------------------------------------------------


async def test_cp_one_mib_in_and_out(
    inspect_kubectl: Kubectl,
    inspect_stack: DemoStack,
    inspect_service: WicketService,
    protocol: str,
    tmp_path: Path,
) -> None:
    name = f"inspect-copied-{protocol}.bin"
    before = {v.key for v in session_of(inspect_service, "/exec")}
    await scenarios.copy_in_and_out(
        inspect_kubectl, scenarios.workdir(inspect_stack), tmp_path, name
    )
    execs = [v for v in session_of(inspect_service, "/exec") if v.key not in before]
    assert all(v.kubectl_command == "kubectl cp" for v in execs), execs
    commands = sorted(v.detail_value("command") or "" for v in execs)
    # kubectl checks the target first (test -d), then runs tar each way
    assert commands == ["tar -xmf - -C .", f"tar cf - {name}", f"test -d {name}"], commands
    upload, download = (v for v in execs if v.detail_value("command") != f"test -d {name}")
    for view in execs:
        assert_upgraded(view, protocol)
    assert upload.detail_value("exit_code") == "0", upload.detail
    # kubectl ends the download once the archive is read, often before the exit status
    assert download.detail_value("exit_code") in ("0", None), download.detail
    tars = [upload, download]
    assert max(v.bytes_up for v in tars) > MiB  # the upload
    assert max(v.bytes_down for v in tars) > MiB  # the download


# -- port-forward -----------------------------------------------------------------------


async def test_port_forward_two_connections_and_64_mib(
    inspect_kubectl: Kubectl, inspect_service: WicketService, protocol: str
) -> None:
    before = {v.key for v in session_of(inspect_service, "/portforward")}
    async with scenarios.port_forwarded(inspect_kubectl) as reply:
        (view,) = [v for v in session_of(inspect_service, "/portforward") if v.key not in before]
        assert_upgraded(view, protocol, portforward=True)
        assert view.kubectl_command == "kubectl port-forward"
        assert view.detail_value("kind") == "portforward", view.detail
        assert view.detail_value("ports") == "80,9", view.detail
        assert view.state == "open"
        conns = connections(view)
        web = [c for c in conns if c[0] == 80]
        to_sink = [c for c in conns if c[0] == 9]
        assert len(web) == 2 and all(up > 0 and down > 0 for _, up, down in web), conns
        assert to_sink == [(9, 64 * MiB, len(reply))], conns
        assert view.bytes_up > 64 * MiB


# -- logs -f and get -w -------------------------------------------------------------------


async def test_logs_follow_and_get_watch(
    inspect_stack: DemoStack, inspect_service: WicketService, tmp_path: Path
) -> None:
    before = {v.key for v in inspected(inspect_service)}
    async with scenarios.following(Kubectl(tmp_path / "home", inspect_stack.kubeconfig_path)):

        def new(kind: str) -> Callable[[StreamView], bool]:
            return lambda v: v.key not in before and v.detail_value("kind") == kind

        (log,) = await wait_for(inspect_service, new("log"))
        (watched,) = await wait_for(inspect_service, new("watch"))
        assert log.kubectl_command == "kubectl logs" and log.status == 200
        assert log.path == "/api/v1/namespaces/default/pods/ticker/log"
        assert log.upgrade == "none" and log.protocol is None and log.state == "open"
        assert int(log.detail_value("lines") or 0) >= 3, log.detail
        assert watched.kubectl_command == "kubectl get" and watched.status == 200
        assert int(watched.detail_value("event_count") or 0) >= 1, watched.detail
        assert "MODIFIED=" in (watched.detail_value("events") or ""), watched.detail


# -- impersonation ------------------------------------------------------------------------


async def test_impersonation_is_refused_with_a_403_status(
    inspect_kubectl: Kubectl, inspect_service: WicketService
) -> None:
    """``kubectl --as=nobody`` must not run as the endpoint's identity: a 403 ``Status``
    that says why and how to allow it, shown by the real kubectl.

    Without a discovery cache, client-go reads discovery answers as raw bytes and shows
    only "Forbidden: unknown"; with one (kubectl keeps it for hours), the request itself
    is refused and kubectl prints the Status message.
    """
    cold = await inspect_kubectl.run("--as=nobody", "get", "pods")
    assert cold.returncode != 0, cold.out
    assert "Error from server (Forbidden)" in cold.err, cold.err
    assert (await inspect_kubectl.run("get", "pods")).returncode == 0  # fills the cache
    result = await inspect_kubectl.run("--as=nobody", "get", "pods")
    assert result.returncode != 0, result.out
    assert "Error from server (Forbidden)" in result.err, result.err
    assert "its own upstream identity" in result.err, result.err
    assert "--credential-is-callers-own" in result.err, result.err
    refused = await wait_for(inspect_service, lambda v: v.status == 403, count=2)
    assert all(v.kubectl_command == "kubectl get" for v in refused), refused
    assert all("--credential-is-callers-own" in (v.close_reason or "") for v in refused)


# -- the agent goes away ------------------------------------------------------------------


async def test_agent_stopped_answers_a_status(tmp_path: Path) -> None:
    """In inspect mode Wicket speaks HTTP to kubectl: an unreachable cluster is a 503
    ``Status`` naming the reason, at once, for a plain GET and for exec (both protocols)."""
    await scenarios.agent_goes_away(tmp_path, "inspect", _fails_fast)


async def _fails_fast(stack: DemoStack, kubectls: dict[str, Kubectl], reason: str) -> None:
    """kubectl shows an HTTP 503 (ServiceUnavailable), never a connection error; the
    Status names the reason (client-go shows its own text for a 503, the record keeps it)."""
    assert stack.endpoint is not None
    before = {s.id for s in stack.endpoint.snapshot().streams}

    def check(result: Result) -> None:
        assert "Error from server (ServiceUnavailable)" in result.err, result.err
        assert "Unable to connect" not in result.err, result.err

    await scenarios.all_fail_fast(kubectls, check)
    answered = [
        s
        for s in stack.endpoint.snapshot().streams
        if s.id not in before and isinstance(s, InspectedStream)
    ]
    assert answered and all(s.status == 503 for s in answered), answered
    assert all(s.close_reason and reason in s.close_reason for s in answered), answered


# -- `wicket demo --mode inspect` and `wicket status` -------------------------------------


async def test_wicket_demo_inspect_command(tmp_path: Path) -> None:
    demo = scenarios.WicketProcess(tmp_path, "demo.log")
    try:
        kubeconfig = await demo.start_demo("--mode", "inspect")
        out = demo.stdout
        assert b"local inspect endpoint" in out and b"wicket status" in out, out
        assert kubeconfig == tmp_path / "state" / "kubeconfig"
        text = kubeconfig.read_text()
        assert "mode: inspect" in text and TLS_SERVER_NAME not in text, text
        ca = (tmp_path / "state" / "inspect" / "ca.pem").read_text().strip()
        assert "certificate-authority-data" in text
        kubectl = Kubectl(tmp_path / "kubectl-home", kubeconfig, "spdy")
        result = await kubectl.run("exec", "web", "--", "sh", "-c", "echo via-inspect; exit 3")
        assert result.returncode == 3 and result.out == "via-inspect\n", result.err
        current = await kubectl.run("config", "current-context")
        assert current.out.strip() == CONTEXT
        assert ca  # the CA kubectl trusted is Wicket's own (name-constrained to loopback)

        (doc,) = [d for d in await read_all_status(demo.runtime) if d["role"] == "demo"]
        endpoint = doc["snapshot"]["endpoint"]
        assert endpoint["mode"] == "inspect"
        (exec_,) = [s for s in endpoint["streams"] if s["path"].endswith("/exec")]
        assert exec_["upgrade"] == "accepted" and exec_["protocol"] == "SPDY/3.1"
        assert exec_["subprotocol"] == "v4.channel.k8s.io"
        assert exec_["kubectl_command"] == "kubectl exec"
        assert ["exit_code", "3"] in exec_["detail"]

        status = await demo.status()
        assert status.returncode == 0, status.err
        # the demo's endpoint is nested in its snapshot: `wicket status` shows it as an
        # indented section whose requests are a table, one row each
        assert re.search(r"^  endpoint:$", status.out, re.M), status.out
        exec_row = r"^\s+\d+\s.*POST\s+/api/v1/namespaces/default/pods/web/exec\s+101\s.*$"
        row = re.search(exec_row, status.out, re.M)
        assert row, status.out
        for text in ("accepted", "SPDY/3.1", '["exit_code","3"]'):
            assert text in row.group(0), row.group(0)
        assert await demo.terminate() == 0, demo.log.read_text()
    finally:
        await demo.kill()


# -- `wicket connect --mode inspect` -------------------------------------------------------


async def test_wicket_connect_inspect_command(stack: DemoStack, tmp_path: Path) -> None:
    """``wicket connect --mode inspect`` as a process, against the passthrough stack's
    relay: every credential comes from a file (0600), none from argv."""
    assert stack.relay is not None and stack.apiserver is not None
    now = dt.datetime.now(dt.UTC)
    client_token = stack.relay.state.client_token(
        "inspect-cli", stack.relay.address, now, scope=ALL_CLUSTERS
    )
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "client-token").write_text(client_token)
    (secrets_dir / "upstream-token").write_text(stack.apiserver.bearer_token + "\n")
    (secrets_dir / "cluster-ca.pem").write_bytes(stack.apiserver.ca_pem)
    state = tmp_path / "client"
    args = [
        *("connect", "--mode", "inspect", "--cluster", "demo"),
        *("--token-file", str(secrets_dir / "client-token")),
        *("--state-dir", str(state)),
        *("--cluster-ca", str(secrets_dir / "cluster-ca.pem")),
        *("--server-name", TLS_SERVER_NAME),
        *("--upstream-token-file", str(secrets_dir / "upstream-token")),
    ]
    connect = scenarios.WicketProcess(tmp_path, "connect.log")
    try:
        proc = await connect.start(*args)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        match = re.match(rb"local endpoint for demo: (https://127\.0\.0\.1:\d+)", line)
        assert match, (line, connect.log.read_text())
        async with asyncio.timeout(15):  # the session to the relay comes up after the line
            while not [
                d
                for d in await read_all_status(connect.runtime)
                if d["role"] == "connect" and d["snapshot"]["session"] == "online"
            ]:
                await asyncio.sleep(0.1)
        token_file = state / "inspect" / "endpoint-token-demo"
        assert token_file.stat().st_mode & 0o077 == 0
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": match[1].decode(),
                        "certificate-authority": str(state / "inspect" / "ca.pem"),
                    },
                }
            ],
            "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        kubectl = Kubectl(tmp_path / "kubectl-home", kubeconfig)
        result = await kubectl.run("exec", "web", "--", "echo", "via-connect")
        assert result.returncode == 0 and result.out == "via-connect\n", result.err
        for secret in (client_token, stack.apiserver.bearer_token, token_file.read_text().strip()):
            assert secret not in " ".join(args)

        # `wicket status` lists the requests as a table, one row each
        status = await connect.status()
        assert status.returncode == 0, status.err
        header = next(line for line in status.out.splitlines() if "METHOD" in line)
        for column in ("PATH", "STATUS", "KUBECTL COMMAND", "UPGRADE", "PROTOCOL", "DETAIL"):
            assert column in header, header
        row = re.search(
            r"^.*GET\s+/api/v1/namespaces/default/pods/web/exec\s+101\s.*$", status.out, re.M
        )
        assert row, status.out
        for text in (
            "kubectl exec",
            "accepted",
            "websocket",
            "v5.channel.k8s.io",
            '["exit_code","0"]',
        ):
            assert text in row[0], row[0]
        assert await connect.terminate() == 0, connect.log.read_text()
    finally:
        await connect.kill()


# -- passthrough rows say what they are ------------------------------------------------------


async def test_passthrough_rows_carry_sni_and_alpn(
    stack: DemoStack, kubectl: Kubectl, protocol: str
) -> None:
    """Without decrypting: the ClientHello's server name, and ALPN ``h2,http/1.1`` for
    kubectl's API connection vs ``http/1.1`` for its exec upgrade."""
    assert stack.endpoint is not None
    before = {s.id for s in stack.endpoint.snapshot().streams}
    result = await kubectl.run("exec", "web", "--", "echo", "hello")
    assert result.out == "hello\n", result.err
    rows = [s for s in stack.endpoint.snapshot().streams if s.id not in before]
    assert rows and all(s.sni == TLS_SERVER_NAME for s in rows), rows
    offers = {s.alpn for s in rows}
    assert "http/1.1" in offers, offers  # the upgrade (it offers no ALPN: HTTP/1.1)
    assert offers <= {"h2,http/1.1", "http/1.1"}, offers


async def test_a_client_hello_after_the_splice_is_seen(stack: DemoStack) -> None:
    """The status can come back before the ClientHello: it is read as it passes
    through the splice, and the connection still works (the apiserver answers)."""
    assert stack.endpoint is not None and stack.apiserver is not None
    before = {s.id for s in stack.endpoint.snapshot().streams}
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.endpoint.port)
    async with asyncio.timeout(5):
        while not [s for s in stack.endpoint.snapshot().streams
                   if s.id not in before and s.state == "open"]:  # fmt: skip
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the status is back, the splice runs
    ctx = ssl.create_default_context(cadata=stack.apiserver.ca_pem.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    await writer.start_tls(ctx, server_hostname=TLS_SERVER_NAME)
    writer.write(f"GET /version HTTP/1.1\r\nHost: {TLS_SERVER_NAME}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 "), head
    (row,) = [s for s in stack.endpoint.snapshot().streams if s.id not in before]
    assert (row.sni, row.alpn) == (TLS_SERVER_NAME, "http/1.1"), row


# -- TLS failures towards the apiserver, over a tunnel stream ------------------------------


async def test_wrong_apiserver_name_is_a_502_at_once(stack: DemoStack, tmp_path: Path) -> None:
    """A certificate the endpoint must reject (wrong name) over a real tunnel stream:
    asyncio's TLS reports it through the stream transport's ``_force_close``."""
    assert stack.client is not None and stack.apiserver is not None
    settings = InspectSettings(
        state_dir=tmp_path / "inspect",
        endpoint_token="wrong-name-endpoint-token",
        cluster_ca_pem=stack.apiserver.ca_pem,
        server_name="not-the-apiserver.example",
        upstream_authorization=None,
    )
    endpoint = LocalEndpoint(stack.client, "demo", mode="inspect", inspect=settings)
    await endpoint.start()
    try:
        ctx = ssl.create_default_context(cadata=endpoint.ca_pem.decode())
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", endpoint.port, ssl=ctx, server_hostname="127.0.0.1"
        )
        writer.write(
            f"GET /api HTTP/1.1\r\nHost: 127.0.0.1:{endpoint.port}\r\n"
            "Authorization: Bearer wrong-name-endpoint-token\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):
            answer = await reader.read()
        elapsed = time.monotonic() - started
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 502 "), answer
        assert b"certificate" in answer, answer
        assert elapsed < 3, f"{elapsed:.1f} s"
    finally:
        await endpoint.stop()
