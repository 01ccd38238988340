"""kubectl scenarios shared by the demo apiserver, passthrough and inspect tests.

Each one runs the real kubectl (pointed at a bare demo apiserver or through the tunnel)
and asserts what kubectl shows; inspect tests check their records around the call. The
context managers stay open after their checks, so a caller can look at a live session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from core.aio.agent import Agent
from core.demo.embedded import DemoStack
from core.mode import Mode
from tests.demo.kubectl import (
    KUBECTL,
    PROTOCOLS,
    REPO,
    Kubectl,
    Result,
    forwarded_ports,
    http_get,
    run_process,
    sink,
)

MiB = 1024 * 1024
Command = tuple[str, ...]


def workdir(stack: DemoStack, pod: str = "web") -> Path:
    """The working directory of a demo pod behind the stack."""
    assert stack.apiserver is not None
    return stack.apiserver.cluster.workdir("default", pod)


def sha(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- exec and attach --------------------------------------------------------------------


@dataclass(frozen=True)
class ExecMatrix:
    """What :func:`exec_matrix` ran: the commands (one record each) and the stdin data."""

    both: Command
    failing: Command
    stdin: Command
    tty: Command
    data: bytes


async def exec_matrix(kubectl: Kubectl, pod_dir: Path, protocol: str) -> ExecMatrix:
    """stdout + stderr, exit code 3, stdin until EOF and -it with a live resize, at once.

    A random tag marks this run's command lines, so its records are not an earlier run's.
    """
    tag = f"{protocol}-{os.urandom(4).hex()}"
    data = os.urandom(300_000)
    both = ("sh", "-c", f"echo to-out; echo to-err >&2; : {tag}")
    failing = ("sh", "-c", f"echo before-exit; exit 3; : {tag}")
    stdin = ("sh", "-c", f"sha256sum; : {tag}")
    both_result, failing_result, _, tty = await asyncio.gather(
        kubectl.run("exec", "web", "--", *both),
        kubectl.run("exec", "web", "--", *failing),
        exec_stdin_digest(kubectl, data, stdin),
        exec_tty_resize(kubectl, pod_dir, tag),
    )
    assert both_result.returncode == 0, both_result.err
    assert both_result.out == "to-out\n"
    assert "to-err" in both_result.err
    assert failing_result.returncode == 3, failing_result.err
    assert failing_result.out == "before-exit\n"
    return ExecMatrix(both, failing, stdin, tty, data)


async def exec_stdin_digest(kubectl: Kubectl, data: bytes, command: Command) -> None:
    """``exec -i`` feeds ``data`` until EOF to a command that prints its SHA-256."""
    result = await kubectl.run("exec", "-i", "web", "--", *command, stdin=data)
    assert result.returncode == 0, result.err
    assert result.out.split()[0] == hashlib.sha256(data).hexdigest()


async def exec_tty_resize(kubectl: Kubectl, pod_dir: Path, tag: str) -> Command:
    """``exec -it`` under ``script``: a terminal of 100x30, then resized to 123x45; exit 4.

    The remote shell touches a marker in ``pod_dir`` once it has read the first size, and
    only then does the local side resize. Returns the remote command.
    """
    marker = f"resize-ready-{tag}"
    (pod_dir / marker).unlink(missing_ok=True)
    remote = (
        f"stty size; tty; touch {marker}; i=0; "
        'while [ "$(stty size)" = "30 100" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; '
        "stty size; exit 4"
    )
    waiter = (
        f"i=0; while [ ! -e {shlex.quote(str(pod_dir / marker))} ] && [ $i -lt 300 ]; "
        "do sleep 0.05; i=$((i+1)); done; stty cols 123 rows 45 </dev/tty"
    )
    result = await kubectl.run_in_script(
        f"stty cols 100 rows 30; ({waiter}) & "
        f"{KUBECTL} exec -it web -- sh -c {shlex.quote(remote)}; code=$?; wait; exit $code"
    )
    assert result.returncode == 4, (result.out, result.err)
    assert re.search(r"30 100\r?\n.*45 123", result.out, re.DOTALL), result.out
    assert "/dev/pts/" in result.out, result.out
    return ("sh", "-c", remote)


@contextlib.asynccontextmanager
async def attached(kubectl: Kubectl, text: str) -> AsyncIterator[None]:
    """``attach -i chat``: the chat echoes ``text`` and keeps talking on its own."""
    async with kubectl.background("attach", "-i", "chat") as bg:
        assert bg.proc.stdin is not None
        bg.proc.stdin.write(f"{text}\n".encode())
        await bg.proc.stdin.drain()
        await bg.read_until(f"you said: {text}".encode())
        await bg.read_until(b"still here", timeout=10)
        yield


async def exec_idle_longer_than_61_seconds(kubeconfigs: dict[str, Path], home: Path) -> None:
    """An exec with nothing but kubectl's keepalives for 63 s ends normally, both
    protocols, through each of ``kubeconfigs`` (named: the minute is spent once for all)."""
    command = ("exec", "-i", "web", "--", "sh", "-c", 'read x; sleep 63; echo "still $x"')
    runs = [(name, protocol) for name in kubeconfigs for protocol in PROTOCOLS]
    results = await asyncio.gather(
        *(
            Kubectl(home / name / protocol, kubeconfigs[name], protocol).run(
                *command, stdin=b"here\n", timeout=100
            )
            for name, protocol in runs
        )
    )
    for run, result in zip(runs, results, strict=True):
        assert result.returncode == 0, (run, result.err)
        assert result.out == "still here\n", (run, result.out)


# -- cp, port-forward, logs -f and get -w -------------------------------------------------


async def copy_in_and_out(kubectl: Kubectl, pod_dir: Path, tmp_path: Path, name: str) -> None:
    """``kubectl cp`` of 1 MiB into the web pod as ``name`` and back out."""
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(MiB))
    put = await kubectl.run("cp", str(source), f"web:{name}", timeout=60)
    assert put.returncode == 0, put.err
    assert sha(pod_dir / name) == sha(source)
    back = tmp_path / "out.bin"
    get = await kubectl.run("cp", f"web:{name}", str(back), timeout=60)
    assert get.returncode == 0, get.err
    assert sha(back) == sha(source)


@contextlib.asynccontextmanager
async def port_forwarded(kubectl: Kubectl) -> AsyncIterator[bytes]:
    """``port-forward pod/web :80 :9``: two HTTP GETs, then 64 MiB to the sink.

    Yields the sink's reply with the forward still running.
    """
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
        yield reply


@contextlib.asynccontextmanager
async def following(kubectl: Kubectl) -> AsyncIterator[None]:
    """``logs -f ticker`` sees three ticks; ``get pods -w`` sees the ticker change."""
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
        yield


# -- the agent goes away ------------------------------------------------------------------

FailsFast = Callable[[DemoStack, dict[str, Kubectl], str], Awaitable[None]]
"""Checks that kubectl fails at once: ``(stack, kubectls by protocol, the reason)``."""


async def agent_goes_away(tmp_path: Path, mode: Mode | str, fails_fast: FailsFast) -> None:
    """A stack of its own: the agent stops, a new one comes back, then the client stops.

    ``fails_fast`` runs with the agent offline (``agent_offline``) and with no session to
    the relay (``no session to the relay``).
    """
    async with DemoStack(tmp_path / "state", port=0, mode=mode) as stack:
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
        await fails_fast(stack, kubectls, "agent_offline")
        refusal = stack.endpoint.snapshot().last_refusal
        assert refusal is not None and refusal.startswith("agent_offline"), refusal

        # A new agent from the same identity (no token) brings the cluster back.
        stack.agent = Agent(stack.state_dir / "agent", "127.0.0.1", stack.apiserver.port)
        await stack.agent.start()
        await stack.agent.wait_online(10)
        back = await kubectls["spdy"].run("exec", "web", "--", "echo", "back")
        assert back.out == "back\n", back.err

        await stack.client.stop()
        await fails_fast(stack, kubectls, "no session to the relay")


async def all_fail_fast(kubectls: dict[str, Kubectl], check: Callable[[Result], None]) -> None:
    """``get pods`` (WebSocket) and exec (both protocols) each end with 1 within 5 s."""
    started = time.monotonic()
    outcomes = await asyncio.gather(
        kubectls["websocket"].run("get", "pods", timeout=30),
        *(k.run("exec", "web", "--", "true", timeout=30) for k in kubectls.values()),
    )
    elapsed = time.monotonic() - started
    for result in outcomes:
        assert result.returncode == 1, result.out
        check(result)
    assert elapsed < 5, f"kubectl took {elapsed:.1f} s to fail"


# -- `wicket` as a process -----------------------------------------------------------------


class WicketProcess:
    """``python -m core.cli …`` as a subprocess with its own HOME and runtime dir.

    Its log goes to a file so no pipe can fill up; stdout is a pipe for the caller.
    """

    def __init__(self, tmp_path: Path, log_name: str) -> None:
        self.tmp_path = tmp_path
        self.log = tmp_path / log_name
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

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "core.cli", *args),
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        return self.proc

    async def start_demo(self, *args: str) -> Path:
        """``wicket demo`` in ``tmp_path/state``, read up to its Ctrl-C line; its kubeconfig."""
        proc = await self.start("demo", "--state-dir", str(self.tmp_path / "state"), *args)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while b"Ctrl-C" not in self.stdout:
                line = await proc.stdout.readline()
                assert line, f"wicket demo ended early: {self.log.read_text()}"
                self.stdout += line
        match = re.search(rb"^\s*export KUBECONFIG=(.+)$", self.stdout, re.MULTILINE)
        assert match, self.stdout
        (path,) = shlex.split(match[1].decode())
        return Path(path)

    async def status(self) -> Result:
        """``wicket status`` with this process's environment."""
        return await run_process(
            [sys.executable, "-m", "core.cli", "status"],
            {**self.env, "PYTHONPATH": str(REPO)},
            None,
            30,
        )

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"wicket ignored SIGTERM: {self.log.read_text()}") from None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
