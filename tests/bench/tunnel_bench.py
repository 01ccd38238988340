"""Tunnel benchmark: Wicket's public endpoint beside ``ssh -L`` and a direct connection.

``python -m tests.bench.tunnel_bench [--quick] [--rounds N] [--anchors DIR] [--out DIR]
[-- extra bench.py options]``

The measuring is done by the shared anchors harness (``../shared/bench`` beside the
clone, or ``--anchors`` / ``$WICKET_ANCHORS``): one stdlib load generator and one target
server for every path, interleaved rounds, CPU and memory of each path's whole process
tree. This adds the path ``wicket``: client → relay public endpoint → (TLS + mux) →
agent → target, in separate processes (``tests/bench/wicket_path.py``), and runs it with
the harness's ``direct`` and ``ssh`` paths only. The harness's own tables are printed,
then a summary against the issue's targets (ratios to ``ssh -L``): one-stream and
8-stream MB/s and connections per second at least 1.0x, CPU s/GiB at most ssh's, RTT p50
and CPU per connection at most 1.2x, under 10 KB PSS per idle connection with 1,000
held. Results go to ``bench-results/tunnel-<stamp>/`` (raw harness output) and
``bench-results/tunnel-latest.json``.

``--ab ROOT`` (and/or ``--ab-env KEY=VALUE``) adds the path ``wicket-b``: the same
processes from another checkout (say ``git archive`` of the commit before a change) or
with another environment, in the same run, so a lever is judged by its ratio to the
other path round by round, not across runs on a noisy machine.

Exit status: 0 when every path ran (targets missed are reported, not fatal; ``--strict``
makes them fatal), 1 when a path failed, 2 when the harness cannot be found.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import compiled

ROOT = Path(__file__).resolve().parents[2]
WICKET_PATH = Path(__file__).resolve().parent / "wicket_path.py"
ANCHORS_DEFAULT = ROOT.parent / "shared" / "bench"
ANCHOR = "ssh"
PATHS = ("direct", ANCHOR, "wicket")
#: ``--ab ROOT``: the same path run from another checkout (or with other env), same run.
B_PATH = "wicket-b"
#: Targets from the issue, relative to ``ssh -L``.
TARGET_IDLE_KB = 10.0


@dataclass(frozen=True)
class Metric:
    label: str
    metric: str  # the harness's metric name ("idle" is read separately)
    field: str
    higher_is_better: bool
    digits: int = 0


METRICS = (
    Metric("1-stream MB/s", "bulk", "MBps", True),
    Metric("8-stream MB/s", "multi", "MBps", True),
    Metric("RTT p50 us", "ping", "p50_us", False),
    Metric("RTT p99 us", "ping", "p99_us", False),
    Metric("conn/s", "conn", "conn_per_s", True),
    Metric("CPU s/GiB 1-stream", "bulk", "tunnel_cpu_s_per_GiB", False, 2),
    Metric("CPU s/GiB 8-stream", "multi", "tunnel_cpu_s_per_GiB", False, 2),
    Metric("CPU us/RTT", "ping", "tunnel_cpu_us_per_rtt", False),
    Metric("CPU us/conn", "conn", "tunnel_cpu_us_per_conn", False),
)
#: (metric label, target) pairs checked against ssh; None for the idle-memory bound.
RATIO_TARGETS = {
    "1-stream MB/s": 1.0,
    "8-stream MB/s": 1.0,
    "RTT p50 us": 1.2,
    "conn/s": 1.0,
    "CPU s/GiB 1-stream": 1.0,
    "CPU s/GiB 8-stream": 1.0,
    "CPU us/conn": 1.2,
}


def find_anchors(given: Path | None) -> Path:
    env = os.environ.get("WICKET_ANCHORS")
    for candidate in (given, Path(env) if env else None, ANCHORS_DEFAULT):
        if candidate is not None and (candidate / "anchors.sh").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"the anchors harness is missing: expected {ANCHORS_DEFAULT}/anchors.sh "
        "(a copy of shared/ beside the clone), or pass --anchors DIR / set WICKET_ANCHORS"
    )


def path_line(name: str = "wicket", env: list[str] | None = None) -> str:
    """The harness path definition (its placeholders in braces); ``env`` (``KEY=VALUE``)
    goes through ``env``, a plain program, since the harness runs no shell."""
    prefix = shlex.join(["env", *env]) + " " if env else ""
    return (
        f"{name} | {prefix}{{PYTHON}} {WICKET_PATH} --entry {{ENTRY}} --target {{TARGET}}"
        " --relay-port {MID} --dir {DIR}"
    )


def b_env(args: argparse.Namespace) -> list[str] | None:
    """The B path's environment: ``PYTHONPATH`` of ``--ab ROOT`` and each ``--ab-env``."""
    if args.ab is None and not args.ab_env:
        return None
    root = [f"PYTHONPATH={args.ab.resolve()}"] if args.ab is not None else []
    return root + list(args.ab_env)


def run_harness(anchors: Path, run_dir: Path, args: argparse.Namespace, extra: list[str]) -> int:
    argv = [str(anchors / "anchors.sh"), "--no-default-paths", "--path", path_line()]
    paths = list(PATHS)
    env_b = b_env(args)
    if env_b is not None:
        argv += ["--path", path_line(B_PATH, env_b)]
        paths.append(B_PATH)
    # direct is always kept; ssh comes from the harness's own paths.conf
    argv += ["--paths-file", str(anchors / "paths.conf"), "--only", ",".join(paths)]
    argv += ["--out", str(run_dir)]
    if args.quick:
        argv += ["--quick", "--no-iperf"]
    if args.rounds is not None:
        argv += ["--rounds", str(args.rounds)]
    argv += extra
    env = dict(os.environ, PYTHON=sys.executable)  # the venv: wicket_path finds `wicket`
    print("$", shlex.join(argv), flush=True)
    print("(anchors.sh may list socat/stunnel4/haproxy as missing: those paths are not run here)")
    return subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode


def median_of(res: dict[str, Any], path: str, metric: str, field: str) -> float | None:
    rounds = res["paths"].get(path, {}).get("rounds", {}).get(metric, [])
    values = [r[field] for r in rounds if field in r]
    return statistics.median(values) if values else None


def idle_of(res: dict[str, Any], path: str) -> tuple[float | None, int | None]:
    idle = res["paths"].get(path, {}).get("idle")
    if not idle:
        return None, None
    return float(idle["pss_KB_per_conn"]), int(res["args"]["idle_n"])


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}" if value < 100 or digits else f"{value:,.0f}"


def summarise(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lines = [
        "## Wicket public endpoint vs ssh -L (medians over rounds)",
        "",
        "| metric | direct | ssh -L | wicket | wicket/ssh | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {"metrics": {}, "targets": {}}
    for m in METRICS:
        vals = {p: median_of(res, p, m.metric, m.field) for p in PATHS}
        ours, ssh = vals["wicket"], vals[ANCHOR]
        ratio = ours / ssh if ours is not None and ssh else None
        target = RATIO_TARGETS.get(m.label)
        met: bool | None = None
        want = ""
        if target is not None and ratio is not None:
            met = ratio >= target if m.higher_is_better else ratio <= target
        if target is not None:
            want = f"{'>=' if m.higher_is_better else '<='} {target:.1f}x ssh"
            summary["targets"][m.label] = met
        direct = "-" if m.label.startswith("CPU") else fmt(vals["direct"], m.digits)
        lines.append(
            f"| {m.label} | {direct} | {fmt(ssh, m.digits)} | {fmt(ours, m.digits)} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | {want} | "
            f"{'' if target is None else {True: 'yes', False: 'NO', None: 'n/a'}[met]} |"
        )
        summary["metrics"][m.label] = {**vals, "ratio_to_ssh": ratio}
    kb = {p: idle_of(res, p) for p in PATHS}
    ours_kb, n = kb["wicket"]
    ssh_kb = kb[ANCHOR][0]
    met_idle = None if ours_kb is None else ours_kb < TARGET_IDLE_KB
    summary["targets"]["idle KB/conn"] = met_idle
    summary["metrics"]["idle PSS KB/conn"] = {p: kb[p][0] for p in PATHS}
    lines.append(
        f"| idle PSS KB/conn ({n or '?'} held) | - | {fmt(ssh_kb, 1)} | {fmt(ours_kb, 1)} | "
        f"{'n/a' if ours_kb is None or not ssh_kb else f'{ours_kb / ssh_kb:.2f}x'} | "
        f"< {TARGET_IDLE_KB:.0f} KB | {({True: 'yes', False: 'NO', None: 'n/a'})[met_idle]} |"
    )
    lines += ["", f"Wicket's hot path in this run: {compiled.state().reason}."]
    fresh = res["paths"].get("wicket", {}).get("fresh_mem", {})
    if fresh:
        pss, rss = fresh["pss_kb"] / 1024, fresh["rss_kb"] / 1024
        lines += ["", f"Wicket fresh (launcher, relay, agent): PSS {pss:.1f} MB, RSS {rss:.1f} MB."]
    errors = {p: res["paths"].get(p, {}).get("errors", []) for p in PATHS}
    errors = {p: e for p, e in errors.items() if e}
    if errors:
        lines += ["", f"Errors: {json.dumps(errors)}"]
    if res.get("args", {}).get("quick"):
        lines += ["", "--quick: tiny loads, 1 round, 10 ms CPU ticks: a smoke test, not a verdict."]
    missed = [k for k, v in summary["targets"].items() if v is False]
    lines += ["", "Targets: " + ("all met" if not missed else "missed: " + ", ".join(missed))]
    summary["errors"] = errors
    summary["missed"] = missed
    return "\n".join(lines), summary


def paired_ratio(res: dict[str, Any], metric: str, field: str) -> float | None:
    """Median over rounds of B/A, each round's B against the same round's A."""
    rounds = {
        p: [r.get(field) for r in res["paths"].get(p, {}).get("rounds", {}).get(metric, [])]
        for p in ("wicket", B_PATH)
    }
    pairs = zip(rounds["wicket"], rounds[B_PATH], strict=False)
    ratios = [b / a for a, b in pairs if a and b is not None]
    return statistics.median(ratios) if ratios else None


def _ratio(x: float | None, ssh: float | None) -> str:
    return "n/a" if x is None or not ssh else f"{x / ssh:.2f}x"


def ab_table(res: dict[str, Any], env_b: list[str]) -> tuple[str, dict[str, Any]]:
    """A (``wicket``) beside B (``wicket-b``): medians, each to ssh, and B/A by round."""
    lines = [
        f"## A/B: wicket (A, this checkout) vs {B_PATH} (B: {' '.join(env_b)})",
        "",
        "| metric | ssh -L | A | B | A/ssh | B/ssh | B/A (paired by round) |",
        "|---|---|---|---|---|---|---|",
    ]
    out: dict[str, Any] = {}
    for m in METRICS:
        ssh, a, b = (median_of(res, p, m.metric, m.field) for p in (ANCHOR, "wicket", B_PATH))
        pair = paired_ratio(res, m.metric, m.field)
        out[m.label] = {"ssh": ssh, "a": a, "b": b, "b_over_a": pair}
        a_ssh, b_ssh = (_ratio(x, ssh) for x in (a, b))
        lines.append(
            f"| {m.label} | {fmt(ssh, m.digits)} | {fmt(a, m.digits)} | {fmt(b, m.digits)} | "
            f"{a_ssh} | {b_ssh} | {'n/a' if pair is None else f'{pair:.3f}'} |"
        )
    return "\n".join(lines), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Wicket public endpoint vs ssh -L vs direct (shared anchors harness)",
        epilog="Arguments after -- go to the harness (bench.py --help).",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (harness default 5)")
    parser.add_argument("--anchors", type=Path, help=f"harness dir (default {ANCHORS_DEFAULT})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument(
        "--ab",
        type=Path,
        metavar="ROOT",
        help=f"also run the path from checkout ROOT as {B_PATH}, same run (a lever's A/B)",
    )
    parser.add_argument(
        "--ab-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"environment of {B_PATH} only (repeatable; alone: B is this checkout with it)",
    )
    args, extra = parser.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    try:
        anchors = find_anchors(args.anchors)
    except FileNotFoundError as exc:
        print(f"tunnel_bench: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out.resolve()
    run_dir = out / f"tunnel-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rc = run_harness(anchors, run_dir, args, extra)
    results = run_dir / "results.json"
    if not results.is_file():
        print(f"tunnel_bench: the harness wrote no results (rc={rc})", file=sys.stderr)
        return 1
    res = json.loads(results.read_text())
    table, summary = summarise(res)
    env_b = b_env(args)
    if env_b is not None:
        ab, summary["ab"] = ab_table(res, env_b)
        table += "\n\n" + ab
    print()
    print(table)
    (run_dir / "summary.md").write_text(table + "\n")
    doc = {"run_dir": str(run_dir), "args": res.get("args"), "summary": summary}
    (out / "tunnel-latest.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\nraw results: {run_dir}/results.json (it also holds the run's throwaway keys)")
    if (
        rc != 0
        or summary["errors"]
        or any(summary["metrics"][m.label]["wicket"] is None for m in METRICS)
    ):
        return 1
    return 3 if args.strict and summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
