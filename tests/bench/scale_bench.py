"""Relay scale benchmark: 1,000 agent and 1,000 client sessions on one relay, beside sshd.

``python -m tests.bench.scale_bench [--agents N] [--clients N] [--runs R] [--anchor-sessions N]``

One real relay process (``wicket relay``, its default event loop) on a loopback port,
and every agent and desktop client a separate mutual-TLS session to it: the real
``Agent`` and ``RelayClient`` (enrollment, mux, keepalives, jittered reconnects), hosted
``--per-host`` to a process (``tests.bench.scale_hosts``), each agent with its own cluster
and enrollment, each client its own identity (scope: every cluster). Setup issues the
tokens in-process (``RelayState``) and enrolls everyone once; then each run:

1. a fresh relay process; its memory fresh, after the first ``--warm`` agents (so
   one-time costs such as first imports do not count), after all agents, after all
   clients: RSS, PSS and USS (``/proc/PID/smaps_rollup``); KB per agent session is the
   growth from the warm point to all agents, per client session from there to all
   clients;
2. idle CPU: the relay's utime+stime over ``--idle-seconds`` with every session up and
   nothing but keepalives (each peer pings every 20 s, the relay answers; the default
   20 s window is one round of them), as % of one core;
3. connections per second through a random cluster: ``--concurrency`` loops, each
   connection from a random client to a random cluster's agent, one byte echoed by the
   agent's target, then closed (the clients' hosts generate it, through
   ``TunnelDialer``, as ``wicket connect`` does);
4. restart: SIGTERM the relay, start it again on the same port and state dir; the time
   from the signal until every agent (and every client) has a new session, by their
   own clocks, checked against the new relay's status; and what the relay refused
   meanwhile (``throttled``, ``preauth_limit``, ``tls``: its pre-authentication limits).

The anchor, in the same invocation after each Wicket run: a private sshd on a loopback
port (throwaway host and user keys, ``ClientAliveInterval 5`` like the relay's
keepalive) and ``--anchor-sessions`` ``ssh -N -R`` clients (``ServerAliveInterval 5``
like the agent's); the memory of the whole sshd tree (the listener and its two
processes per connection: PSS summed) per session, and its idle CPU.

Results: ``bench-results/scale-<stamp>.{md,json}`` and ``scale-latest.*``. Every child
has a budget and exits on its own; the orchestrator kills what is left on exit.
Exit status: 0 when every run completed (targets missed are reported, ``--strict`` makes
them fatal: 3), 1 when a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.aio.eventloop import raise_open_files_limit
from core.aio.status import read_all_status
from core.format import utcnow
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS
from tests.bench.mux_bench import read_reply

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
#: Targets from the issue.
TARGET_KB = 50.0
TARGET_IDLE_CPU = 2.0  # % of one core
TARGET_BACK_S = 30.0
#: Whatever happens, a child process is gone after this long (seconds).
BUDGET = 3600.0


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port below the ephemeral range (a restarted relay binds it again)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError("no free loopback port")


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process, KiB."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {m[1]: float(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return {
        "rss": kb["Rss"],
        "pss": kb["Pss"],
        "uss": kb["Private_Clean"] + kb["Private_Dirty"],
    }


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc: ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_memory(pid: int) -> dict[str, float]:
    total = {"rss": 0.0, "pss": 0.0, "uss": 0.0, "processes": 0.0}
    for p in tree(pid):
        with contextlib.suppress(OSError, KeyError):
            for k, v in memory(p).items():
                total[k] += v
            total["processes"] += 1
    return total


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark process dies, however it dies
    (Linux ``PR_SET_PDEATHSIG``), so a killed run leaves no relay or sshd behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child in its own process group, output to a log file; killed by group, and
    sent SIGTERM if this process dies first."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = None,
    ) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 (closed in close())
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=stdin,
            stdout=self._log if stdout is None else stdout,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (this process runs no threads)
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def close(self) -> None:
        try:
            self.stop(signal.SIGKILL, 5)
        finally:
            for stream in (self.popen.stdin, self.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._log.close()


class HostProc(Proc):
    """A ``scale_hosts`` process, driven by JSON lines."""

    def __init__(self, role: str, names: list[str], work: Path, loop: str) -> None:
        argv = [sys.executable, "-m", "tests.bench.scale_hosts", role, "--work", str(work)]
        argv += ["--names", ",".join(names), "--loop", loop, "--budget", str(BUDGET)]
        log = work / "logs" / f"{role}-{names[0]}.log"
        argv += ["--log", str(log)]
        super().__init__(argv, log, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.name = f"{role}:{names[0]}.."
        self.hello = self.recv(60.0)

    def send(self, op: str, **args: Any) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.popen.stdin.flush()

    def recv(self, timeout: float = 600.0) -> dict[str, Any]:
        return read_reply(self.popen, self.name, timeout, f"; see {self.log_path}")


def all_call(hosts: list[HostProc], op: str, timeout: float = 600.0, **args: Any) -> list[Any]:
    """The same command to every host at once; their replies in order."""
    for h in hosts:
        h.send(op, timeout=timeout, **args)
    return [h.recv(timeout + 30) for h in hosts]


class Spy:
    """``py-spy record`` of one process (``--py-spy``), raw collapsed stacks; stopped
    with SIGINT (it writes its file then), or at its own ``--duration``."""

    def __init__(self, pid: int, out: Path, seconds: float) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        argv = [exe, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
        argv += ["-d", str(int(seconds) + 1), "--nonblocking", "--nolineno"]
        self.out = out
        self.proc = Proc(argv, out.with_suffix(".log"))

    def stop(self) -> None:
        if self.proc.alive():
            os.kill(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.popen.wait(20)
        self.proc.close()


def top_frames(raw: Path, n: int = 25) -> list[tuple[str, float]]:
    """The functions most often on the stack in a py-spy raw file (share of samples)."""
    if not raw.exists():
        return []
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        for frame in set(stack.split(";")):
            counts[frame] = counts.get(frame, 0) + k
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, k / total) for frame, k in ranked] if total else []


def wicket_argv() -> list[str]:
    exe = Path(sys.executable).parent / "wicket"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "core.cli"]


# -- the scenario ------------------------------------------------------------------------


def chunks(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


class Scenario:
    """The relay, its state, the hosts of agents and of clients."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.port = free_port()
        self.address = f"{HOST}:{self.port}"
        self.state = work / "relay"
        self.runtime = work / "run"
        self.runtime.mkdir(mode=0o700)
        (work / "logs").mkdir()
        (work / "tokens").mkdir(mode=0o700)
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}
        self.agents = [f"c{i:04d}" for i in range(args.agents)]
        self.clients = [f"u{i:04d}" for i in range(args.clients)]
        self.relay: Proc | None = None
        self.relays = 0
        self.agent_hosts: list[HostProc] = []
        self.client_hosts: list[HostProc] = []

    # -- relay ----------------------------------------------------------------------

    def start_relay(self) -> Proc:
        self.relays += 1
        argv = [*wicket_argv(), "--log-level", self.args.relay_log_level, "relay"]
        argv += ["--listen", self.address, "--state-dir", str(self.state)]
        log = self.work / "logs" / f"relay-{self.relays}.log"
        self.relay = Proc(argv, log, env=self.env)
        return self.relay

    def relay_status(self, timeout: float = 10.0) -> dict[str, Any] | None:
        assert self.relay is not None
        docs = asyncio.run(read_all_status(self.runtime / "wicket", timeout))
        for doc in docs:
            if doc["role"] == "relay" and doc["pid"] == self.relay.pid:
                snapshot: dict[str, Any] = doc["snapshot"]
                return snapshot
        return None

    def wait_relay(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.relay is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.relay.alive():
                raise RuntimeError(f"the relay exited; see {self.relay.log_path}")
            status = self.relay_status(2.0)
            if status is not None:
                return status
            time.sleep(0.1)
        raise TimeoutError("the relay did not come up")

    def online(self, status: dict[str, Any]) -> tuple[int, int]:
        """(agents, clients) with a session, in the relay's own status."""
        agents = sum(1 for c in status["clusters"] if c["online"])
        clients = sum(1 for p in status["peers"] if p["role"] == "client")
        return agents, clients

    # -- setup ----------------------------------------------------------------------

    def issue_tokens(self) -> float:
        """A cluster and a join token per agent, a client token per client (all
        clusters), straight through the registry API; files 0600 under tokens/."""
        t0 = time.monotonic()
        state = RelayState(self.state)
        now = utcnow()
        try:
            for name in self.agents:
                self._write_token(name, state.join_token(name, self.address, None, now))
            for name in self.clients:
                token = state.client_token(name, self.address, now, scope=ALL_CLUSTERS)
                self._write_token(name, token)
        finally:
            state.close()
        return time.monotonic() - t0

    def _write_token(self, name: str, token: str) -> None:
        fd = os.open(self.work / "tokens" / f"{name}.token", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")

    def start_hosts(self) -> None:
        per = self.args.per_host
        loop = self.args.host_loop
        for names in chunks(self.agents, per):
            self.agent_hosts.append(HostProc("agents", names, self.work, loop))
        for names in chunks(self.clients, per):
            self.client_hosts.append(HostProc("clients", names, self.work, loop))

    @property
    def hosts(self) -> list[HostProc]:
        return self.agent_hosts + self.client_hosts

    def connect(self, hosts: list[HostProc], timeout: float, **args: Any) -> dict[str, Any]:
        assert self.relay is not None
        t0, c0 = time.monotonic(), cpu_seconds(self.relay.pid)
        replies = all_call(hosts, "start", timeout=timeout, pace=self.args.pace, **args)
        relay_cpu = cpu_seconds(self.relay.pid) - c0
        online = sum(r["online"] for r in replies)
        errors: dict[str, int] = {}
        for r in replies:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        wall = time.monotonic() - t0
        return {"online": online, "wall_s": wall, "relay_cpu_s": relay_cpu, "errors": errors}

    def enroll(self) -> dict[str, Any]:
        """Setup: every peer enrolls once (a relay of its own, stopped afterwards)."""
        self.start_relay()
        self.wait_relay()
        t0 = time.monotonic()
        done = self.connect(self.hosts, timeout=600.0)
        wall = time.monotonic() - t0
        expected = len(self.agents) + len(self.clients)
        if done["online"] != expected:
            raise RuntimeError(f"enrollment: {done['online']} of {expected} online: {done}")
        all_call(self.hosts, "stop")
        assert self.relay is not None
        self.relay.stop()
        for name in [*self.agents, *self.clients]:  # enrolled: the tokens are spent
            (self.work / "tokens" / f"{name}.token").unlink()
        return {"enrolled": expected, "wall_s": wall}

    # -- one run --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        relay = self.start_relay()
        self.wait_relay()
        time.sleep(1.0)
        res: dict[str, Any] = {"mem": {"fresh": memory(relay.pid)}}
        warm = min(a.warm, len(self.agents))
        if warm:
            self.agent_hosts[0].send("start", pace=a.pace, count=warm, timeout=120.0)
            self.agent_hosts[0].recv(150.0)
            self._settle()
        res["mem"]["warm"] = memory(relay.pid)
        res["connect_agents"] = self.connect(self.agent_hosts, timeout=600.0)
        res["agents_online"] = self._await_relay(len(self.agents), 0)[0]
        self._settle()
        res["mem"]["agents"] = memory(relay.pid)
        res["connect_clients"] = self.connect(self.client_hosts, timeout=600.0)
        res["clients_online"] = self._await_relay(len(self.agents), len(self.clients))[1]
        self._settle()
        res["mem"]["clients"] = memory(relay.pid)
        time.sleep(a.idle_settle)  # the relay's last-seen writes for all of them end first
        res["idle"] = self._idle(a.idle_seconds)
        if self.client_hosts and self.agents and a.load_seconds > 0:
            res["load"] = self._load()
        res["restart"] = self.restart()
        res["mem"]["after_restart"] = memory(self.relay.pid) if self.relay else None
        all_call(self.hosts, "stop")
        if self.relay is not None:
            self.relay.stop()
        return res

    def _settle(self) -> None:
        time.sleep(self.args.settle)

    def _await_relay(self, agents: int, clients: int, timeout: float = 120.0) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        got = (0, 0)
        while time.monotonic() < deadline:
            status = self.relay_status()
            if status is not None:
                got = self.online(status)
                if got[0] >= agents and got[1] >= clients:
                    return got
            time.sleep(0.5)
        raise TimeoutError(f"the relay lists {got} online, {(agents, clients)} expected")

    def _idle(self, seconds: float) -> dict[str, Any]:
        assert self.relay is not None
        pid = self.relay.pid
        hosts = [h.pid for h in self.hosts]
        spy = self._spy("idle", seconds)
        perf = self._perf(pid, seconds)
        c0, h0, t0 = cpu_seconds(pid), [cpu_seconds(p) for p in hosts], time.monotonic()
        slices = []  # % of a core, 5 s at a time: is it steady?
        while (left := t0 + seconds - time.monotonic()) > 0:
            s0, at = cpu_seconds(pid), time.monotonic()
            time.sleep(min(5.0, left))
            slices.append(100 * (cpu_seconds(pid) - s0) / (time.monotonic() - at))
        c1, h1, t1 = cpu_seconds(pid), [cpu_seconds(p) for p in hosts], time.monotonic()
        if spy is not None:
            spy.stop()
        if perf is not None:
            perf.popen.wait(30)
            perf.close()
        wall = t1 - t0
        return {
            "seconds": wall,
            "relay_cpu_s": c1 - c0,
            "relay_pct": 100 * (c1 - c0) / wall,
            "relay_pct_slices": slices,
            "hosts_pct": 100 * (sum(h1) - sum(h0)) / wall,
            "sessions": len(self.agents) + len(self.clients),
        }

    def _spy(self, phase: str, seconds: float, pid: int | None = None) -> Spy | None:
        if not self.args.py_spy or self.relay is None:
            return None
        out = self.args.out.resolve() / f"scale-pyspy-{phase}-{self.relays}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = Spy(self.relay.pid if pid is None else pid, out, seconds)
        time.sleep(0.3)  # attached
        return spy

    def _perf(self, pid: int, seconds: float) -> Proc | None:
        """``perf record`` of the relay while it idles (``--perf``): where its CPU goes
        below Python (TLS, the event loop, the kernel)."""
        if not self.args.perf or not shutil.which("perf"):
            return None
        out = self.args.out.resolve() / f"scale-perf-idle-{self.relays}.data"
        argv = ["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(out)]
        return Proc([*argv, "--", "sleep", str(seconds)], out.with_suffix(".log"))

    def _load(self) -> dict[str, Any]:
        a = self.args
        assert self.relay is not None
        per = max(1, a.concurrency // len(self.client_hosts))
        c0 = cpu_seconds(self.relay.pid)
        replies = all_call(
            self.client_hosts,
            "load",
            timeout=a.load_seconds + 60,
            seconds=a.load_seconds,
            concurrency=per,
            clusters=self.agents,
        )
        relay_cpu = cpu_seconds(self.relay.pid) - c0
        conns = sum(r["conns"] for r in replies)
        wall = max(r["wall_s"] for r in replies)
        failures: dict[str, int] = {}
        for r in replies:
            for k, v in r["failures"].items():
                failures[k] = failures.get(k, 0) + v
        return {
            "conns": conns,
            "conn_per_s": conns / wall,
            "failures": failures,
            "p50_ms": statistics.median(r["p50_ms"] for r in replies if r["p50_ms"] is not None),
            "relay_cpu_us_per_conn": 1e6 * relay_cpu / conns if conns else None,
            "concurrency": per * len(self.client_hosts),
        }

    def restart(self) -> dict[str, Any]:
        """SIGTERM the relay, start it again (same port, same state dir): how long
        until every agent and client has a new session, and what the relay refused."""
        assert self.relay is not None
        hosts = [h.pid for h in self.hosts]
        h0 = sum(cpu_seconds(p) for p in hosts)
        host_spy = self._spy("host-restart", self.args.restart_timeout, hosts[0])
        t_kill = time.time()
        self.relay.stop(signal.SIGTERM)
        t_down = time.time()
        relay = self.start_relay()
        t_spawn = time.time()
        spy = self._spy("restart", self.args.restart_timeout)
        deadline = time.monotonic() + self.args.restart_timeout
        agents = clients = {"online": 0}
        while time.monotonic() < deadline:
            agents = self._back(self.agent_hosts, t_kill)
            clients = self._back(self.client_hosts, t_kill)
            if agents["back"] == len(self.agents) and clients["back"] == len(self.clients):
                break
            time.sleep(0.25)
        relay_cpu = cpu_seconds(relay.pid)
        hosts_cpu = sum(cpu_seconds(p) for p in hosts) - h0
        for s in (spy, host_spy):
            if s is not None:
                s.stop()
        status = self.wait_relay()
        on_relay = self.online(status)
        since = sorted(t for r in all_call(self.agent_hosts, "since") for t in r["since"])
        back = [t - t_kill for t in since if t > t_kill]
        quantiles = {}
        if len(back) >= 2:
            cuts = statistics.quantiles(back, n=100)
            quantiles = {"p10": cuts[9], "p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}
        return {
            "stop_s": t_down - t_kill,
            "agents_back": agents["back"],
            "clients_back": clients["back"],
            "agents_back_s": agents["last"] - t_kill if agents["last"] else None,
            "agents_back_quantiles_s": quantiles,
            "clients_back_s": clients["last"] - t_kill if clients["last"] else None,
            "relay_lists": on_relay,
            "refused": status["refused"],
            "spawned_after_s": t_spawn - t_kill,
            "relay_cpu_s": relay_cpu,
            "hosts_cpu_s": hosts_cpu,
            "agent_errors": agents["errors"],
            "client_errors": clients["errors"],
        }

    def _back(self, hosts: list[HostProc], since: float) -> dict[str, Any]:
        """Peers online in a session begun after ``since``, and when the last began."""
        replies = all_call(hosts, "status", timeout=30.0)
        back = 0
        last = None
        errors: dict[str, int] = {}
        for r in replies:
            first = r["first_online_at"]
            if r["online"] == r["states"].get("online", -1) and first and first > since:
                back += r["online"]
                last = max(last or 0.0, r["last_online_at"])
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {"back": back, "last": last, "errors": errors}

    def close(self) -> None:
        for h in self.hosts:
            with contextlib.suppress(OSError, ValueError):
                h.send("quit")
        for p in [*self.hosts, *([self.relay] if self.relay else [])]:
            p.stop(signal.SIGTERM, 10.0)
            p.close()


# -- the anchor: sshd and ssh -R ---------------------------------------------------------

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {hostkey}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authkeys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
AllowTcpForwarding remote
GatewayPorts no
X11Forwarding no
AllowAgentForwarding no
PermitTTY no
PrintMotd no
UseDNS no
MaxStartups 200
ClientAliveInterval 5
ClientAliveCountMax 2
LogLevel ERROR
"""


class Anchor:
    """A private sshd and ``n`` ``ssh -N -R`` sessions to it."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "sshd"
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        key, hostkey = self.dir / "id", self.dir / "host"
        for k in (key, hostkey):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "scale-bench", "-f", str(k)],
                check=True,
                timeout=30,
            )
        (self.dir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        config = self.dir / "sshd_config"
        config.write_text(
            SSHD_CONFIG.format(
                port=self.port,
                hostkey=hostkey,
                dir=self.dir,
                authkeys=self.dir / "authorized_keys",
            )
        )
        self.sshd = Proc(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], self.dir / "sshd.log")
        self.key = key
        self.clients: list[Proc] = []
        self.user = os.environ.get("USER") or "root"

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sshd.alive():
                raise RuntimeError(f"sshd exited: {self.sshd.log_path.read_text()[-500:]}")
            with socket.socket() as s, contextlib.suppress(OSError):
                s.settimeout(1.0)
                s.connect((HOST, self.port))
                return
            time.sleep(0.05)
        raise TimeoutError("sshd did not listen")

    def open(self, n: int, pace: int = 16, timeout: float = 300.0) -> float:
        """Start ``n`` more ``ssh -N -R`` sessions, ``pace`` authenticating at once;
        each is up when it printed its remote forward's port."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        first = len(self.clients)
        pending: list[Proc] = []
        for i in range(first, first + n):
            while len(pending) >= pace:
                pending = [p for p in pending if not self._up(p)]
                if time.monotonic() > deadline:
                    raise TimeoutError("ssh sessions did not come up")
                time.sleep(0.01)
            proc = self._ssh(i)
            self.clients.append(proc)
            pending.append(proc)
        while pending:
            pending = [p for p in pending if not self._up(p)]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} ssh sessions did not come up")
            time.sleep(0.02)
        return time.monotonic() - t0

    def _ssh(self, i: int) -> Proc:
        argv = ["ssh", "-N", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key)]
        for option in (
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=2",
            "LogLevel=INFO",
        ):
            argv += ["-o", option]
        argv += ["-R", f"{HOST}:0:{HOST}:9", f"{self.user}@{HOST}"]
        return Proc(argv, self.dir / f"ssh-{i}.log")

    def _up(self, proc: Proc) -> bool:
        if not proc.alive():
            raise RuntimeError(f"ssh exited: {proc.log_path.read_text()[-500:]}")
        return b"Allocated port" in proc.log_path.read_bytes()

    def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.pid, signal.SIGTERM)
        for c in self.clients:
            c.stop(signal.SIGTERM, 5)
            c.close()
        self.sshd.stop(signal.SIGTERM, 10)
        self.sshd.close()
        for pid in tree(self.sshd.pid)[1:]:  # per-connection children the listener left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def anchor_run(work: Path, n: int, warm: int, args: argparse.Namespace) -> dict[str, Any]:
    anchor = Anchor(work)
    try:
        anchor.wait_listening()
        time.sleep(0.5)
        res: dict[str, Any] = {"sessions": n, "mem": {"fresh": tree_memory(anchor.sshd.pid)}}
        warm = min(warm, n)
        if warm:
            anchor.open(warm)
            time.sleep(args.settle)
        res["mem"]["warm"] = tree_memory(anchor.sshd.pid)
        res["open_s"] = anchor.open(n - warm)
        time.sleep(args.settle)
        res["mem"]["all"] = tree_memory(anchor.sshd.pid)
        pid = anchor.sshd.pid
        c0, t0 = tree_cpu(pid), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, t1 = tree_cpu(pid), time.monotonic()
        res["idle"] = {"seconds": t1 - t0, "cpu_s": c1 - c0, "pct": 100 * (c1 - c0) / (t1 - t0)}
        return res
    finally:
        anchor.close()
        shutil.rmtree(anchor.dir, ignore_errors=True)


# -- figures -----------------------------------------------------------------------------


def per_session(mem: dict[str, Any], a: str, b: str, n: int) -> dict[str, float] | None:
    if n <= 0:
        return None
    return {k: (mem[b][k] - mem[a][k]) / n for k in ("rss", "pss", "uss")}


def figures(run: dict[str, Any], n_agents: int, n_clients: int, warm: int) -> dict[str, Any]:
    """The table's numbers for one Wicket run (KiB per session, % of a core, seconds)."""
    mem = run["mem"]
    restart = run["restart"]
    refused = restart["refused"]
    load = run.get("load") or {}
    return {
        "agent_kb": per_session(mem, "warm", "agents", n_agents - warm),
        "client_kb": per_session(mem, "agents", "clients", n_clients),
        "idle_pct": run["idle"]["relay_pct"],
        "idle_sessions": run["idle"]["sessions"],
        "back_s": restart["agents_back_s"],
        "clients_back_s": restart["clients_back_s"],
        "refused_throttled": refused.get("throttled", 0),
        "refused_preauth": refused.get("preauth_limit", 0),
        "refused_wait": refused.get("preauth_wait", 0),
        "refused_tls": refused.get("tls", 0),
        "conn_per_s": load.get("conn_per_s"),
        "load_failures": sum((load.get("failures") or {}).values()),
        "relay_us_per_conn": load.get("relay_cpu_us_per_conn"),
        "relay_mb_all": mem["clients"]["pss"] / 1024,
    }


def anchor_figures(res: dict[str, Any], warm: int) -> dict[str, Any]:
    n = res["sessions"]
    return {
        "session_kb": per_session(res["mem"], "warm", "all", n - warm),
        "idle_pct": res["idle"]["pct"],
        "idle_sessions": n,
        "processes": res["mem"]["all"]["processes"],
    }


def span(values: list[float | None], digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    if f"{lo:,.{digits}f}" == f"{hi:,.{digits}f}":
        return f"{lo:,.{digits}f}"
    return f"{lo:,.{digits}f}-{hi:,.{digits}f}"


def summarise(
    wicket: list[dict[str, Any]], anchor: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    def col(key: str, sub: str | None = None) -> list[float | None]:
        return [(f[key] or {}).get(sub) if sub else f[key] for f in wicket]

    def acol(key: str, sub: str | None = None) -> list[float | None]:
        return [(f[key] or {}).get(sub) if sub else f[key] for f in anchor]

    worst = {
        "agent_kb": max((v for v in col("agent_kb", "pss") if v is not None), default=None),
        "client_kb": max((v for v in col("client_kb", "pss") if v is not None), default=None),
        "idle_pct": max((v for v in col("idle_pct") if v is not None), default=None),
        "back_s": max((v for v in col("back_s") if v is not None), default=None),
    }
    refusals = sum(f["refused_throttled"] + f["refused_preauth"] + f["refused_tls"] for f in wicket)
    met = {
        "agent_kb": worst["agent_kb"] is not None and worst["agent_kb"] < TARGET_KB,
        "client_kb": worst["client_kb"] is not None and worst["client_kb"] < TARGET_KB,
        "idle_pct": worst["idle_pct"] is not None and worst["idle_pct"] < TARGET_IDLE_CPU,
        "back_s": worst["back_s"] is not None and worst["back_s"] < TARGET_BACK_S,
        "no_refusals": refusals == 0,
    }
    yes = {True: "yes", False: "NO"}
    a_sessions = anchor[0]["idle_sessions"] if anchor else 0
    n_sessions = wicket[0]["idle_sessions"] if wicket else 0
    anchor_idle = f"{span(acol('idle_pct'), 2)} ({a_sessions:,})" if anchor else "not run"
    lines = [
        f"## Relay scale: {args.agents:,} agents + {args.clients:,} clients on one relay"
        f" ({len(wicket)} run{'s' * (len(wicket) != 1)}, ranges)",
        "",
        "| metric | sshd + ssh -R (anchor) | Wicket relay | target | met |",
        "|---|---|---|---|---|",
        f"| KB per agent session (PSS) | {span(acol('session_kb', 'pss'))} |"
        f" {span(col('agent_kb', 'pss'))} | < {TARGET_KB:.0f} | {yes[met['agent_kb']]} |",
        f"| KB per client session (PSS) | (same) | {span(col('client_kb', 'pss'))} |"
        f" < {TARGET_KB:.0f} | {yes[met['client_kb']]} |",
        f"| idle CPU, % of a core (sessions) | {anchor_idle} |"
        f" {span(col('idle_pct'), 2)} ({n_sessions:,}) | < {TARGET_IDLE_CPU:.0f}"
        f" | {yes[met['idle_pct']]} |",
        f"| all agents back after a restart, s | - | {span(col('back_s'))} |"
        f" < {TARGET_BACK_S:.0f} | {yes[met['back_s']]} |",
        f"| all clients back after a restart, s | - | {span(col('clients_back_s'))} | | |",
        f"| refused in the reconnect: throttled / TLS failed / pre-auth line full | - |"
        f" {span(col('refused_throttled'), 0)} / {span(col('refused_tls'), 0)} /"
        f" {span(col('refused_preauth'), 0)} | 0 / 0 / 0 | {yes[met['no_refusals']]} |",
        f"| refused in the reconnect: no pre-auth slot within the wait (load shed) | - |"
        f" {span(col('refused_wait'), 0)} | | |",
        f"| conn/s through a random cluster, all connected | - | {span(col('conn_per_s'), 0)} |"
        " | |",
        f"| relay CPU us per connection | - | {span(col('relay_us_per_conn'), 0)} | | |",
        f"| relay PSS with every session, MB | - | {span(col('relay_mb_all'))} | | |",
        "",
        f"Per session = memory growth / sessions (agents: from the first {args.warm} to all;"
        " sshd: its whole tree, PSS summed). USS per agent session"
        f" {span(col('agent_kb', 'uss'))} KB, per client {span(col('client_kb', 'uss'))} KB;"
        f" sshd {span(acol('session_kb', 'uss'))} KB"
        f" ({span(acol('processes'), 0)} sshd processes).",
    ]
    missed = [k for k, ok in met.items() if not ok]
    lines += ["", "Targets: " + ("all met" if not missed else "missed: " + ", ".join(missed))]
    return "\n".join(lines), {"worst": worst, "met": met, "missed": missed}


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


@contextlib.contextmanager
def workdir(args: argparse.Namespace) -> Iterator[Path]:
    """A short private scratch dir (status socket paths must fit in sun_path), removed
    afterwards unless ``args.keep`` (set when a run failed: its logs are in there)."""
    path = Path(tempfile.mkdtemp(prefix="wscale-"))
    try:
        yield path
    finally:
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--per-host", type=int, default=500, help="peers per host process")
    p.add_argument("--pace", type=int, default=16, help="peers connecting at once, per host")
    p.add_argument("--warm", type=int, default=50, help="agents before the memory baseline")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before a memory reading")
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--idle-settle", type=float, default=10.0, help="quiet seconds before it")
    p.add_argument("--load-seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--restart-timeout", type=float, default=120.0)
    p.add_argument(
        "--anchor-sessions", type=int, default=None, help="ssh -R sessions (default: --agents)"
    )
    p.add_argument("--host-loop", default="uvloop", choices=["uvloop", "asyncio"])
    p.add_argument("--relay-log-level", default="info")
    p.add_argument("--py-spy", action="store_true", help="profile the relay (idle, restart)")
    p.add_argument("--perf", action="store_true", help="perf record the relay while idle")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, state)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    if args.anchor_sessions is None:
        args.anchor_sessions = args.agents
    if args.agents < 1 or args.runs < 1:
        p.error("--agents and --runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    doc: dict[str, Any] = {"args": vars(args) | {"out": str(args.out)}, "env": environment()}
    doc["runs"], doc["anchor"] = [], []
    with workdir(args) as work:
        print(f"scale bench: scratch {work}", flush=True)
        scenario = Scenario(args, work)
        try:
            doc["tokens_s"] = scenario.issue_tokens()
            scenario.start_hosts()
            doc["setup"] = scenario.enroll()
            print(f"setup: tokens {doc['tokens_s']:.1f} s, {doc['setup']}", flush=True)
            for i in range(args.runs):
                run = scenario.run()
                doc["runs"].append(run)
                fig = figures(run, args.agents, args.clients, min(args.warm, args.agents))
                print(f"run {i + 1}: {json.dumps(fig)}", flush=True)
                if args.anchor_sessions > 0:
                    warm = min(args.warm, args.anchor_sessions)
                    res = anchor_run(work, args.anchor_sessions, warm, args)
                    doc["anchor"].append(res)
                    print(f"anchor {i + 1}: {json.dumps(anchor_figures(res, warm))}", flush=True)
        except Exception as exc:
            doc["error"] = repr(exc)
            print(f"scale bench failed: {exc!r} (logs: {work}/logs, kept)", file=sys.stderr)
            args.keep = True
        finally:
            scenario.close()
    warm = min(args.warm, args.agents)
    figs = [figures(r, args.agents, args.clients, warm) for r in doc["runs"]]
    anchor_warm = min(args.warm, args.anchor_sessions)
    afigs = [anchor_figures(r, anchor_warm) for r in doc["anchor"]]
    table, summary = summarise(figs, afigs, args)
    doc["figures"], doc["anchor_figures"], doc["summary"] = figs, afigs, summary
    print()
    print(table)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"scale-{stamp}", "scale-latest"):
        (out / f"{name}.md").write_text(table + "\n")
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\nresults: {out}/scale-{stamp}.json")
    if "error" in doc or len(doc["runs"]) < args.runs:
        return 1
    return 3 if args.strict and summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
