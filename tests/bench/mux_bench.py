"""Mux benchmark: Wicket's session over loopback TLS beside a plain asyncio TLS pipe.

``python -m tests.bench.mux_bench [--quick] [--rounds N] [--gib G] [--idle N] [--out DIR]``

Each side runs in two processes (``tests.bench.peers``: a sender client and a sink
server). The anchor opens one TLS connection per stream; Wicket carries every stream on
one ``MuxConnection`` over one TLS connection. Rounds interleave anchor and Wicket, so
both see the same machine noise; the table shows medians and the ratio to the anchor.
CPU is utime+stime of both processes (``/proc/PID/stat``), read just before and after
each transfer. Idle memory is measured in fresh processes: RSS, USS and PSS of both
(``/proc/PID/smaps_rollup``), before and after opening N streams, each echoed once.
Results go to ``bench-results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import select
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.certs import make_pki


def read_reply(
    proc: subprocess.Popen[bytes], name: str, timeout: float, where: str = ""
) -> dict[str, Any]:
    """The next JSON line a benchmark child process answers; its ``error`` raised."""
    out = proc.stdout
    assert out is not None
    ready, _, _ = select.select([out], [], [], timeout)
    if not ready:
        raise TimeoutError(f"{name}: no reply within {timeout:g} s")
    line = out.readline()
    if not line:
        raise RuntimeError(f"{name} exited (rc={proc.poll()}){where}")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise RuntimeError(f"{name}: {reply['error']}")
    return reply


ROOT = Path(__file__).resolve().parents[2]
MB = 1e6
MiB = 1 << 20
GiB = 1 << 30
MODES = ("tls", "mux")
LABEL = {"tls": "plain TLS (anchor)", "mux": "Wicket mux"}
#: Targets from the issue.
TARGET_RATIO = 0.8
TARGET_IDLE_KB = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Child:
    """One peer process, driven by JSON lines; killed by process group when stopped."""

    def __init__(self, role: str, mode: str, pki: Path, port: int = 0) -> None:
        argv = [sys.executable, "-m", "tests.bench.peers", role, "--mode", mode]
        argv += ["--pki", str(pki), "--port", str(port)]
        self.name = f"{mode}-{role}"
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.hello = self._read(60.0)

    def call(self, op: str, timeout: float = 300.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        return read_reply(self.proc, self.name, timeout)

    def cpu(self) -> float:
        """utime + stime, seconds."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory(self) -> dict[str, float]:
        """RSS, USS (private pages) and PSS, KiB."""
        text = Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text()
        kb = {m[1]: float(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB", text, re.M)}
        uss = kb["Private_Clean"] + kb["Private_Dirty"]
        return {"rss": kb["Rss"], "uss": uss, "pss": kb["Pss"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()


class Pair:
    """A sink server and a sender client of one mode."""

    def __init__(self, mode: str, pki: Path, live: list[Child]) -> None:
        self.mode = mode
        self.server = Child("server", mode, pki)
        live.append(self.server)
        self.client = Child("client", mode, pki, self.server.hello["port"])
        live.append(self.client)

    @property
    def children(self) -> tuple[Child, Child]:
        return self.client, self.server

    def transfer(self, streams: int, nbytes: int) -> dict[str, float]:
        """``streams`` streams of ``nbytes // streams`` each, at once; rate and CPU."""
        each = nbytes // streams
        cpu0 = [c.cpu() for c in self.children]
        result = self.client.call("bulk", streams=streams, nbytes=each)
        cpu1 = [c.cpu() for c in self.children]
        client_cpu, server_cpu = (b - a for a, b in zip(cpu0, cpu1, strict=True))
        total = each * streams
        wall = result["wall_s"]
        return {
            "MBps": total / wall / MB,
            "wall_s": wall,
            "client_cpu_s": client_cpu,
            "server_cpu_s": server_cpu,
            "cpu_s_per_GiB": (client_cpu + server_cpu) / (total / GiB),
        }

    def settle(self) -> dict[str, dict[str, float]]:
        for child in self.children:
            child.call("settle")
        return {c.name: c.memory() for c in self.children}

    def idle(self, n: int) -> dict[str, Any]:
        """Memory per stream with ``n`` idle streams open, and the snapshot cost."""
        before = self.settle()
        opened = self.client.call("idle", n=n)
        after = self.settle()
        out: dict[str, Any] = {"n": n, "open_s": opened["wall_s"], "before": before}
        out["after"] = after
        for kind in ("rss", "uss", "pss"):
            per = {c: (after[c][kind] - before[c][kind]) / n for c in after}
            out[f"{kind}_kb_per_stream"] = per
            out[f"{kind}_kb_per_stream_total"] = sum(per.values())
        if self.mode == "mux":
            out["snapshot"] = {c.name: c.call("snapshot") for c in self.children}
        self.client.call("release")
        return out

    def stop(self) -> None:
        for child in self.children:
            child.stop()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Every child started inside is stopped on the way out, whatever happens."""
    live: list[Child] = []

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield live
    finally:
        for child in live:
            child.stop()
        signal.signal(signal.SIGTERM, old)


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


def run(args: argparse.Namespace, pki: Path) -> dict[str, Any]:
    nbytes = int(args.gib * GiB)
    rounds: list[dict[str, Any]] = []
    idle: dict[str, Any] = {}
    with children() as live:
        pairs = {mode: Pair(mode, pki, live) for mode in MODES}
        for pair in pairs.values():
            pair.transfer(1, min(nbytes, 16 * MiB))  # warm-up, not counted
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for name, streams in (("one", 1), ("multi", args.streams)):
                for mode in MODES:
                    res = pairs[mode].transfer(streams, nbytes)
                    row[f"{name}_{mode}"] = res
                    log(
                        f"round {r + 1}/{args.rounds} {streams} stream(s) {mode}: "
                        f"{res['MBps']:.0f} MB/s, {res['cpu_s_per_GiB']:.2f} CPU s/GiB"
                    )
            rounds.append(row)
        for pair in pairs.values():
            pair.stop()
        for mode in MODES:
            pair = Pair(mode, pki, live)
            idle[mode] = pair.idle(args.idle)
            pair.stop()
            log(f"idle {args.idle} {mode}: {idle[mode]['rss_kb_per_stream_total']:.1f} KB/stream")
    return {"rounds": rounds, "idle": idle}


def median(rounds: list[dict[str, Any]], key: str, field: str) -> float:
    return float(statistics.median(r[key][field] for r in rounds))


def spread(rounds: list[dict[str, Any]], key: str, field: str) -> str:
    xs = sorted(r[key][field] for r in rounds)
    return f"{xs[0]:,.0f} / {statistics.median(xs):,.0f} / {xs[-1]:,.0f}"


def summarise(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rounds = res["rounds"]
    s: dict[str, Any] = {}
    for name in ("one", "multi"):
        for mode in MODES:
            for field in ("MBps", "cpu_s_per_GiB"):
                s[f"{name}_{mode}_{field}"] = median(rounds, f"{name}_{mode}", field)
        s[f"{name}_ratio"] = s[f"{name}_mux_MBps"] / s[f"{name}_tls_MBps"]
        s[f"{name}_ratio_per_round"] = [
            r[f"{name}_mux"]["MBps"] / r[f"{name}_tls"]["MBps"] for r in rounds
        ]
    for mode in MODES:
        for kind in ("rss", "uss", "pss"):
            s[f"idle_{mode}_{kind}_kb"] = res["idle"][mode][f"{kind}_kb_per_stream_total"]
    snaps = res["idle"]["mux"]["snapshot"]
    s["snapshot_ms"] = max(v["ms"] for v in snaps.values())
    s["snapshot_streams"] = max(v["streams"] for v in snaps.values())
    s["one_target_met"] = s["one_ratio"] >= TARGET_RATIO
    s["idle_target_met"] = s["idle_mux_rss_kb"] < TARGET_IDLE_KB
    return s


def table(s: dict[str, Any], res: dict[str, Any], args: argparse.Namespace) -> str:
    rounds = res["rounds"]
    size = f"{args.gib:g} GiB" if args.gib >= 1 else f"{args.gib * 1024:g} MiB"

    def row(label: str, tls: float, mux: float, fmt: str, ratio: bool = True) -> str:
        r = f" [{mux / tls:.2f}x]" if ratio and tls else ""
        return f"| {label} | {tls:{fmt}} | {mux:{fmt}}{r} |"

    def ok(met: bool) -> str:
        return "met" if met else "NOT met"

    n = args.idle
    lines = [
        f"Mux benchmark: {size} per run over loopback TLS 1.3 (P-256), "
        f"{args.rounds} interleaved round(s), medians; [ratio to the anchor].",
        "",
        f"| metric | {LABEL['tls']} | {LABEL['mux']} [ratio] |",
        "|---|---|---|",
        row("1 stream MB/s", s["one_tls_MBps"], s["one_mux_MBps"], ",.0f"),
        row(f"{args.streams} streams MB/s", s["multi_tls_MBps"], s["multi_mux_MBps"], ",.0f"),
        row("1 stream CPU s/GiB", s["one_tls_cpu_s_per_GiB"], s["one_mux_cpu_s_per_GiB"], ".2f"),
        row(
            f"{args.streams} streams CPU s/GiB",
            s["multi_tls_cpu_s_per_GiB"],
            s["multi_mux_cpu_s_per_GiB"],
            ".2f",
        ),
        row(f"idle RSS KB/stream ({n} open)", s["idle_tls_rss_kb"], s["idle_mux_rss_kb"], ".1f"),
        row(f"idle USS KB/stream ({n} open)", s["idle_tls_uss_kb"], s["idle_mux_uss_kb"], ".1f"),
        f"| snapshot() with {s['snapshot_streams']} streams | - | {s['snapshot_ms']:.2f} ms "
        f"({s['snapshot_ms']:.1f}% of a core at 10 Hz) |",
        "",
        "Spread over rounds, MB/s (min / median / max):",
        "",
        "| load | anchor | Wicket |",
        "|---|---|---|",
        f"| 1 stream | {spread(rounds, 'one_tls', 'MBps')} | {spread(rounds, 'one_mux', 'MBps')} |",
        f"| {args.streams} streams | {spread(rounds, 'multi_tls', 'MBps')} | "
        f"{spread(rounds, 'multi_mux', 'MBps')} |",
        "",
        f"Targets: 1 stream >= {TARGET_RATIO}x anchor: {ok(s['one_target_met'])} "
        f"({s['one_ratio']:.2f}x); idle < {TARGET_IDLE_KB:g} KB/stream: "
        f"{ok(s['idle_target_met'])} ({s['idle_mux_rss_kb']:.1f} KB).",
        "CPU = utime+stime of client + server process over the transfer; idle memory = "
        "growth of both processes' RSS/USS per stream (each stream echoed once, then held).",
    ]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "machine": platform.machine(),
        "kernel": platform.release(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 MiB, 1 round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--gib", type=float, help="GiB per run (default 1)")
    parser.add_argument("--streams", type=int, default=8, help="parallel streams (default 8)")
    parser.add_argument("--idle", type=int, help="idle streams (default 1000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.gib = args.gib or (1 / 32 if quick else 1.0)
    args.idle = args.idle or (100 if quick else 1000)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mux-bench-") as tmp:
        pki = make_pki(Path(tmp))
        (Path(tmp) / "ca.crt").write_bytes(pki.ca_pem)
        res = run(args, Path(tmp))
    summary = summarise(res, args)
    text = table(summary, res, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": environment(),
        "wall_s": time.time() - started,
        "summary": summary,
        **res,
    }
    for name in (f"mux-{stamp}", "mux-latest"):
        (args.out / f"{name}.md").write_text(text + "\n")
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {args.out}/mux-{stamp}.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
