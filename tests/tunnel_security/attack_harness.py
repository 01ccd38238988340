"""Measuring attacks on a relay process (issue 14, docs/security.md "The relay faces the
internet").

The relay, the agent of ``prod``, ``wicket connect`` and the echo target run as real
processes (``tests.tunnel.harness.Tunnel``); the attackers run in the test's event loop,
each from its own 127.0.0.x source. Throughout, ``Meter`` samples the relay's RSS and
``Legit`` times a fresh 1 KiB echo through the local endpoint. Every attack is bounded in
count and in time and talks to loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from core.aio.channel import ControlChannel, expect
from core.aio.dial import Enrollment, connect_mux, enroll, hello
from core.aio.mux import MuxConnection
from core.pki.identity import Role
from core.pki.tokens import Token, parse
from core.protocol.mux import MuxConfig
from tests.tunnel.harness import Tunnel, echo

MiB = 1 << 20
LEGIT_BYTES = 1024
#: The attacker's own sessions send no keepalive (it must not time out on itself).
QUIET_MUX = MuxConfig(keepalive_interval=None)
#: "10 s after an attacker stops reading, relay CPU is below 10 %" (issue 14).
CPU_AFTER = 10.0
CPU_WINDOW = 2.0
_HEADER = struct.Struct(">BBHII")
DATA, PING = 0, 2
SYN, ACK = 0x1, 0x2


def frame(ftype: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(0, ftype, flags, stream_id, length) + payload


class Meter:
    """The relay process's RSS, sampled every 50 ms; its CPU over a window."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.proc.memory_info().rss))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peak(self, since: float) -> int:
        return max((rss for at, rss in self.samples if at >= since), default=0)

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    async def cpu(self, window: float = CPU_WINDOW) -> float:
        """The relay's CPU use (percent of one core) over the next ``window`` seconds."""
        before = self.proc.cpu_times()
        await asyncio.sleep(window)
        after = self.proc.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        return float(100.0 * used / window)


@dataclass
class Legit:
    """A fresh 1 KiB echo through the local endpoint, again and again, timed."""

    port: int
    results: list[tuple[float, float | None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        data = os.urandom(LEGIT_BYTES)
        while True:
            start = time.monotonic()
            took: float | None = None
            with contextlib.suppress(OSError, TimeoutError, AssertionError):
                await echo(self.port, data, timeout=5.0)
                took = time.monotonic() - start
            self.results.append((start, took))
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def stats(self, since: float) -> tuple[float, float, int]:
        """(p99 seconds, success ratio, count) of the echoes started since ``since``."""
        window = [took for at, took in self.results if at >= since]
        done = sorted(t for t in window if t is not None)
        if not window:
            return 0.0, 0.0, 0
        p99 = done[min(len(done) - 1, int(len(done) * 0.99))] if done else float("inf")
        return p99, len(done) / len(window), len(window)


@dataclass
class Row:
    attack: str
    rss_peak: int  # bytes over the idle baseline (what the bound is about)
    rss_own: int  # bytes over the RSS when this attack began (earlier ones excluded)
    p99: float
    success: float
    echoes: int
    cpu_after: float | None  # percent, CPU_AFTER s after the attacker stopped reading
    note: str = ""

    def line(self) -> str:
        cpu = "-" if self.cpu_after is None else f"{self.cpu_after:.0f}%"
        return (
            f"| {self.attack:<26} | {self.rss_peak / MiB:+7.1f} MB | {self.rss_own / MiB:+7.1f} MB"
            f" | {self.p99 * 1000:6.0f} ms"
            f" | {self.success * 100:6.1f}% ({self.echoes:>3}) | {cpu:>5} | {self.note}"
        )


HEADER = (
    "| attack                     | RSS peak   | its own    | legit p99 | success (n)   | CPU+10s"
    " | note\n"
    "|----------------------------|------------|------------|-----------|---------------|--------"
    "-|-----"
)


def table(rows: list[Row], baseline: int) -> str:
    lines = [f"relay idle RSS {baseline / MiB:.1f} MB", HEADER, *(r.line() for r in rows)]
    return "\n".join(lines)


# -- the bench ---------------------------------------------------------------------------


@dataclass
class Bench:
    tunnel: Tunnel
    meter: Meter
    legit: Legit
    baseline: int = 0
    rows: list[Row] = field(default_factory=list)
    _sources: int = 20

    @property
    def relay_host_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.tunnel.relay_port

    def source(self) -> str:
        """A fresh attacking address (its own per-source caps and throttle)."""
        self._sources += 1
        return f"127.0.0.{self._sources}"

    async def measure(
        self, name: str, attack: Callable[[Bench], Awaitable[float | None]], note: str = ""
    ) -> Row:
        start = time.monotonic()
        rss_start = self.meter.now()
        cpu_after = await attack(self)
        await asyncio.sleep(0.5)  # the echoes in flight finish inside the window
        p99, success, count = self.legit.stats(start)
        peak = self.meter.peak(start)
        row = Row(name, peak - self.baseline, peak - rss_start, p99, success, count, cpu_after)
        row.note = note
        self.rows.append(row)
        print(row.line(), flush=True)
        return row

    def token(self, *args: str) -> Token:
        state = ("--state-dir", str(self.tunnel.relay_dir))
        address = ("--address", self.tunnel.relay_address)
        return parse(self.tunnel.wicket("relay", *state, *args, *state, *address).strip())

    async def enroll(self, role: Role, name: str) -> Enrollment:
        if role == Role.AGENT:
            token = self.token("join-token", "--cluster", name)
        else:
            token = self.token("client-token", "--name", name, "--all-clusters")
        return await enroll(token, self.tunnel.base / f"attacker-{name}", role, QUIET_MUX)

    async def cluster_online(self, name: str) -> bool:
        assert self.tunnel.relay is not None
        doc = await self.tunnel.status(self.tunnel.relay)
        assert doc is not None
        return any(c["name"] == name and c["online"] for c in doc["snapshot"]["clusters"])


# -- attackers' connections ---------------------------------------------------------------


def _insecure() -> ssl.SSLContext:
    """No client certificate, no server check: what anyone on the internet has."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def anonymous(
    bench: Bench, source: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection without a certificate from ``source`` (``rcvbuf``: tiny window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    try:
        await asyncio.get_running_loop().sock_connect(sock, bench.relay_host_port)
        return await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=_insecure(), server_hostname="relay"), 5
        )
    except BaseException:
        sock.close()
        raise


async def send_bounded(writer: asyncio.StreamWriter, chunks: list[bytes], timeout: float) -> int:
    """Write ``chunks`` until done, the relay closes, or ``timeout``; the bytes sent."""
    sent = 0
    with contextlib.suppress(OSError, TimeoutError, RuntimeError):
        async with asyncio.timeout(timeout):
            for chunk in chunks:
                if writer.transport.is_closing():
                    break
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
    return sent


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


async def mux_session(bench: Bench, creds: Enrollment) -> tuple[MuxConnection, ControlChannel]:
    conn = await connect_mux(creds.relay, creds.context(), QUIET_MUX)
    return conn, await hello(conn, creds.identity)


def end(conn: MuxConnection, *streams: ControlChannel | asyncio.StreamWriter) -> None:
    """Close the streams we made (no ResourceWarning), then the session."""
    for stream in streams:
        stream.close()
    conn.abort()


async def register(channel: ControlChannel, cluster: str) -> None:
    channel.send({"type": "register", "cluster": cluster, "target": "127.0.0.1:9"})
    expect(await channel.recv(10.0), "registered")


def stop_reading(conn: MuxConnection) -> None:
    """The attacker's socket is never read again (its TLS layer included)."""
    transport = conn._transport
    assert transport is not None
    transport.pause_reading()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


async def wait_since(start: float, seconds: float) -> None:
    await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))


async def start_bench(tunnel: Tunnel) -> Bench:
    await tunnel.start_all()
    assert tunnel.relay is not None
    meter = Meter(tunnel.relay.pid)
    legit = Legit(tunnel.endpoint_port)
    bench = Bench(tunnel, meter, legit)
    await echo(tunnel.endpoint_port, os.urandom(LEGIT_BYTES))  # warm: the session is up
    meter.start()
    legit.start()
    await asyncio.sleep(2.0)
    bench.baseline = max(rss for _, rss in meter.samples)
    return bench


async def stop_bench(bench: Bench, out: Path) -> str:
    await bench.legit.stop()
    await bench.meter.stop()
    text = table(bench.rows, bench.baseline)
    out.write_text(text + "\n")
    return text
