"""Where a short connection and a small round trip cost time: Wicket beside ``ssh -L``.

``python -m tests.bench.conn_breakdown [--paths wicket,connect,ssh] [--conns N]
[--pings N] [--what cpu,syscalls,records,pyspy,calls] [--top N]``

For each path it starts the processes a deployment runs, on loopback, with their
defaults (log level, event loop), and the shared harness's target server
(``../shared/bench/server.py``); then runs two loads, each several times, once per
measurement, so no tracer distorts another's numbers:

* ``conn``: N sequential connections, each one 64 B echo then close (the harness's conn/s);
* ``ping``: N round trips of 64 B on one connection (the harness's RTT).

Paths: ``wicket`` (client → relay public endpoint → TLS+mux → agent → target), ``connect``
(client → ``wicket connect`` → TLS+mux → relay → TLS+mux → agent → target) and ``ssh``
(client → ``ssh -L`` → sshd → target). Measurements, per connection or per round trip
and per process:

* ``cpu``: utime+stime (``/proc/PID/stat``), net of what the process burns idle;
* ``syscalls``: ``strace -c -f`` attached to every process of the path, by kind;
  ``epoll_wait``/``poll``/``select``/``ppoll`` calls are the wake-ups (loop iterations);
* ``records`` (Wicket only): TLS records written per process, from a counter around
  ``ssl.SSLObject.write`` (the processes run through this module's ``--child`` wrapper,
  which adds nothing else), with the garbage collections the load caused;
* ``pyspy``: ``py-spy record`` (if installed) on each Python process, the top frames by
  own time, in µs per connection (share of samples x the process's CPU per connection);
* ``calls``: ``cProfile`` in each Python process (through the wrapper), Python calls
  per connection and the top functions by call count.

Everything is bounded (timeouts on every wait; the processes are stopped by process
group at the end). Numbers on a shared 2-core VM are noisy: read the syscall, record and
call counts (exact) before the times. Standard library only, plus strace and py-spy.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANCHORS_DEFAULT = ROOT.parent / "shared" / "bench"
HOST = "127.0.0.1"
PAYLOAD = b"y" * 64
PING_WARMUP = 200  # round trips before the timed ones (the harness does the same)
CLUSTER = "bench"
WAKEUPS = ("epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect6")
ENV_COUNTS = "WICKET_BREAKDOWN_COUNTS"  # the wrapper dumps its counters here on SIGUSR2
ENV_CALLS = "WICKET_BREAKDOWN_CALLS"  # the wrapper profiles between SIGUSR1 and SIGUSR2


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise SystemExit(f"conn_breakdown: nothing listens on {HOST}:{port} after {timeout:.0f}s")


def ppid_map() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree(root: int) -> list[int]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for pid, parent in ppid_map().items():
        kids[parent].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pids: list[int], kernel_only: bool = False) -> float:
    """utime+stime+cutime+cstime (reaped children land in the c* fields); or only the
    kernel's part (stime+cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used = [int(x) for x in fields[11:15]]
            total += used[1] + used[3] if kernel_only else sum(used)
    return total / tick


@dataclass
class Proc:
    """One process of a path (with its descendants: sshd forks per session)."""

    name: str
    popen: subprocess.Popen[bytes]
    python: bool

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        return tree(self.pid)


@dataclass
class Path_:
    name: str
    entry: int
    note: str = ""
    procs: list[Proc] = field(default_factory=list)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, python: bool, **kw: object) -> Proc:
        log = open(Path(str(kw.pop("logdir"))) / f"{name}.log", "wb")  # noqa: SIM115
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, **kw
        )  # type: ignore[call-overload]
        log.close()
        self.started.append(popen)
        proc = Proc(name, popen, python)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for popen in self.started:
            if popen.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(popen.pid, signal.SIGTERM)
        for popen in self.started:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=5)


def child_argv(args: list[str], valgrind: Path | None = None) -> list[str]:
    """``wicket ARGS`` through this module's wrapper (counters and profiling on signal);
    with ``valgrind`` (a directory), under callgrind, instrumenting nothing until asked."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--", *args]
    if valgrind is None:
        return argv
    out = f"--callgrind-out-file={valgrind}/callgrind.%p"
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", out, *argv]


def run_wicket(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import sys; from core.cli import main; sys.exit(main())",
            *args,
        ],  # -P: core from PYTHONPATH (the checkout measured), not the current dir
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"conn_breakdown: wicket {args[:2]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def write_secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def start_wicket(
    name: str,
    work: Path,
    target: int,
    *,
    connect: bool,
    env: dict[str, str],
    valgrind: bool = False,
) -> Path_:
    base = work / name
    relay_dir, agent_dir, client_dir, run = (base / d for d in ("relay", "agent", "client", "run"))
    for d in (relay_dir, agent_dir, client_dir, run):
        d.mkdir(parents=True, mode=0o700)
    env = dict(env, XDG_RUNTIME_DIR=str(run))
    relay_port, public = free_port(), free_port()
    address = f"{HOST}:{relay_port}"
    join = run_wicket(
        ["relay", "--state-dir", str(relay_dir), "join-token", "--state-dir", str(relay_dir),
         "--cluster", CLUSTER, "--public-port", str(public), "--address", address],
        env,
    )  # fmt: skip
    path = Path_(name, public, hot_path(env))
    grind = base if valgrind else None
    relay = ["relay", "--listen", address, "--state-dir", str(relay_dir), "--public-host", HOST]
    path.start("relay", child_argv(relay, grind), python=True, env=env, logdir=base)
    wait_port(relay_port, 300 if valgrind else 30)
    token = write_secret(base / "join.token", join)
    agent = ["agent", "--token-file", str(token), "--target", f"{HOST}:{target}"]
    path.start("agent", child_argv([*agent, "--state-dir", str(agent_dir)], grind),
               python=True, env=env, logdir=base)  # fmt: skip
    wait_port(public, 300 if valgrind else 30)
    if connect:
        client = run_wicket(
            ["relay", "--state-dir", str(relay_dir), "client-token", "--state-dir",
             str(relay_dir), "--name", "bench-client", "--all-clusters", "--address", address],
            env,
        )  # fmt: skip
        ctoken = write_secret(base / "client.token", client)
        path.entry = free_port()
        argv = ["connect", "--token-file", str(ctoken), "--cluster", CLUSTER,
                "--listen", f"{HOST}:{path.entry}", "--state-dir", str(client_dir)]  # fmt: skip
        path.start("connect", child_argv(argv, grind), python=True, env=env, logdir=base)
        wait_port(path.entry, 300 if valgrind else 30)
    wait_echo(path.entry, 300 if valgrind else 30)
    return path


def hot_path(env: dict[str, str]) -> str:
    """Which variant of the hot path (``core.compiled``) processes with ``env`` run."""
    probe = "from core import compiled; print(compiled.state().reason)"
    done = subprocess.run([sys.executable, "-P", "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    return done.stdout.strip() or done.stderr.strip()[-200:]


def start_ssh(work: Path, target: int, anchors: Path) -> Path_:
    base = work / "ssh"
    base.mkdir(mode=0o700)
    key, hostkey = base / "id", base / "hostkey"
    for k in (key, hostkey):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)],
                       check=True, timeout=30)  # fmt: skip
    authkeys = base / "authorized_keys"
    authkeys.write_text(Path(f"{key}.pub").read_text())
    mid, entry = free_port(), free_port()
    conf = (anchors / "conf" / "sshd_config").read_text()
    for name, value in {"MID": mid, "SSH_HOSTKEY": hostkey, "DIR": base,
                        "SSH_AUTHKEYS": authkeys, "TARGET": target}.items():  # fmt: skip
        conf = conf.replace("{" + name + "}", str(value))
    (base / "sshd_config").write_text(conf)
    Path("/run/sshd").mkdir(exist_ok=True)
    path = Path_("ssh", entry)
    path.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
               python=False, logdir=base)  # fmt: skip
    wait_port(mid)
    user = os.environ.get("USER") or "root"
    path.start(
        "ssh",
        ["ssh", "-N", "-F", "/dev/null", "-p", str(mid), "-i", str(key),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
         "-L", f"{HOST}:{entry}:{HOST}:{target}", f"{user}@{HOST}"],
        python=False,
        logdir=base,
    )  # fmt: skip
    wait_port(entry)
    wait_echo(entry)
    return path


def wait_echo(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            one_connection(port)
            return
        time.sleep(0.1)
    raise SystemExit(f"conn_breakdown: no echo through {HOST}:{port}")


# -- loads -------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)}/{n} bytes")
        buf += chunk
    return buf


def one_connection(port: int) -> None:
    with connect(port) as s:
        s.sendall(b"E" + PAYLOAD)
        if recv_exact(s, len(PAYLOAD)) != PAYLOAD:
            raise RuntimeError("bad echo")


def conn_load(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        one_connection(port)
    return time.perf_counter() - t0


def ping_load(port: int, n: int) -> float:
    with connect(port) as s:
        s.sendall(b"E")
        for _ in range(PING_WARMUP):
            s.sendall(PAYLOAD)
            recv_exact(s, len(PAYLOAD))
        t0 = time.perf_counter()
        for _ in range(n):
            s.sendall(PAYLOAD)
            recv_exact(s, len(PAYLOAD))
        return time.perf_counter() - t0


@dataclass(frozen=True)
class Load:
    name: str
    unit: str
    n: int
    run: Callable[[int, int], float]
    #: Units each run does untimed first (counted where everything is, as instructions).
    warmup: int = 0


# -- measurements ------------------------------------------------------------------------


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=120,
                   check=True)  # fmt: skip


def measure_instructions(
    path: Path_, load: Load, logdir: Path, dumps_out: dict[str, Path] | None = None
) -> dict[str, float]:
    """User-space instructions per unit for each process (callgrind, exact, no noise);
    ``dumps_out`` gets each process's callgrind dump of the load."""
    procs = [p for p in path.procs if p.python]
    for p in procs:
        callgrind(p.pid, "-i", "on")
    load.run(path.entry, 20)  # translated, and the lazy paths taken once
    for p in procs:
        callgrind(p.pid, "-z")
    load.run(path.entry, load.n)
    out = {}
    for p in procs:
        before = set(logdir.glob(f"callgrind.{p.pid}.*"))
        callgrind(p.pid, "-d")
        callgrind(p.pid, "-i", "off")
        dumps = sorted(set(logdir.glob(f"callgrind.{p.pid}.*")) - before)
        text = dumps[-1].read_text() if dumps else ""
        if dumps and dumps_out is not None:
            dumps_out[p.name] = dumps[-1]
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        out[p.name] = int(found[1]) / (load.n + load.warmup) if found else math.nan
    return out


def measure_cpu(path: Path_, load: Load, idle_s: float = 1.0) -> dict[str, float]:
    """µs of CPU per unit for each process, net of its idle rate (keepalives, polls)."""

    def snap() -> dict[str, tuple[float, float]]:
        return {p.name: (cpu_seconds(p.pids()), cpu_seconds(p.pids(), True)) for p in path.procs}

    before = snap()
    time.sleep(idle_s)
    mid = snap()
    wall = load.run(path.entry, load.n)
    after = snap()
    out = {}
    kernel = 0.0
    for p in path.procs:
        used = []
        for i in (0, 1):
            idle_rate = (mid[p.name][i] - before[p.name][i]) / idle_s
            used.append(max(0.0, after[p.name][i] - mid[p.name][i] - idle_rate * wall))
        units = load.n + load.warmup  # the CPU counters see the warm-up too
        out[p.name] = used[0] / units * 1e6
        out[f"_kernel_{p.name}"] = used[1] / units * 1e6
        kernel += used[1] / units * 1e6
    out["_wall_us"] = wall / load.n * 1e6
    out["_kernel_us"] = kernel
    return out


@contextlib.contextmanager
def traced(procs: list[Proc], out: Path) -> Iterator[dict[str, Path]]:
    """``strace -c -f`` attached to each process (tree) while the block runs."""
    tracers: list[subprocess.Popen[bytes]] = []
    files = {}
    try:
        for p in procs:
            files[p.name] = out / f"strace-{p.name}.txt"
            argv = ["strace", "-c", "-f", "-o", str(files[p.name])]
            for pid in p.pids():
                argv += ["-p", str(pid)]
            tracers.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # attached (strace gives no readiness signal with -c)
        yield files
    finally:
        for t in tracers:
            t.send_signal(signal.SIGINT)
        for t in tracers:
            try:
                t.wait(timeout=20)
            except subprocess.TimeoutExpired:
                t.kill()
                t.wait()


def parse_strace(text: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            with contextlib.suppress(ValueError):
                calls[parts[-1]] = int(parts[3])
    return calls


def measure_syscalls(path: Path_, load: Load, work: Path) -> dict[str, dict[str, float]]:
    with traced(path.procs, work) as files:
        load.run(path.entry, load.n)
    out = {}
    for name, f in files.items():
        calls = parse_strace(f.read_text() if f.exists() else "")
        out[name] = {k: v / (load.n + load.warmup) for k, v in calls.items()}
    return out


def signal_all(procs: list[Proc], sig: int) -> None:
    for p in procs:
        if p.python:
            os.kill(p.pid, sig)


def read_dump(f: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f.exists() and f.read_text().endswith("\n.\n"):
            return f.read_text()
        time.sleep(0.05)
    return ""


def measure_counters(path: Path_, load: Load, work: Path) -> dict[str, dict[str, float]]:
    """TLS records written and GCs per unit, from the wrapper's counters (SIGUSR2 dumps)."""
    procs = [p for p in path.procs if p.python]

    def dump(tag: str) -> dict[str, dict[str, float]]:
        for p in procs:
            (work / f"counts-{p.pid}.txt").unlink(missing_ok=True)
        signal_all(procs, signal.SIGUSR2)
        out = {}
        for p in procs:
            text = read_dump(work / f"counts-{p.pid}.txt")
            out[p.name] = {k: float(v) for k, v in re.findall(r"^(\w+) ([\d.]+)$", text, re.M)}
        return out

    before = dump("before")
    load.run(path.entry, load.n)
    after = dump("after")
    return {
        name: {
            k: (after[name].get(k, 0) - v) / (load.n + load.warmup) for k, v in before[name].items()
        }
        for name in before
    }


def measure_pyspy(
    path: Path_, load: Load, work: Path, cpu: dict[str, float], top: int
) -> dict[str, list[tuple[str, float, float]]]:
    """Top frames by own samples: (frame, µs per unit own, µs per unit with callees)."""
    spy = pyspy_binary()
    assert spy is not None
    procs = [p for p in path.procs if p.python]
    spies = {}
    for p in procs:
        f = work / f"pyspy-{p.name}.txt"
        argv = [spy, "record", "-p", str(p.pid), "-r", "500", "-f", "raw", "-o", str(f),
                "--nolineno"]  # fmt: skip
        spies[p.name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL), f)  # fmt: skip
    time.sleep(1.0)
    load.run(path.entry, load.n)
    out = {}
    for name, (spy_proc, f) in spies.items():
        spy_proc.send_signal(signal.SIGINT)
        try:
            spy_proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy_proc.kill()
            spy_proc.wait()
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        samples = 0
        for line in f.read_text().splitlines() if f.exists() else []:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_short(fr) for fr in stack.split(";")]
            frames = [fr for fr in frames if not fr.startswith("<module>")]
            n = int(count)
            samples += n
            own[frames[-1] if frames else "?"] += n
            for fr in set(frames):
                total[fr] += n
        per = cpu.get(name, 0.0) / samples if samples else 0.0
        out[name] = [(fr, c * per, total[fr] * per) for fr, c in own.most_common(top)]
    return out


def measure_perf(path: Path_, load: Load, work: Path, top: int) -> dict[str, list[str]]:
    """``perf record`` per process, then the share of samples by shared object (kernel,
    interpreter, uvloop, OpenSSL): how much of the cost is Python at all."""
    perf = shutil.which("perf")
    if perf is None:
        return {}
    recs = {}
    for p in path.procs:
        f = work / f"perf-{p.name}.data"
        pids = ",".join(str(pid) for pid in p.pids())
        argv = [perf, "record", "-q", "-F", "2000", "-o", str(f), "-p", pids]
        recs[p.name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL), f)  # fmt: skip
    time.sleep(1.0)
    load.run(path.entry, load.n)
    out = {}
    for name, (rec, f) in recs.items():
        rec.send_signal(signal.SIGINT)
        try:
            rec.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rec.kill()
            rec.wait()
        report = subprocess.run(
            [perf, "report", "-i", str(f), "--stdio", "--sort", "dso", "-q"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        rows = [ln.split() for ln in report.stdout.splitlines() if "%" in ln]
        out[name] = [f"{r[0]} {Path(r[-1]).name}" for r in rows[:top] if len(r) >= 2]
    return out


def pyspy_binary() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


#: The tool each measurement needs (scripts/install-bench-deps.sh installs them).
TOOLS = {"syscalls": "strace", "perf": "perf", "instructions": "valgrind"}


def missing_tools(what: set[str]) -> dict[str, str]:
    """Measurements asked for whose tool is not installed (they are skipped, said so)."""
    missing = {m: t for m, t in TOOLS.items() if m in what and shutil.which(t) is None}
    if "pyspy" in what and pyspy_binary() is None:
        missing["pyspy"] = "py-spy (pip install py-spy)"
    return missing


def _short(frame: str) -> str:
    """``func (path/to/file.py)`` → ``func (file.py)``."""
    m = re.match(r"(.*) \((.*)\)$", frame)
    return f"{m[1]} ({Path(m[2]).name})" if m else frame


Calls = tuple[float, float, list[tuple[str, float, float]]]


def measure_calls(path: Path_, load: Load, work: Path, top: int) -> dict[str, Calls]:
    """Python calls per unit, profiled own time, and the top functions by own time."""
    procs = [p for p in path.procs if p.python]
    for p in procs:
        (work / f"calls-{p.pid}.txt").unlink(missing_ok=True)
    signal_all(procs, signal.SIGUSR1)
    time.sleep(0.5)
    load.run(path.entry, load.n)
    signal_all(procs, signal.SIGUSR1)  # a second USR1 stops and dumps
    out: dict[str, Calls] = {}
    for p in procs:
        text = read_dump(work / f"calls-{p.pid}.txt", 30)
        rows = re.findall(r"^(\d+) ([\d.]+) (.+)$", text, re.M)
        calls = sum(int(c) for c, _, _ in rows)
        own = sum(float(t) for _, t, _ in rows)
        units = load.n + load.warmup
        out[p.name] = (
            calls / units,
            own / units * 1e6,
            [(f, int(c) / units, float(t) / units * 1e6) for c, t, f in rows[:top]],
        )
    return out


# -- the wrapper the Python processes run in ---------------------------------------------


def child_main(argv: list[str]) -> int:
    """Run ``wicket ARGS``; SIGUSR2 dumps counters, SIGUSR1 toggles cProfile.

    The only thing added to the process while nothing is asked: one counting frame
    around ``ssl.SSLObject.write`` (a few hundred ns per TLS write).
    """
    import cProfile
    import gc
    import pstats
    import ssl

    work = Path(os.environ[ENV_COUNTS])
    counts = {"tls_writes": 0, "tls_records": 0, "tls_bytes": 0}
    write = ssl.SSLObject.write

    def counting_write(self: ssl.SSLObject, data: bytes) -> int:
        n = len(data)
        counts["tls_writes"] += 1
        counts["tls_records"] += max(1, math.ceil(n / 16384))
        counts["tls_bytes"] += n
        return write(self, data)

    ssl.SSLObject.write = counting_write  # type: ignore[method-assign,assignment]

    def dump_counts(*_: object) -> None:
        lines = [f"{k} {v}" for k, v in counts.items()]
        lines.append(f"gc_collections {sum(s['collections'] for s in gc.get_stats())}")
        lines.append(f"gc_gen0 {gc.get_stats()[0]['collections']}")
        (work / f"counts-{os.getpid()}.txt").write_text("\n".join(lines) + "\n.\n")

    profiler: list[cProfile.Profile] = []

    def toggle_profile(*_: object) -> None:
        if not profiler:
            profiler.append(cProfile.Profile())
            profiler[0].enable()
            return
        prof = profiler.pop()
        prof.disable()
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        rows = sorted(
            ((v[2], v[1], f"{fn} ({Path(f).name}:{line})") for (f, line, fn), v in stats.items()),
            reverse=True,
        )
        text = "".join(f"{c} {t:.9f} {f}\n" for t, c, f in rows)
        (work / f"calls-{os.getpid()}.txt").write_text(text + ".\n")

    experiment = os.environ.get("BREAKDOWN_GC", "")
    if experiment:
        import threading

        def tune() -> None:
            gc.freeze()
            if experiment.isdigit():
                gc.set_threshold(int(experiment), 10, 10)

        threading.Timer(3.0, tune).start()
    signal.signal(signal.SIGUSR2, dump_counts)
    signal.signal(signal.SIGUSR1, toggle_profile)
    from core.cli import main

    return main(argv)


# -- report ------------------------------------------------------------------------------


def report_syscalls(syscalls: dict[str, dict[str, float]], unit: str, top: int) -> list[str]:
    lines = []
    for name, calls in syscalls.items():
        total = sum(calls.values())
        wake = sum(calls.get(k, 0) for k in WAKEUPS)
        kinds = sorted(calls.items(), key=lambda kv: -kv[1])[:top]
        shown = ", ".join(f"{k} {v:.1f}" for k, v in kinds)
        lines.append(f"  {name:8} {total:6.1f} syscalls/{unit} (wake-ups {wake:.1f}): {shown}")
    return lines


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        rest = argv[1:]
        return child_main(rest[1:] if rest[:1] == ["--"] else rest)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", default="wicket,connect,ssh")
    ap.add_argument("--what", default="cpu,syscalls,records,pyspy,calls")
    ap.add_argument("--loads", default="conn,ping")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--pings", type=int, default=5000)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--anchors", type=Path, default=None)
    ap.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR and keep it (logs, profiles)"
    )
    ab = ap.add_argument_group("A/B: the same path from two checkouts, rounds interleaved")
    ab.add_argument("--ab", type=Path, metavar="ROOT", help="B's checkout (A is this one)")
    ab.add_argument("--a-env", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--rounds", type=int, default=5)
    ab.add_argument(
        "--instructions",
        action="store_true",
        help="count user-space instructions per unit under callgrind instead of CPU time",
    )
    a = ap.parse_args(argv)
    anchors = a.anchors or Path(os.environ.get("WICKET_ANCHORS", ANCHORS_DEFAULT))
    if not (anchors / "server.py").is_file():
        print(f"conn_breakdown: no harness at {anchors} (--anchors DIR)", file=sys.stderr)
        return 2
    what = set(a.what.split(","))
    for measurement, tool in missing_tools(what).items():
        print(f"conn_breakdown: skipping {measurement}: {tool} is not installed", file=sys.stderr)
        what.discard(measurement)
    loads = [
        Load("conn", "conn", a.conns, conn_load),
        Load("ping", "RTT", a.pings, ping_load, warmup=PING_WARMUP),
    ]
    loads = [x for x in loads if x.name in a.loads.split(",")]
    with tempfile.TemporaryDirectory(prefix="wicket-breakdown-") as tmp:
        work = Path(tmp)
        if a.keep is not None:
            work = a.keep.resolve()
            work.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **{ENV_COUNTS: str(work)})
        target = free_port()
        server = subprocess.Popen(
            [sys.executable, str(anchors / "server.py"), "--port", str(target),
             "--max-seconds", "3600"],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_port(target)
            if a.ab is not None or a.a_env or a.b_env:
                for line in run_ab(a, loads, work, target, env):
                    print(line, flush=True)
                return 0
            for name in a.paths.split(","):
                if name == "ssh":
                    path = start_ssh(work, target, anchors)
                else:
                    path = start_wicket(name, work, target, connect=name == "connect", env=env)
                try:
                    for line in run_path(path, loads, what - {"instructions"}, work, a.top):
                        print(line, flush=True)
                finally:
                    path.stop()
                if "instructions" in what and name != "ssh":
                    for line in run_instructions(name, work, target, env, loads, a.top):
                        print(line, flush=True)
        finally:
            with contextlib.suppress(OSError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
    return 0


def run_ab(
    a: argparse.Namespace, loads: list[Load], work: Path, target: int, env: dict[str, str]
) -> Iterator[str]:
    """Median CPU and wall time per unit of A and B (and B/A paired by round)."""
    name = a.paths.split(",")[0]
    paths: dict[str, Path_] = {}
    try:
        for label, root, extra in (("A", ROOT, a.a_env), ("B", a.ab or ROOT, a.b_env)):
            venv = dict(env, PYTHONPATH=str(Path(root).resolve()))
            venv.update(kv.split("=", 1) for kv in extra)
            paths[label] = start_wicket(f"{name}-{label}", work, target,
                                        connect=name == "connect", env=venv,
                                        valgrind=a.instructions)  # fmt: skip
        yield f"## A/B {name}: A={ROOT} {a.a_env}  B={a.ab or ROOT} {a.b_env}"
        yield f"A: {paths['A'].note}; B: {paths['B'].note}"
        if a.instructions:
            yield from ab_instructions(paths, loads, work, name, a.rounds)
            return
        for load in loads:
            rows: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
            for p in paths.values():
                load.run(p.entry, min(load.n, 200))  # warm
            for rnd in range(a.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for label in order:
                    cpu = measure_cpu(paths[label], load, idle_s=0.5)
                    wall = cpu.pop("_wall_us")
                    kernel = cpu.pop("_kernel_us")
                    total = sum(v for k, v in cpu.items() if not k.startswith("_"))
                    rows[label].append((total, total - kernel, wall))
            yield from ab_table(load, rows)
    finally:
        for p in paths.values():
            p.stop()


def ab_instructions(
    paths: dict[str, Path_], loads: list[Load], work: Path, name: str, rounds: int
) -> Iterator[str]:
    for load in loads:
        rows: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for rnd in range(rounds):
            for label in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                rows[label].append(
                    measure_instructions(paths[label], load, work / f"{name}-{label}")
                )
        unit = f"user-space instructions/{load.unit}"
        yield f"\n### {load.name} ({load.n} x, {rounds} rounds): {unit}"
        procs = list(rows["A"][0])
        yield "| | " + " | ".join(procs) + " | total |"
        yield "|---|" + "---|" * (len(procs) + 1)
        med: dict[str, dict[str, float]] = {}
        for label, r in rows.items():
            med[label] = {p: statistics.median(x[p] for x in r) for p in procs}
            med[label]["total"] = sum(med[label].values())
            yield f"| {label} | " + " | ".join(f"{v:,.0f}" for v in med[label].values()) + " |"
        ratio = " | ".join(f"{med['B'][k] / med['A'][k]:.3f}" for k in med["A"])
        yield f"| B/A | {ratio} |"


def ab_table(load: Load, rows: dict[str, list[tuple[float, float, float]]]) -> Iterator[str]:
    """Medians (CPU, its user-space part, wall) and B/A paired by round."""
    med = statistics.median
    yield f"\n### {load.name} ({load.n} x, {len(rows['A'])} rounds): medians"
    yield f"| | CPU us/{load.unit} | user us/{load.unit} | wall us/{load.unit} |"
    yield "|---|---|---|---|"
    for label, r in rows.items():
        cpus = ", ".join(f"{x[0]:.0f}" for x in r)
        cells = " | ".join(f"{med(x[i] for x in r):.0f}" for i in (1, 2))
        yield f"| {label} | {med(x[0] for x in r):.0f} ({cpus}) | {cells} |"
    pairs = list(zip(rows["A"], rows["B"], strict=True))
    ratios = [med(b[i] / a[i] for a, b in pairs if a[i]) for i in range(3)]
    yield "| B/A (paired) | " + " | ".join(f"{r:.3f}" for r in ratios) + " |"


def run_instructions(
    name: str, work: Path, target: int, env: dict[str, str], loads: list[Load], top: int
) -> Iterator[str]:
    """The path again under callgrind: instructions per unit, and where they go."""
    path = start_wicket(f"{name}-grind", work, target, connect=name == "connect", env=env,
                        valgrind=True)  # fmt: skip
    logdir = work / f"{name}-grind"
    try:
        yield f"\n## {name} under callgrind (user-space instructions, exact)"
        for load in loads:
            n = max(50, load.n // 10)
            short = Load(load.name, load.unit, n, load.run, load.warmup)
            dumps: dict[str, Path] = {}
            counts = measure_instructions(path, short, logdir, dumps)
            parts = ", ".join(f"{k} {v:,.0f}" for k, v in counts.items())
            yield f"\n### {load.name}: {n} x: {sum(counts.values()):,.0f} per {load.unit} ({parts})"
            for name, dump in dumps.items():
                yield f"  {name}: top functions, inclusive instructions per {load.unit}:"
                yield from annotate(dump, n + load.warmup, top)
    finally:
        path.stop()


def annotate(dump: Path, n: int, top: int) -> Iterator[str]:
    done = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    rows = re.findall(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*)$", done.stdout, re.M)
    shown = 0
    for count, where in rows:
        func = where.split(":", 1)[-1].split(" [")[0]
        if func.startswith(("0x", "???")) or "_start" in func or "main" in func.lower():
            continue
        yield f"    {int(count.replace(',', '')) / n:10,.0f}  {func[:110]}"
        shown += 1
        if shown >= top:
            break


def run_path(path: Path_, loads: list[Load], what: set[str], work: Path, top: int) -> Iterator[str]:
    procs = " + ".join(p.name for p in path.procs)
    yield f"\n## {path.name} ({procs})" + (f": {path.note}" if path.note else "")
    for load in loads:
        load.run(path.entry, min(load.n, 200))  # warm
        cpu = measure_cpu(path, load)
        wall = cpu.pop("_wall_us")
        kernel = cpu.pop("_kernel_us")
        kernels = {p.name: cpu.pop(f"_kernel_{p.name}") for p in path.procs}
        total = sum(cpu.values())
        parts = ", ".join(f"{k} {v:.0f} (kernel {kernels[k]:.0f})" for k, v in cpu.items())
        yield f"\n### {load.name}: {load.n} x, wall {wall:.0f} us/{load.unit}"
        yield f"  CPU {total:.0f} us/{load.unit} ({parts}); in the kernel {kernel:.0f}"
        if "syscalls" in what:
            yield from report_syscalls(measure_syscalls(path, load, work), load.unit, top)
        if "records" in what and any(p.python for p in path.procs):
            for name, c in measure_counters(path, load, work).items():
                yield (
                    f"  {name:8} TLS records written {c.get('tls_records', 0):.2f}/{load.unit}"
                    f" ({c.get('tls_bytes', 0):.0f} B), GCs {c.get('gc_collections', 0):.3f}"
                )
        if "pyspy" in what and any(p.python for p in path.procs):
            for name, rows in measure_pyspy(path, load, work, cpu, top).items():
                yield f"  py-spy {name} (own / with callees, us/{load.unit}):"
                yield from (f"    {own:6.1f} {tot:6.1f}  {fr}" for fr, own, tot in rows)
        if "perf" in what:
            for name, objects in measure_perf(path, load, work, top).items():
                yield f"  perf {name} by shared object: " + ", ".join(objects)
        if "calls" in what and any(p.python for p in path.procs):
            for name, (calls, own, called) in measure_calls(path, load, work, top).items():
                yield (
                    f"  cProfile {name}: {calls:.0f} calls/{load.unit}, {own:.0f} us (profiled);"
                    " top by own time (calls, us):"
                )
                yield from (f"    {c:6.1f} {t:6.1f}  {f}" for f, c, t in called)


if __name__ == "__main__":
    sys.exit(main())
