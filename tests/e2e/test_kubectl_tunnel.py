"""The real kubectl through the whole tunnel, over WebSocket and over SPDY.

kubectl → local passthrough endpoint → relay → agent → demo apiserver (TLS end to end,
bearer token). ``protocol`` runs each streaming test with kubectl's WebSocket
transports and again with SPDY (``KUBECTL_*_WEBSOCKETS=false``). One stack serves the
suite (``conftest.stack``); independent kubectl runs inside a test go concurrently.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from core.aio.status import read_all_status
from core.aio.tunnel import StreamBook, StreamRecord
from core.demo.embedded import CONTEXT, DemoStack
from core.errors import KubeconfigError
from tests.demo import scenarios
from tests.demo.kubectl import Kubectl, Result

pytestmark = pytest.mark.asyncio(loop_scope="session")


# -- exec and attach --------------------------------------------------------------------


async def test_exec_matrix(kubectl: Kubectl, stack: DemoStack, protocol: str) -> None:
    """stdout + stderr, exit code 3, stdin until EOF, and -it with a live resize."""
    await scenarios.exec_matrix(kubectl, scenarios.workdir(stack), protocol)


async def test_attach(kubectl: Kubectl) -> None:
    async with scenarios.attached(kubectl, "hello through the tunnel"):
        pass


# -- cp ---------------------------------------------------------------------------------


async def test_cp_one_mib_in_and_out(
    kubectl: Kubectl, stack: DemoStack, protocol: str, tmp_path: Path
) -> None:
    await scenarios.copy_in_and_out(
        kubectl, scenarios.workdir(stack), tmp_path, f"copied-{protocol}.bin"
    )


# -- port-forward -----------------------------------------------------------------------


async def test_port_forward_two_connections_and_64_mib(kubectl: Kubectl) -> None:
    async with scenarios.port_forwarded(kubectl):
        pass


# -- logs -f and get -w (plain HTTP streaming: the same with either protocol) ----------------


async def test_logs_follow_and_get_watch(stack: DemoStack, tmp_path: Path) -> None:
    async with scenarios.following(Kubectl(tmp_path / "home", stack.kubeconfig_path)):
        pass


# -- normal closes are recorded closed -----------------------------------------------------


async def test_normal_kubectl_runs_close_every_hop_cleanly(
    stack: DemoStack, tmp_path: Path
) -> None:
    """kubectl closes first and the apiserver's TLS close_notify follows: that is a normal
    close at the endpoint, the relay and the agent, never a "failed" row (ENOTCONN)."""
    assert stack.endpoint is not None and stack.relay is not None and stack.agent is not None
    books = (stack.endpoint.book, stack.relay.book, stack.agent.book)
    before = max((r.id for book in books for r in (*book.open.values(), *book.closed)), default=0)
    kubectl = Kubectl(tmp_path / "home", stack.kubeconfig_path)
    results = await asyncio.gather(*(kubectl.run("get", "pods") for _ in range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]

    def closed_since(book: StreamBook) -> list[StreamRecord]:
        return [r for r in book.closed if r.id > before]

    async with asyncio.timeout(10):
        while any(len(closed_since(book)) < 20 for book in books):
            await asyncio.sleep(0.05)
    records = [r for book in books for r in closed_since(book)]
    failed = [(r.endpoint, r.close_reason) for r in records if r.state != "closed"]
    assert not failed, f"{len(failed)} of {len(records)} hops recorded failed: {failed[:3]}"


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
async def test_exec_idle_longer_than_61_seconds(
    stack: DemoStack, inspect_stack: DemoStack, tmp_path: Path
) -> None:
    """kubectl drops a WebSocket without a Pong for 61 s; SPDY pings every 5 s.

    Nothing crosses the tunnel for 63 s but kubectl's own keepalives: the tunnel has
    no idle timeout, so both sessions end normally with the command's output; nor does
    any inspect timeout touch them (the inspect stack's endpoint, in the same minute).
    """
    kubeconfigs = {"tunnel": stack.kubeconfig_path, "inspect": inspect_stack.kubeconfig_path}
    await scenarios.exec_idle_longer_than_61_seconds(kubeconfigs, tmp_path)


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
    await scenarios.agent_goes_away(tmp_path, "passthrough", _fails_fast)


async def _fails_fast(stack: DemoStack, kubectls: dict[str, Kubectl], reason: str) -> None:
    def check(result: Result) -> None:
        assert "Unable to connect to the server: remote error: tls: internal error" in (
            result.err
        ), result.err
        assert not result.err.rstrip().endswith("EOF"), result.err

    await scenarios.all_fail_fast(kubectls, check)


# -- `wicket demo` ------------------------------------------------------------------------


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
    first = scenarios.WicketProcess(tmp_path, "demo-1.log")
    try:
        kubeconfig = await first.start_demo()
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
        (agent_pem,) = (state / "agent").glob("relays/*/agent.pem")  # one per relay CA
        identity = agent_pem.read_bytes()

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

    second = scenarios.WicketProcess(tmp_path, "demo-2.log")
    try:
        assert await second.start_demo() == kubeconfig
        log = second.log.read_text()
        assert "enrolling" not in log, log
        assert agent_pem.read_bytes() == identity
        result = await Kubectl(tmp_path / "kubectl-home-2", kubeconfig, "spdy").run(
            "exec", "web", "--", "echo", "again"
        )
        assert result.out == "again\n", result.err
        assert await second.terminate() == 0, second.log.read_text()
    finally:
        await second.kill()
