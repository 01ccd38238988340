"""GUI load test: UI loop lag and tunnel throughput with the main window open vs not.

``python -m tests.bench.gui_bench [--streams 200] [--seconds 5] [--out DIR]``

A real relay, agent, client session and local endpoint run on the app's core thread
(``gui.core_thread.CoreThread``), exactly as in the desktop app. A child process opens
``--streams`` connections to the local endpoint and writes as fast as the tunnel takes
(kubectl is another process, too); another child is the agent's target and discards
what arrives. Phases alternate ``without, with, with, without, without, with`` the main window shown
and updating at 5 Hz, so both see the same machine noise. Throughput is the growth of
the endpoint streams' byte counters between two core snapshots; lag is measured on the
Qt thread by ``gui.lag.LagMonitor`` (20 ms timer, lateness per tick) in every phase.

With ``--requests-per-second R`` an inspect endpoint's requests arrive at ``R``/s too (a
synthetic source in the core's snapshot, kept to the endpoint's 500-request history;
one in ten an exec that stays open 2 s), and the "with" phases show the request
inspector (the Requests tab) instead of the streams table (issue 15: lag p99 < 50 ms
with the inspector open, 200 streams moving data, requests at 200/s).

Targets (the desktop issue): lag p99 < 50 ms with the window open, and throughput with
the window >= 0.9x without it. Exit status 1 when a target is missed. Results go to
``bench-results/gui-<time>.{md,json}`` and ``gui-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
LAG_TARGET = 0.050
RATIO_TARGET = 0.9
PHASES = ("without", "with", "with", "without", "without", "with")


# -- children ------------------------------------------------------------------------


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, daemon=True).start()


async def _sink() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(256 * 1024):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    _stop_on_stdin_eof(asyncio.get_running_loop(), stop)
    async with asyncio.timeout(1800):
        await stop.wait()
    server.close()


async def _load(host: str, port: int, streams: int) -> None:
    payload = os.urandom(CHUNK)
    stop = asyncio.Event()
    _stop_on_stdin_eof(asyncio.get_running_loop(), stop)

    async def one() -> None:
        _, writer = await asyncio.open_connection(host, port)
        with contextlib.suppress(OSError):
            while not stop.is_set():
                writer.write(payload)
                await writer.drain()
        writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(streams)]
    print("STARTED", flush=True)
    async with asyncio.timeout(1800):
        await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)


class Child:
    """A child process of this module (own process group, ends on stdin EOF)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.gui_bench", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# -- the orchestrator ----------------------------------------------------------------


class RequestFeed:
    """An inspect endpoint's snapshot with requests arriving at ``rate`` per second.

    The requests are made up (their bytes move nowhere): what is measured is the window
    showing them, at the rate and history a busy inspect endpoint would have.
    """

    HISTORY = 500

    def __init__(self, rate: float) -> None:
        from core.protocol.redaction import record_headers

        self.rate = rate
        self.started = time.time()
        self._made: dict[tuple[int, bool], Any] = {}
        self._headers = record_headers(
            [
                (b"User-Agent", b"kubectl/v1.33.0"),
                (b"Authorization", b"Bearer x"),
                (b"Accept", b"*/*"),
            ]
        )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _request(self, n: int, now: float) -> Any:
        from core.aio.inspected import InspectedStream

        opened = self.started + n / self.rate
        exec_ = n % 10 == 0
        ended = opened + (2.0 if exec_ else 0.05)
        closed = now >= ended
        cached = self._made.get((n, closed))
        if cached is not None:
            return cached
        path = f"/api/v1/namespaces/default/pods/p{n}" + ("/exec" if exec_ else "")
        made = InspectedStream(
            n,
            "bench",
            "local",
            None,
            opened,
            ended if closed else None,
            100 + n % 7,
            2000 + n % 13,
            "closed" if closed else "open",
            "done" if closed else None,
            "GET",
            path,
            101 if exec_ else 200,
            "kubectl exec" if exec_ else "kubectl get",
            "accepted" if exec_ else "none",
            "websocket" if exec_ else None,
            "v5.channel.k8s.io" if exec_ else None,
            (("kind", "exec"), ("command", "sh")) if exec_ else (),
            "command=sh&container=p&stdout=true" if exec_ else "limit=500",
            self._headers,
            self._headers,
        )
        self._made[(n, closed)] = made
        return made

    def snapshot(self) -> Any:
        from core.aio.endpoint import EndpointSnapshot

        now = time.time()
        last = int((now - self.started) * self.rate)
        first = max(0, last - self.HISTORY)
        self._made = {k: v for k, v in self._made.items() if k[0] >= first}
        streams = [self._request(n, now) for n in range(first, last)]
        return EndpointSnapshot("bench", "127.0.0.1:1", "inspect", "online", None, None, streams)


def _bytes_and_time(core: Any) -> tuple[int, float]:
    snap = core.latest
    total = sum(s.bytes_up for s in snap.streams if s.component.startswith("endpoint:"))
    return total, snap.taken_at


async def _measure(args: argparse.Namespace, tmp: Path, sink_port: int) -> dict[str, Any]:
    from core.service import WicketService
    from gui.app import QtThreadCollector, freeze_heap
    from gui.backend import Backend
    from gui.core_thread import CoreThread
    from gui.lag import LagMonitor
    from gui.main_window import MainWindow
    from tests.gui.lab import start_lab_parts

    core = CoreThread(WicketService(publish_hz=5))
    await asyncio.to_thread(core.start)
    load: Child | None = None
    window: MainWindow | None = None
    collector: QtThreadCollector | None = None
    try:
        (host, port), _ = await core.call(
            start_lab_parts(core.service, tmp, target=("127.0.0.1", sink_port))
        )
        load = await asyncio.to_thread(
            Child, "--role", "load", "--connect", f"{host}:{port}", "--streams", str(args.streams)
        )
        assert await asyncio.to_thread(load.line) == "STARTED"

        def open_streams() -> int:
            return sum(
                1
                for s in core.latest.streams
                if s.component.startswith("endpoint:") and s.closed_at is None
            )

        async with asyncio.timeout(60):
            while open_streams() < args.streams:
                await asyncio.sleep(0.2)
        if args.requests_per_second > 0:
            feed = RequestFeed(args.requests_per_second)
            await core.call(core.service.add("endpoint:bench", feed, feed.snapshot))
        backend = Backend(tmp / "app", core=core)
        lag = LagMonitor()
        lag.start()
        window = MainWindow(backend, lag)
        window.all_hops.setChecked(args.all_hops)
        freeze_heap()  # as gui.app.run_app does once the window exists
        collector = QtThreadCollector()
        await asyncio.sleep(args.warmup)
        phases = []
        for phase in PHASES:
            if phase == "with":
                window.show()
                window.start()
                window.debug_dock.show()
                if args.requests_per_second > 0:
                    window.tabs.setCurrentWidget(window.inspector)
            else:
                window.stop()
                window.hide()
                lag.start()
            await asyncio.sleep(1.0)
            lag.reset()
            b0, t0 = _bytes_and_time(core)
            await asyncio.sleep(args.seconds)
            b1, t1 = _bytes_and_time(core)
            stats = lag.stats()
            phases.append(
                {
                    "phase": phase,
                    "mb_per_s": (b1 - b0) / max(t1 - t0, 1e-6) / 1e6,
                    "lag_p50_ms": stats["p50"] * 1000,
                    "lag_p99_ms": stats["p99"] * 1000,
                    "lag_max_ms": stats["max"] * 1000,
                    "lag_samples": int(stats["samples"]),
                    "rows": window.proxy.rowCount(),
                    "requests": window.inspector.proxy.rowCount(),
                    "update_ms_max": window.max_update_ms,
                }
            )
            print(json.dumps(phases[-1]), flush=True)
        return {"phases": phases, "open_streams": open_streams()}
    finally:
        if collector is not None:
            collector.stop()
        if window is not None:
            window.stop()
            window.close()
        if load is not None:
            await asyncio.to_thread(load.close)
        await core.stop_async()


def _summary(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    phases = result["phases"]
    with_ = [p for p in phases if p["phase"] == "with"]
    without = [p for p in phases if p["phase"] == "without"]
    ratio = statistics.mean(p["mb_per_s"] for p in with_) / max(
        statistics.mean(p["mb_per_s"] for p in without), 1e-9
    )
    lag_p99 = max(p["lag_p99_ms"] for p in with_)
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "streams": args.streams,
        "all_hops": args.all_hops,
        "requests_per_second": args.requests_per_second,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "seconds_per_phase": args.seconds,
        "throughput_ratio": ratio,
        "lag_p99_ms_with_window": lag_p99,
        "targets_met": ratio >= RATIO_TARGET and lag_p99 < LAG_TARGET * 1000,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **result,
    }


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# GUI load test ({summary['when']})",
        "",
        f"{summary['streams']} streams writing at full speed through relay + agent + "
        f"endpoint on the core thread; {summary['seconds_per_phase']} s per phase.",
        "",
        f"Requests arriving at {summary['requests_per_second']:g}/s (the window shows the "
        "request inspector)."
        if summary["requests_per_second"]
        else "No inspected requests (the window shows the streams table).",
        "",
        "| phase | MB/s | lag p50 ms | lag p99 ms | lag max ms | table rows | requests |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in summary["phases"]:
        lines.append(
            f"| {p['phase']} window | {p['mb_per_s']:.1f} | {p['lag_p50_ms']:.1f} | "
            f"{p['lag_p99_ms']:.1f} | {p['lag_max_ms']:.1f} | {p['rows']} | {p['requests']} |"
        )
    verdict = "met" if summary["targets_met"] else "MISSED"
    lines += [
        "",
        f"Throughput with / without the window: **{summary['throughput_ratio']:.2f}x** "
        f"(target >= {RATIO_TARGET}x); UI lag p99 with the window: "
        f"**{summary['lag_p99_ms_with_window']:.1f} ms** (target < {LAG_TARGET * 1000:.0f} ms)"
        f": targets {verdict}.",
    ]
    return "\n".join(lines) + "\n"


def orchestrate(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    from PySide6.QtWidgets import QApplication

    from gui.aio import qasync_loop_factory
    from gui.app import tune_gil

    tune_gil()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    sink = Child("--role", "sink")
    try:
        sink_port = int(sink.line().split()[1])
        with tempfile.TemporaryDirectory(prefix="wicket-gui-bench-") as tmp:
            os.environ["XDG_DATA_HOME"] = tmp
            with asyncio.Runner(loop_factory=qasync_loop_factory()) as runner:
                result = runner.run(_measure(args, Path(tmp), sink_port))
    finally:
        sink.close()
    summary = _summary(result, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = _markdown(summary)
    for name in (f"gui-{stamp}", "gui-latest"):
        (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
        (out / f"{name}.md").write_text(text)
    print(text)
    return 0 if summary["targets_met"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gui_bench")
    parser.add_argument("--role", choices=["orchestrate", "sink", "load"], default="orchestrate")
    parser.add_argument("--connect", default="")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--all-hops",
        action="store_true",
        help="show every hop (relay, agent) of every stream: 3x the rows of the default view",
    )
    parser.add_argument(
        "--requests-per-second",
        type=float,
        default=0.0,
        metavar="R",
        help="inspected requests arriving at R/s, the request inspector shown (issue 15: 200)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="MS",
        help="GIL switch interval instead of the app's (gui.app.SWITCH_INTERVAL)",
    )
    parser.add_argument("--out", default=str(REPO / "bench-results"))
    args = parser.parse_args(argv)
    if args.role == "sink":
        asyncio.run(_sink())
        return 0
    if args.role == "load":
        host, _, port = args.connect.rpartition(":")
        asyncio.run(_load(host, int(port), args.streams))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
