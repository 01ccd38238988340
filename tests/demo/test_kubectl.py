"""The real kubectl against the demo apiserver: every streaming feature, both protocols.

``protocol`` runs each test over WebSocket (kubectl's default) and over SPDY
(``KUBECTL_*_WEBSOCKETS=false``); the server is TLS with a bearer token unless a test
says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

from core.demo import DemoApiServer
from tests.demo.kubectl import (
    KUBECTL,
    Kubectl,
    KubectlFactory,
    forwarded_ports,
    http_get,
    sink,
)

MiB = 1024 * 1024


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
    data = os.urandom(200_000)
    result = await kubectl.run("exec", "-i", "web", "--", "sha256sum", stdin=data)
    assert result.returncode == 0, result.err
    assert result.out.split()[0] == hashlib.sha256(data).hexdigest()
    lines = await kubectl.run("exec", "-i", "web", "--", "wc", "-l", stdin=b"a\nb\nc\n")
    assert lines.out.strip() == "3"


async def test_exec_tty_gets_the_terminal_size(kubectl: Kubectl) -> None:
    result = await kubectl.run_in_script(
        f"stty cols 123 rows 45; {KUBECTL} exec -it web -- sh -c 'stty size; tty; exit 4'"
    )
    assert "45 123" in result.out, (result.out, result.err)
    assert "/dev/pts/" in result.out
    assert result.returncode == 4


async def test_unknown_pod_and_container(kubectl: Kubectl) -> None:
    result = await kubectl.run("exec", "nope", "--", "true")
    assert result.returncode == 1
    assert 'pods "nope" not found' in result.err
    result = await kubectl.run("exec", "web", "-c", "nope", "--", "true")
    assert result.returncode == 1
    assert "nope" in result.err


async def test_cp_one_mib_in_and_out(kubectl: Kubectl, demo: DemoApiServer, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(MiB))
    put = await kubectl.run("cp", str(source), "web:copied.bin", timeout=60)
    assert put.returncode == 0, put.err
    inside = demo.cluster.workdir("default", "web") / "copied.bin"
    assert inside.read_bytes() == source.read_bytes()
    back = tmp_path / "out.bin"
    get = await kubectl.run("cp", "web:copied.bin", str(back), timeout=60)
    assert get.returncode == 0, get.err
    assert (
        hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


async def test_attach_to_the_chat_process(kubectl: Kubectl) -> None:
    async with kubectl.background("attach", "-i", "chat") as bg:
        assert bg.proc.stdin is not None
        bg.proc.stdin.write(b"hello demo\n")
        await bg.proc.stdin.drain()
        await bg.read_until(b"you said: hello demo")
        await bg.read_until(b"still here", timeout=10)


async def test_port_forward_two_connections_and_64_mib(kubectl: Kubectl) -> None:
    async with kubectl.background(
        "port-forward", "--address", "127.0.0.1", "pod/web", ":80", ":9"
    ) as bg:
        http_port, sink_port = await forwarded_ports(bg, 2)
        first = await http_get(http_port, "/one")
        second = await http_get(http_port, "/two")
        assert b"200 OK" in first
        assert b"You asked for /one" in first
        assert b"You asked for /two" in second
        chunk = os.urandom(MiB)
        digest = hashlib.sha256()
        for _ in range(64):
            digest.update(chunk)
        reply = await sink(sink_port, chunk, 64)
        assert reply.decode().split() == [digest.hexdigest(), str(64 * MiB)]
        assert bg.proc.returncode is None


async def test_logs_follow_and_get_watch(demo: DemoApiServer, kubectl_for: KubectlFactory) -> None:
    kubectl = kubectl_for(demo)
    async with (
        kubectl.background("logs", "-f", "ticker") as logs,
        kubectl.background("get", "pods", "-w") as watch,
    ):
        first = await logs.read_until(b"tick ")
        start = max(int(n) for n in re.findall(rb"tick (\d+)", first))
        await logs.read_until(f"tick {start + 2}\n".encode())
        await watch.read_until(b"NAME")
        await watch.read_until(b"ticker")
        seen = watch.output.count(b"ticker")
        async with asyncio.timeout(10):
            while watch.output.count(b"ticker") <= seen:
                await watch.read_for(0.5)
        assert re.search(rb"ticker\s+[01]/1\s+Running", bytes(watch.output))
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
