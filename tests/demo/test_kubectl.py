"""The real kubectl against the demo apiserver: every streaming feature, both protocols.

``protocol`` runs each test over WebSocket (kubectl's default) and over SPDY
(``KUBECTL_*_WEBSOCKETS=false``); the server is TLS with a bearer token unless a test
says otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.demo import DemoApiServer
from tests.demo import scenarios
from tests.demo.kubectl import Kubectl, KubectlFactory, forwarded_ports, http_get
from tests.demo.scenarios import MiB


async def test_version_discovery_and_get(kubectl: Kubectl) -> None:
    version = await kubectl.run("version", "-o", "json")
    assert version.returncode == 0, version.err
    assert '"gitVersion": "v1.32.' in version.out
    pods = await kubectl.run("get", "pods")
    assert pods.returncode == 0, pods.err
    assert re.search(r"web\s+1/1\s+Running", pods.out), pods.out
    assert "chat" in pods.out
    assert "ticker" in pods.out
    namespaces = await kubectl.run("get", "ns")
    assert "kube-system" in namespaces.out
    one = await kubectl.run("get", "pod", "web", "-o", "jsonpath={.spec.containers[0].name}")
    assert one.out == "web"
    missing = await kubectl.run("get", "pod", "nope")
    assert missing.returncode == 1
    assert 'pods "nope" not found' in missing.err
    selected = await kubectl.run("get", "pods", "-l", "app=web", "-o", "name")
    assert selected.out.split() == ["pod/web"]


async def test_exec_stdout_stderr_and_exit_code(kubectl: Kubectl, demo: DemoApiServer) -> None:
    result = await kubectl.run(
        "exec", "web", "--", "sh", "-c", "echo to-out; echo to-err >&2; pwd; exit 3"
    )
    assert result.returncode == 3, result.err
    assert result.out.splitlines() == ["to-out", str(demo.cluster.workdir("default", "web"))]
    assert "to-err" in result.err
    ok = await kubectl.run("exec", "web", "--", "true")
    assert ok.returncode == 0, ok.err
    big = await kubectl.run("exec", "web", "--", "head", "-c", str(3 * MiB), "/dev/zero")
    assert big.returncode == 0, big.err
    assert big.stdout == bytes(3 * MiB)


async def test_exec_stdin_until_eof(kubectl: Kubectl) -> None:
    await scenarios.exec_stdin_digest(kubectl, os.urandom(200_000), ("sha256sum",))
    lines = await kubectl.run("exec", "-i", "web", "--", "wc", "-l", stdin=b"a\nb\nc\n")
    assert lines.out.strip() == "3"


async def test_exec_tty_gets_the_terminal_size(
    kubectl: Kubectl, demo: DemoApiServer, protocol: str
) -> None:
    await scenarios.exec_tty_resize(kubectl, demo.cluster.workdir("default", "web"), protocol)


async def test_unknown_pod_and_container(kubectl: Kubectl) -> None:
    result = await kubectl.run("exec", "nope", "--", "true")
    assert result.returncode == 1
    assert 'pods "nope" not found' in result.err
    result = await kubectl.run("exec", "web", "-c", "nope", "--", "true")
    assert result.returncode == 1
    assert "nope" in result.err


async def test_cp_one_mib_in_and_out(kubectl: Kubectl, demo: DemoApiServer, tmp_path: Path) -> None:
    await scenarios.copy_in_and_out(
        kubectl, demo.cluster.workdir("default", "web"), tmp_path, "copied.bin"
    )


async def test_attach_to_the_chat_process(kubectl: Kubectl) -> None:
    async with scenarios.attached(kubectl, "hello demo"):
        pass


async def test_port_forward_two_connections_and_64_mib(kubectl: Kubectl) -> None:
    async with scenarios.port_forwarded(kubectl):
        pass


async def test_logs_follow_and_get_watch(demo: DemoApiServer, kubectl_for: KubectlFactory) -> None:
    kubectl = kubectl_for(demo)
    async with scenarios.following(kubectl):
        pass
    snapshot = await kubectl.run("logs", "--tail=1", "ticker")
    assert re.fullmatch(r"tick \d+\n", snapshot.out)


async def test_client_certificate_auth(
    demo: DemoApiServer, kubectl_for: KubectlFactory, protocol: str
) -> None:
    kubectl = kubectl_for(demo, protocol, auth="cert")
    pods = await kubectl.run("get", "pods")
    assert pods.returncode == 0, pods.err
    result = await kubectl.run("exec", "-i", "web", "--", "cat", stdin=b"via cert")
    assert result.out == "via cert", result.err


async def test_wrong_token_is_401(demo: DemoApiServer, kubectl_for: KubectlFactory) -> None:
    kubectl = kubectl_for(demo, auth="none")
    result = await kubectl.run("--token", "wrong", "get", "pods")
    assert result.returncode == 1
    assert "You must be logged in to the server" in result.err


async def test_plain_http(tmp_path: Path, kubectl_for: KubectlFactory, protocol: str) -> None:
    async with DemoApiServer(tmp_path / "plain", tls=False) as server:
        kubectl = kubectl_for(server, protocol, auth="none")
        result = await kubectl.run("exec", "web", "--", "echo", "plain")
        assert result.out == "plain\n", result.err


async def test_websocket_refused_falls_back_to_spdy(
    tmp_path: Path, kubectl_for: KubectlFactory
) -> None:
    async with DemoApiServer(tmp_path / "spdy-only", websocket=False) as server:
        kubectl = kubectl_for(server, "websocket")
        result = await kubectl.run("exec", "-i", "web", "--", "sh", "-c", "cat; exit 5", stdin=b"x")
        assert result.returncode == 5, result.err
        assert result.out == "x"
        async with kubectl.background("port-forward", "--address", "127.0.0.1", "web", ":80") as bg:
            (port,) = await forwarded_ports(bg, 1)
            assert b"Hello from the Wicket demo" in await http_get(port, "/")
