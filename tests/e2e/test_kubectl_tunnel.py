"""The real kubectl through the whole tunnel, over WebSocket and over SPDY.

kubectl → local passthrough endpoint → relay → agent → demo apiserver (TLS end to end,
bearer token). ``protocol`` runs each streaming test with kubectl's WebSocket
transports and again with SPDY (``KUBECTL_*_WEBSOCKETS=false``). One stack serves the
suite (``conftest.stack``); independent kubectl runs inside a test go concurrently.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from core.aio.agent import Agent
from core.aio.status import read_all_status
from core.demo.embedded import CONTEXT, DemoStack
from core.errors import KubeconfigError
from tests.demo.kubectl import (
    KUBECTL,
    PROTOCOLS,
    REPO,
    Kubectl,
    forwarded_ports,
    http_get,
    sink,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024


def _workdir(stack: DemoStack, pod: str = "web") -> Path:
    assert stack.apiserver is not None
    return stack.apiserver.cluster.workdir("default", pod)


# -- exec and attach --------------------------------------------------------------------


async def test_exec_matrix(kubectl: Kubectl, stack: DemoStack, protocol: str) -> None:
    """stdout + stderr, exit code 3, stdin until EOF, and -it with a live resize."""
    data = os.urandom(300_000)
    marker = f"resize-ready-{protocol}"
    (_workdir(stack) / marker).unlink(missing_ok=True)
    remote = (
        f"stty size; touch {marker}; i=0; "
        'while [ "$(stty size)" = "30 100" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; '
        "stty size; exit 4"
    )
    waiter = (
        f"i=0; while [ ! -e {shlex.quote(str(_workdir(stack) / marker))} ] && [ $i -lt 300 ]; "
        "do sleep 0.05; i=$((i+1)); done; stty cols 123 rows 45 </dev/tty"
    )
    tty_command = (
        f"stty cols 100 rows 30; ({waiter}) & "
        f"{KUBECTL} exec -it web -- sh -c {shlex.quote(remote)}; code=$?; wait; exit $code"
    )
    both, failing, stdin, tty = await asyncio.gather(
        kubectl.run("exec", "web", "--", "sh", "-c", "echo to-out; echo to-err >&2"),
        kubectl.run("exec", "web", "--", "sh", "-c", "echo before-exit; exit 3"),
        kubectl.run("exec", "-i", "web", "--", "sha256sum", stdin=data),
        kubectl.run_in_script(tty_command),
    )
    assert both.returncode == 0, both.err
    assert both.out == "to-out\n"
    assert "to-err" in both.err
    assert failing.returncode == 3, failing.err
    assert failing.out == "before-exit\n"
    assert stdin.returncode == 0, stdin.err
    assert stdin.out.split()[0] == hashlib.sha256(data).hexdigest()
    assert tty.returncode == 4, (tty.out, tty.err)
    assert re.search(r"30 100\r?\n.*45 123", tty.out, re.DOTALL), tty.out


async def test_attach(kubectl: Kubectl) -> None:
    async with kubectl.background("attach", "-i", "chat") as bg:
        assert bg.proc.stdin is not None
        bg.proc.stdin.write(b"hello through the tunnel\n")
        await bg.proc.stdin.drain()
        await bg.read_until(b"you said: hello through the tunnel")
        await bg.read_until(b"still here", timeout=10)


# -- cp ---------------------------------------------------------------------------------


async def test_cp_one_mib_in_and_out(
    kubectl: Kubectl, stack: DemoStack, protocol: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(MiB))
    name = f"copied-{protocol}.bin"
    put = await kubectl.run("cp", str(source), f"web:{name}", timeout=60)
    assert put.returncode == 0, put.err
    assert _sha(_workdir(stack) / name) == _sha(source)
    back = tmp_path / "out.bin"
    get = await kubectl.run("cp", f"web:{name}", str(back), timeout=60)
    assert get.returncode == 0, get.err
    assert _sha(back) == _sha(source)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- port-forward -----------------------------------------------------------------------


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
        started = time.monotonic()
        reply = await sink(sink_port, chunk, 64)
        elapsed = time.monotonic() - started
        assert reply.decode().split() == [digest.hexdigest(), str(64 * MiB)]
        assert bg.proc.returncode is None, bg.output
        print(f"64 MiB through port-forward in {elapsed:.1f} s ({64 / elapsed:.1f} MiB/s)")


# -- logs -f and get -w (plain HTTP streaming: the same with either protocol) ----------------


async def test_logs_follow_and_get_watch(stack: DemoStack, tmp_path: Path) -> None:
    kubectl = Kubectl(tmp_path / "home", stack.kubeconfig_path)
    async with (
        kubectl.background("logs", "-f", "ticker") as logs,
        kubectl.background("get", "pods", "-w") as watch,
    ):
        first = await logs.read_until(b"tick ")
        start = max(int(n) for n in re.findall(rb"tick (\d+)", first))
        await logs.read_until(f"tick {start + 2}\n".encode())
        await watch.read_until(b"ticker")
        seen = watch.output.count(b"ticker")
        async with asyncio.timeout(10):
            while watch.output.count(b"ticker") <= seen:
                await watch.read_for(0.5)
        assert re.search(rb"ticker\s+[01]/1\s+Running", bytes(watch.output))


# -- --kubeconfig naming an existing file --------------------------------------------------


async def test_kubeconfig_merges_into_an_existing_file(stack: DemoStack, tmp_path: Path) -> None:
    """Only the wicket-demo entries change; the user's own context stays current."""
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n"
        "users:\n- name: me\n  user:\n    token: mine\n"
        "contexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\n"
        "current-context: prod\n"
    )
    assert await asyncio.to_thread(stack.write_kubeconfig, path) is False
    text = path.read_text()
    assert "https://prod.example:6443" in text and "token: mine" in text
    kubectl = Kubectl(tmp_path / "home", path)
    current = await kubectl.run("config", "current-context")
    assert current.out.strip() == "prod"
    pods = await kubectl.run("--context", CONTEXT, "get", "pods", "-o", "name")
    assert "pod/web" in pods.out.split(), pods.err
    assert await asyncio.to_thread(stack.write_kubeconfig, path) is False  # idempotent
    assert path.read_text() == text

    foreign = tmp_path / "foreign"
    foreign.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {CONTEXT}\n  cluster:\n    server: https://elsewhere:6443\n"
    )
    with pytest.raises(KubeconfigError, match="not written by"):
        await asyncio.to_thread(stack.write_kubeconfig, foreign)
    assert "elsewhere" in foreign.read_text()


# -- a long idle session ------------------------------------------------------------------


@pytest.mark.slow
async def test_exec_idle_longer_than_61_seconds(stack: DemoStack, tmp_path: Path) -> None:
    """kubectl drops a WebSocket without a Pong for 61 s; SPDY pings every 5 s.

    Nothing crosses the tunnel for 63 s but kubectl's own keepalives: the tunnel has
    no idle timeout, so both sessions end normally with the command's output.
    """
    command = ("exec", "-i", "web", "--", "sh", "-c", 'read x; sleep 63; echo "still $x"')
    results = await asyncio.gather(
        *(
            Kubectl(tmp_path / protocol, stack.kubeconfig_path, protocol).run(
                *command, stdin=b"here\n", timeout=100
            )
            for protocol in PROTOCOLS
        )
    )
    for protocol, result in zip(PROTOCOLS, results, strict=True):
        assert result.returncode == 0, (protocol, result.err)
        assert result.out == "still here\n", (protocol, result.out)


# -- the agent goes away ------------------------------------------------------------------


async def test_agent_stopped_fails_fast(tmp_path: Path) -> None:
    """With the agent offline kubectl fails at once with a clear connection error.

    In passthrough mode kubectl's TLS runs end to end to the apiserver, so the local
    endpoint cannot answer HTTP. As soon as the relay refuses the stream
    (``agent_offline``, kept in the endpoint's snapshot) the endpoint sends a fatal TLS
    ``internal_error`` alert and closes: kubectl stops at once with "Unable to connect
    to the server: remote error: tls: internal error". Closing without the alert made
    client-go retry every GET ten times, one second apart, and then print a bare
    "EOF". An HTTP 502/503 ``Status`` answer naming the reason comes with inspect mode
    (a later issue), where Wicket terminates kubectl's TLS.
    """
    async with DemoStack(tmp_path / "state", port=0) as stack:
        assert stack.agent is not None and stack.relay is not None
        assert stack.endpoint is not None and stack.apiserver is not None
        assert stack.client is not None
        kubectls = {p: Kubectl(tmp_path / p, stack.kubeconfig_path, p) for p in PROTOCOLS}
        ok = await kubectls["websocket"].run("get", "pods")
        assert ok.returncode == 0, ok.err

        await stack.agent.stop()
        async with asyncio.timeout(10):
            while any(c["online"] for c in stack.relay.snapshot().clusters):
                await asyncio.sleep(0.05)
        await _fails_fast(kubectls)
        refusal = stack.endpoint.snapshot().last_refusal
        assert refusal is not None and refusal.startswith("agent_offline"), refusal

        # A new agent from the same identity (no token) brings the cluster back.
        stack.agent = Agent(stack.state_dir / "agent", "127.0.0.1", stack.apiserver.port)
        await stack.agent.start()
        await stack.agent.wait_online(10)
        back = await kubectls["spdy"].run("exec", "web", "--", "echo", "back")
        assert back.out == "back\n", back.err

        # No session to the relay at all: the same fast, clear failure.
        await stack.client.stop()
        await _fails_fast(kubectls)


async def _fails_fast(kubectls: dict[str, Kubectl]) -> None:
    started = time.monotonic()
    outcomes = await asyncio.gather(
        kubectls["websocket"].run("get", "pods", timeout=30),
        *(k.run("exec", "web", "--", "true", timeout=30) for k in kubectls.values()),
    )
    elapsed = time.monotonic() - started
    for result in outcomes:
        assert result.returncode == 1, result.out
        assert "Unable to connect to the server: remote error: tls: internal error" in (
            result.err
        ), result.err
        assert not result.err.rstrip().endswith("EOF"), result.err
    assert elapsed < 5, f"kubectl took {elapsed:.1f} s to fail"


# -- `wicket demo` ------------------------------------------------------------------------


class _DemoProcess:
    """``wicket demo`` as a subprocess; its log goes to a file so no pipe can fill up."""

    def __init__(self, tmp_path: Path, run: int) -> None:
        self.tmp_path = tmp_path
        self.log = tmp_path / f"demo-{run}.log"
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.runtime = runtime / "wicket"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path / "home"),
            "XDG_RUNTIME_DIR": str(runtime),
            "LANG": "C.UTF-8",
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout = b""

    async def start(self) -> Path:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "core.cli",
                "demo",
                "--state-dir",
                str(self.tmp_path / "state"),
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while b"Ctrl-C" not in self.stdout:
                line = await self.proc.stdout.readline()
                assert line, f"wicket demo ended early: {self.log.read_text()}"
                self.stdout += line
        match = re.search(rb"^\s*export KUBECONFIG=(.+)$", self.stdout, re.MULTILINE)
        assert match, self.stdout
        (path,) = shlex.split(match[1].decode())
        return Path(path)

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"wicket demo ignored SIGTERM: {self.log.read_text()}") from None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_wicket_demo_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _DemoProcess(tmp_path, 1)
    try:
        kubeconfig = await first.start()
        assert kubeconfig == state / "kubeconfig"
        assert "commands run here as" in first.stdout.decode(), first.stdout
        kubectl = Kubectl(tmp_path / "kubectl-home", kubeconfig)
        pods, exec_ = await asyncio.gather(
            kubectl.run("get", "pods"),
            kubectl.run("exec", "web", "--", "sh", "-c", "echo via-wicket-demo; exit 3"),
        )
        assert pods.returncode == 0, pods.err
        assert re.search(r"web\s+1/1\s+Running", pods.out), pods.out
        assert exec_.returncode == 3, exec_.err
        assert exec_.out == "via-wicket-demo\n"
        current = await kubectl.run("config", "current-context")
        assert current.out.strip() == CONTEXT

        docs = await read_all_status(first.runtime)
        (doc,) = [d for d in docs if d["role"] == "demo"]
        assert first.proc is not None and doc["pid"] == first.proc.pid
        snapshot = doc["snapshot"]
        assert snapshot["state"] == "running" and snapshot["enrolled"] is True
        assert snapshot["endpoint"]["mode"] == "passthrough"
        assert f"https://127.0.0.1:{snapshot['endpoint_port']}" in kubeconfig.read_text()
        identity = (state / "agent" / "agent.pem").read_bytes()

        children = _descendants(first.proc.pid)
        assert children, "the demo apiserver's chat process should be a child"
        assert await first.terminate() == 0, first.log.read_text()
        async with asyncio.timeout(5):
            while left := {pid for pid in children if _alive(pid)}:
                await asyncio.sleep(0.05)
        assert not left
        assert not list(first.runtime.glob("demo-*.sock"))
    finally:
        await first.kill()

    second = _DemoProcess(tmp_path, 2)
    try:
        assert await second.start() == kubeconfig
        log = second.log.read_text()
        assert "enrolling" not in log, log
        assert (state / "agent" / "agent.pem").read_bytes() == identity
        result = await Kubectl(tmp_path / "kubectl-home-2", kubeconfig, "spdy").run(
            "exec", "web", "--", "echo", "again"
        )
        assert result.out == "again\n", result.err
        assert await second.terminate() == 0, second.log.read_text()
    finally:
        await second.kill()
