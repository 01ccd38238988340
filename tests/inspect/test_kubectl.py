"""The real kubectl through an inspect endpoint to the demo apiserver (direct TCP, TLS
re-originated), over WebSocket and SPDY; the records show what was decoded."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.aio.inspect import InspectEndpoint, tcp_connector, upstream_context
from core.demo import DemoApiServer
from core.protocol.http_proxy import Exchange, UpgradeState
from core.protocol.k8s_channels import TerminalSize
from tests.demo.kubectl import KUBECTL, PROTOCOLS, Kubectl, http_get
from tests.demo.scenarios import exec_tty_resize

if not KUBECTL.exists():  # pragma: no cover
    pytest.skip("the real kubectl is not installed", allow_module_level=True)

TOKEN = "kubectl-endpoint-credential-0123456789"


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def inspected(tmp_path: Path) -> AsyncIterator[tuple[DemoApiServer, InspectEndpoint]]:
    async with DemoApiServer(tmp_path / "demo", tls=True) as demo:
        endpoint = InspectEndpoint(
            "demo",
            tmp_path / "inspect",
            endpoint_token=TOKEN,
            connector=tcp_connector("127.0.0.1", demo.port),
            upstream_tls=upstream_context(demo.ca_pem),
            server_name="localhost",
            upstream_authorization=f"Bearer {demo.bearer_token}",
            credential_is_callers_own=True,
        )
        async with endpoint:
            yield demo, endpoint


def kubectl_through(endpoint: InspectEndpoint, home: Path, protocol: str) -> Kubectl:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": endpoint.url,
                    "certificate-authority-data": base64.b64encode(endpoint.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}
        ],
        "current-context": "x",
    }
    path = home / "kubeconfig"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return Kubectl(home, path, protocol)


def upgraded(endpoint: InspectEndpoint, sub: str) -> list[Exchange]:
    return [
        e
        for e in endpoint.exchanges()
        if e.path.endswith(sub) and e.upgrade_state is UpgradeState.ACCEPTED
    ]


async def test_get_and_exec(
    inspected: tuple[DemoApiServer, InspectEndpoint], tmp_path: Path, protocol: str
) -> None:
    demo, endpoint = inspected
    kubectl = kubectl_through(endpoint, tmp_path / "home", protocol)
    pods = await kubectl.run("get", "pods")
    assert pods.returncode == 0, pods.err
    assert re.search(r"web\s+1/1\s+Running", pods.out)
    result = await kubectl.run("exec", "web", "--", "sh", "-c", "echo to-out; exit 3")
    assert result.returncode == 3, result.err
    assert result.out == "to-out\n"
    stdin = await kubectl.run("exec", "-i", "web", "--", "wc", "-c", stdin=b"x" * 100_000)
    assert stdin.out.strip() == "100000", stdin.err
    gets = [e for e in endpoint.exchanges() if e.path == "/api/v1/namespaces/default/pods"]
    assert gets and gets[0].status == 200 and gets[0].upgrade_state is UpgradeState.NONE
    assert gets[0].kubectl_command == "kubectl get"
    first, second = upgraded(endpoint, "/exec")
    assert first.kubectl_command == "kubectl exec"
    assert first.detail.command == ("sh", "-c", "echo to-out; exit 3")
    assert first.detail.exit_code == 3
    assert second.detail.exit_code == 0
    assert "stdin" in second.detail.channels
    assert first.detail.error is None and second.detail.error is None
    # Bytes per channel (payloads only), and the heads both ways with no credential.
    assert second.detail.channel_bytes["stdin"] == 100_000
    assert second.detail.channel_bytes["stdout"] == len("100000\n")
    assert first.detail.channel_bytes["stdout"] == len("to-out\n")
    assert first.detail.channel_bytes["error"] > 0
    assert "stdin" not in first.detail.channel_bytes
    for exchange in endpoint.exchanges():
        assert TOKEN not in repr(exchange) and demo.bearer_token not in repr(exchange)
        request = dict(exchange.request_headers.lines)
        assert request["Authorization"] == "Bearer <redacted>"
        assert request["User-Agent"].startswith("kubectl/")
        assert exchange.response_headers.lines
    switched = {name.lower(): value for name, value in first.response_headers.lines}
    assert switched["upgrade"].lower() == str(first.upgrade).lower()
    if protocol == "websocket":
        assert (first.upgrade, first.subprotocol) == ("websocket", "v5.channel.k8s.io")
        assert first.detail.close_code == 1000
    else:
        assert (first.upgrade, first.subprotocol) == ("SPDY/3.1", "v4.channel.k8s.io")
        assert {"error", "stdout"} <= first.detail.channels
    assert not [e for e in endpoint.exchanges() if e.upgrade_state is UpgradeState.REFUSED]


async def test_exec_with_a_terminal_and_a_resize(
    inspected: tuple[DemoApiServer, InspectEndpoint], tmp_path: Path, protocol: str
) -> None:
    """``exec -it`` in a real terminal of 100x30, resized to 123x45: the record has both
    sizes, the tty in its query, the resize channel's bytes and the exit code."""
    demo, endpoint = inspected
    kubectl = kubectl_through(endpoint, tmp_path / "home", protocol)
    command = await exec_tty_resize(kubectl, demo.cluster.workdir("default", "web"), protocol)
    (session,) = upgraded(endpoint, "/exec")
    detail = session.detail
    assert (detail.command, detail.exit_code, detail.error) == (command, 4, None)
    assert "tty=true" in session.target and "stdin=true" in session.target
    # stty may set the columns and the rows one after the other: 123x30 can come between.
    assert (detail.sizes[0], detail.sizes[-1]) == (TerminalSize(100, 30), TerminalSize(123, 45))
    assert detail.resizes == len(detail.sizes) and detail.bad_resizes == 0
    assert detail.channel_bytes["resize"] > 0 and detail.channel_bytes["stdout"] > 0


async def test_port_forward(
    inspected: tuple[DemoApiServer, InspectEndpoint], tmp_path: Path, protocol: str
) -> None:
    _, endpoint = inspected
    kubectl = kubectl_through(endpoint, tmp_path / "home", protocol)
    async with kubectl.background("port-forward", "--address", "127.0.0.1", "pod/web", ":80") as bg:
        await bg.read_until(b"Forwarding from 127.0.0.1:")
        await bg.read_for(0.2)
        match = re.search(rb"Forwarding from 127\.0\.0\.1:(\d+) -> 80", bg.output)
        assert match is not None
        port = int(match[1])
        assert b"You asked for /one" in await http_get(port, "/one")
        assert b"You asked for /two" in await http_get(port, "/two")
        await asyncio.sleep(0.3)
        (session,) = upgraded(endpoint, "/portforward")
        assert session.detail.kind == "portforward"
        assert session.detail.ports == [80]
        assert len(session.detail.connections) == 2
        assert all(c.bytes_up > 0 and c.bytes_down > 0 for c in session.detail.connections)
        assert session.detail.error is None
        if protocol == "websocket":
            assert session.subprotocol == "SPDY/3.1+portforward.k8s.io"
        else:
            assert (session.upgrade, session.subprotocol) == ("SPDY/3.1", "portforward.k8s.io")


async def test_logs_follow_and_watch(
    inspected: tuple[DemoApiServer, InspectEndpoint], tmp_path: Path
) -> None:
    _, endpoint = inspected
    kubectl = kubectl_through(endpoint, tmp_path / "home", "websocket")
    async with (
        kubectl.background("logs", "-f", "ticker") as logs,
        kubectl.background("get", "pods", "-w", "-o", "name") as watch,
    ):
        first = await logs.read_until(b"tick ")
        start = max(int(n) for n in re.findall(rb"tick (\d+)", first))
        await logs.read_until(f"tick {start + 3}\n".encode(), timeout=10)
        await watch.read_until(b"pod/ticker")
        await watch.read_for(4)
        follow = [e for e in endpoint.exchanges() if e.detail.kind == "log"]
        watches = [e for e in endpoint.exchanges() if e.detail.kind == "watch"]
        assert follow and follow[0].status == 200 and follow[0].detail.lines >= 3
        assert watches and watches[0].detail.events.get("MODIFIED", 0) >= 1
