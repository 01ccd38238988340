"""Inspect-mode benchmark: a 64 MiB port-forward through inspect vs passthrough, one run.

``python -m tests.bench.inspect_bench [--quick] [--rounds N] [--mib N]
[--protocols websocket,spdy] [--layout connect|demo] [--out DIR] [--strict]``

``--layout connect`` (the default) is the deployment's shape: one ``wicket demo``
process stands for the far side (relay, agent, demo apiserver), and the two local
endpoints run as the desktop side does, each in its own ``wicket connect --mode
passthrough|inspect`` process (enrolled with client tokens from ``wicket relay
client-token``; every credential passed in 0600 files). ``--layout demo`` instead runs
two whole ``wicket demo --mode …`` stacks, everything of a path in one process (the
endpoint then shares one core with relay, agent and apiserver).

For each protocol a real kubectl ``port-forward pod/web :9`` runs through each endpoint;
every round sends N MiB into the demo's ``sink`` service (which answers the SHA-256 and
the count, checked) through one and then the other, alternating which goes first. The
medians give the ratio inspect/passthrough; the target is at least 0.9x. The CPU time
each endpoint's process spent per MiB (``/proc``, ``--layout connect``) is shown beside
it: it measures the endpoint's own cost, which the machine's noise moves far less than
the wall-clock rates. Results go to
``bench-results/inspect-latest.json`` and ``bench-results/inspect-<stamp>.md``.

Exit status: 0 when everything ran (a missed target is reported; ``--strict`` makes it
exit 3), 1 when something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import shlex
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

from core.aio.status import read_all_status
from tests.demo.kubectl import KUBECTL, PROTOCOLS, REPO, Background, Kubectl, run_process

MiB = 1024 * 1024
TARGET = 0.9
MODES = ("passthrough", "inspect")
CPU_KEYS = tuple(f"cpu:{mode}" for mode in MODES)


class Process:
    """A ``wicket`` command in its own process, state and runtime dirs."""

    def __init__(self, base: Path, name: str) -> None:
        self.base = base / name
        self.base.mkdir(parents=True, mode=0o700)
        runtime = self.base / "runtime"
        runtime.mkdir(mode=0o700)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base / "home"),
            "XDG_RUNTIME_DIR": str(runtime),
            "LANG": "C.UTF-8",
        }
        self.log = self.base / "wicket.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.kubeconfig = Path()

    async def start(self) -> None:
        raise NotImplementedError

    async def spawn(self, *args: str, until: bytes) -> bytes:
        """Start ``wicket ARGS``; return its output up to the line holding ``until``."""
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "core.cli", *args),
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        out = b""
        async with asyncio.timeout(60):
            while until not in out:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"wicket {args[0]} ended early: {self.log.read_text()}")
                out += line
        return out

    def report(self) -> str:
        """Its exit status and the end of its log: what a failure report needs."""
        if self.proc is None:
            status = "not started"
        elif self.proc.returncode is None:
            status = "running"
        else:
            status = f"exited with {self.proc.returncode}"
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join([f"{self.base.name}: {status}", *(f"  | {x}" for x in lines[-15:])])

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Demo(Process):
    """``wicket demo --mode M``: relay, agent, demo apiserver (and an endpoint)."""

    def __init__(self, base: Path, mode: str) -> None:
        super().__init__(base, f"demo-{mode}")
        self.mode = mode
        self.state = self.base / "state"

    async def start(self) -> None:
        args = ("demo", "--mode", self.mode, "--state-dir", str(self.state))
        out = await self.spawn(*args, until=b"Ctrl-C")
        match = re.search(rb"^\s*export KUBECONFIG=(.+)$", out, re.MULTILINE)
        assert match, out
        (path,) = shlex.split(match[1].decode())
        self.kubeconfig = Path(path)


class Connect(Process):
    """``wicket connect --mode M`` to the (passthrough) demo's relay, as a desktop would."""

    def __init__(self, base: Path, mode: str, demo: Demo) -> None:
        super().__init__(base, f"connect-{mode}")
        self.mode = mode
        self.demo = demo

    async def start(self) -> None:
        demo, files = self.demo, self.base / "files"
        files.mkdir(mode=0o700)
        relay_port = json.loads((demo.state / "stack.json").read_text())["relay_port"]
        issued = await run_process(
            [
                *(sys.executable, "-m", "core.cli", "relay", "client-token"),
                *(
                    "--state-dir",
                    str(demo.state / "relay"),
                    "--name",
                    f"bench-{self.mode}",
                    "--all-clusters",
                ),
                *("--address", f"127.0.0.1:{relay_port}"),
            ],
            {**demo.env, "PYTHONPATH": str(REPO)},
            None,
            30,
        )
        if issued.returncode != 0:
            raise RuntimeError(f"client-token: {issued.err}")
        _private(files / "client-token", issued.stdout)
        cluster, token = _demo_credentials(demo.kubeconfig)
        _private(files / "cluster-ca.pem", cluster["ca"].encode())
        _private(files / "upstream-token", token.encode())
        args = ["connect", "--mode", self.mode, "--cluster", "demo"]
        args += ["--token-file", str(files / "client-token"), "--state-dir", str(self.base / "c")]
        if self.mode == "inspect":
            args += ["--cluster-ca", str(files / "cluster-ca.pem")]
            args += ["--server-name", cluster["name"]]
            args += ["--upstream-token-file", str(files / "upstream-token")]
        out = await self.spawn(*args, until=b"local endpoint for")
        url = re.search(rb"local endpoint for demo: (https://\S+)", out)
        assert url, out
        if self.mode == "inspect":
            ca = self.base / "c" / "inspect" / "ca.pem"
            server = {"server": url[1].decode(), "certificate-authority": str(ca)}
            user = {"tokenFile": str(self.base / "c" / "inspect" / "endpoint-token-demo")}
        else:
            server = {
                "server": url[1].decode(),
                "certificate-authority": str(files / "cluster-ca.pem"),
                "tls-server-name": cluster["name"],
            }
            user = {"tokenFile": str(files / "upstream-token")}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": server}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        self.kubeconfig = self.base / "kubeconfig"
        _private(self.kubeconfig, json.dumps(config).encode())
        await self._online()

    async def _online(self) -> None:
        runtime = Path(self.env["XDG_RUNTIME_DIR"]) / "wicket"
        assert self.proc is not None
        async with asyncio.timeout(30):
            while self.proc.returncode is None:
                docs = await read_all_status(runtime)
                if any(d.get("snapshot", {}).get("session") == "online" for d in docs):
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"wicket connect --mode {self.mode} ended before it was online")


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _demo_credentials(kubeconfig: Path) -> tuple[dict[str, str], str]:
    """The apiserver CA, TLS name and token from a passthrough demo's kubeconfig."""
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    return {"ca": ca, "name": cluster["tls-server-name"]}, doc["users"][0]["user"]["token"]


@contextlib.asynccontextmanager
async def forwarding(demo: Process, protocol: str) -> AsyncIterator[int]:
    """A kubectl port-forward to the sink (port 9) through ``demo``; yields the local port."""
    kubectl = Kubectl(demo.base / f"kubectl-{protocol}", demo.kubeconfig, protocol)
    async with kubectl.background("port-forward", "--address", "127.0.0.1", "pod/web", ":9") as bg:
        yield await _local_port(bg)


async def _local_port(bg: Background) -> int:
    await bg.read_until(b"Forwarding from 127.0.0.1:", timeout=30)
    await bg.read_for(0.2)
    match = re.search(rb"Forwarding from 127\.0\.0\.1:(\d+) -> 9", bg.output)
    assert match, bg.output
    return int(match[1])


async def push(port: int, chunk: bytes, repeat: int, digest: str) -> float:
    """Seconds to send ``repeat`` chunks into the sink and get its (checked) answer."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(300):
            for _ in range(repeat):
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            reply = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    elapsed = time.perf_counter() - started
    if reply.decode().split() != [digest, str(len(chunk) * repeat)]:
        raise RuntimeError(f"the sink answered {reply!r}")
    return elapsed


async def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    chunk = os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(args.mib):
        digest.update(chunk)
    hexdigest = digest.hexdigest()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wicket-inspect-bench-") as tmp:
        base = Path(tmp)
        far = Demo(base, "passthrough")
        started: list[Process] = [far]
        demos: dict[str, Process]
        try:
            if args.layout == "demo":
                demos = {"passthrough": far, "inspect": Demo(base, "inspect")}
                started.append(demos["inspect"])
                await asyncio.gather(*(d.start() for d in demos.values()))
            else:
                await far.start()
                demos = {mode: Connect(base, mode, far) for mode in MODES}
                started += demos.values()
                await asyncio.gather(*(d.start() for d in demos.values()))
            for protocol in args.protocols:
                async with (
                    forwarding(demos["passthrough"], protocol) as plain_port,
                    forwarding(demos["inspect"], protocol) as inspect_port,
                ):
                    ports = {"passthrough": plain_port, "inspect": inspect_port}
                    for mode in MODES:  # warm-up: first connections, TLS, windows
                        await push(ports[mode], chunk, min(args.mib, 8), _sha(chunk, 8, args))
                    rates: dict[str, list[float]] = {m: [] for m in (*MODES, *CPU_KEYS)}
                    for round_ in range(args.rounds):
                        order = MODES if round_ % 2 == 0 else MODES[::-1]
                        for mode in order:
                            cpu = _cpu_seconds(demos[mode])
                            seconds = await push(ports[mode], chunk, args.mib, hexdigest)
                            rates[mode].append(args.mib / seconds)
                            used = _cpu_seconds(demos[mode]) - cpu
                            rates[f"cpu:{mode}"].append(1000 * used / args.mib)
                            rate = args.mib / seconds
                            print(
                                f"  {protocol:9} round {round_ + 1} {mode:11} "
                                f"{args.mib} MiB in {seconds:.2f} s = {rate:.1f} MiB/s",
                                flush=True,
                            )
                    results[protocol] = rates
        except Exception as exc:
            # Say what failed and why: each process's status and the end of its log.
            reports = "\n".join(p.report() for p in started)
            raise RuntimeError(f"{_describe(exc)}\n{reports}") from exc
        finally:
            await asyncio.gather(*(p.stop() for p in reversed(started)))
    return results


def _describe(exc: BaseException) -> str:
    """The exception, and where it was raised (a bare ``TimeoutError`` says neither)."""
    where = traceback.extract_tb(exc.__traceback__)
    here = next((f for f in reversed(where) if f.filename == __file__), None)
    place = f" at line {here.lineno} ({here.name}: {here.line})" if here else ""
    return f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''}{place}"


def _cpu_seconds(process: Process) -> float:
    """User + system CPU seconds of the process so far (0 where ``/proc`` is missing)."""
    if process.proc is None:
        return 0.0
    try:
        fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sha(chunk: bytes, count: int, args: argparse.Namespace) -> str:
    digest = hashlib.sha256()
    for _ in range(min(args.mib, count)):
        digest.update(chunk)
    return digest.hexdigest()


def summarise(
    results: dict[str, dict[str, list[float]]], args: argparse.Namespace
) -> tuple[str, dict[str, object]]:
    lines = [
        f"## {args.mib} MiB kubectl port-forward: inspect vs passthrough (medians of "
        f"{args.rounds} rounds, layout {args.layout})",
        "",
        "| protocol | passthrough MiB/s | inspect MiB/s | inspect/passthrough | target | met "
        "| endpoint CPU ms/MiB (passthrough / inspect) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, object] = {
        "mib": args.mib,
        "rounds": args.rounds,
        "layout": args.layout,
        "protocols": {},
    }
    missed = []
    for protocol, rates in results.items():
        plain = statistics.median(rates["passthrough"])
        inspect = statistics.median(rates["inspect"])
        ratio = inspect / plain
        met = ratio >= TARGET
        if not met:
            missed.append(protocol)
        cpu = {m: statistics.median(rates[f"cpu:{m}"]) for m in MODES}
        lines.append(
            f"| {protocol} | {plain:.1f} | {inspect:.1f} | {ratio:.2f}x | >= {TARGET}x | "
            f"{'yes' if met else 'NO'} | {cpu['passthrough']:.2f} / {cpu['inspect']:.2f} |"
        )
        summary["protocols"][protocol] = {  # type: ignore[index]
            "passthrough_MiBps": rates["passthrough"],
            "inspect_MiBps": rates["inspect"],
            "ratio": ratio,
            "met": met,
            "endpoint_cpu_ms_per_MiB": cpu,
        }
    if args.quick:
        lines += ["", "--quick: small transfer, 1 round: a smoke test, not a verdict."]
    lines += ["", "Target: " + ("met" if not missed else "missed for " + ", ".join(missed))]
    summary["missed"] = missed
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 MiB, 1 round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument(
        "--layout",
        choices=("connect", "demo"),
        default="connect",
        help="connect: endpoints in their own wicket connect processes (default); "
        "demo: two whole wicket demo stacks, each in one process",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    args = parser.parse_args(argv)
    args.protocols = [p for p in args.protocols.split(",") if p]
    if any(p not in PROTOCOLS for p in args.protocols):
        parser.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    if args.quick:
        args.mib, args.rounds = 8, 1
    if not KUBECTL.exists():
        print(f"inspect_bench: kubectl is missing ({KUBECTL}): make test-deps", file=sys.stderr)
        return 1
    try:
        results = asyncio.run(measure(args))
    except (RuntimeError, AssertionError, TimeoutError, OSError) as exc:
        print(f"inspect_bench: {exc}", file=sys.stderr)
        return 1
    table, summary = summarise(results, args)
    print()
    print(table)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"inspect-{stamp}.md").write_text(table + "\n")
    (out / "inspect-latest.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 3 if args.strict and summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
