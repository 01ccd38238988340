"""Relay, agent and ``wicket connect`` as three processes: data integrity, scale, leaks.

Each test gets its own processes (``tests.tunnel.harness.Tunnel``); the target is an
echo server that answers the SHA-256 of what it received once the client half-closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.tunnel.harness import (
    CLUSTER,
    DIGEST_SIZE,
    Process,
    Tunnel,
    echo,
    payload,
    read_to_eof,
    refusal,
    transfer,
)

MiB = 1024 * 1024


def _open_streams(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc["snapshot"]["streams"] if s["closed_at"] is None]


async def _quiet(t: Tunnel, *procs: Process, timeout: float = 15.0) -> None:
    """Until no stream is open in any of ``procs`` (closing is asynchronous)."""

    async def ready() -> bool:
        for proc in procs:
            doc = await t.status(proc)
            if doc is None or _open_streams(doc):
                return False
        return True

    await t.wait_until(ready, timeout, "all streams closed")


async def test_bulk_transfer_both_ways_is_byte_exact(tunnel: Tunnel) -> None:
    """64 MiB up while its 64 MiB echo comes down, SHA-256 checked in both directions."""
    size = 64 * MiB
    data = payload(size, seed=1)
    sent = hashlib.sha256(data).digest()
    start = time.monotonic()
    echoed, target_digest, received = await transfer(tunnel.endpoint_port, data, timeout=120)
    elapsed = time.monotonic() - start
    assert received == size
    assert target_digest == sent, "the target received different bytes (upstream)"
    assert echoed == sent, "the client received different bytes (downstream)"
    print(f"64 MiB each way in {elapsed:.2f} s ({2 * size / MiB / elapsed:.0f} MiB/s total)")

    # Every process accounted for the stream, and the real `wicket status --json` sees all.
    assert tunnel.connect is not None
    await _quiet(tunnel, tunnel.connect)
    doc = await tunnel.status(tunnel.connect)
    assert doc is not None
    (stream,) = [s for s in doc["snapshot"]["streams"] if s["bytes_up"] == size]
    assert stream["bytes_down"] == size + DIGEST_SIZE
    assert stream["state"] == "closed" and stream["close_reason"] == "eof"
    roles = sorted(d["role"] for d in await tunnel.status_cli())
    assert roles == ["agent", "connect", "relay"]


async def test_half_close_reply_after_eof(tunnel: Tunnel) -> None:
    """The client sends everything and its EOF before reading; the reply still flows."""
    data = payload(4 * MiB, seed=2)
    async with asyncio.timeout(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.endpoint_port)
        try:
            writer.write(data)
            writer.write_eof()
            await writer.drain()
            await asyncio.sleep(0.2)  # the EOF is through before a byte is read
            assert not reader.at_eof()
            back = await read_to_eof(reader, len(data) + DIGEST_SIZE)
        finally:
            writer.close()
            await writer.wait_closed()
    assert len(back) == len(data) + DIGEST_SIZE
    assert back[: len(data)] == data
    assert back[len(data) :] == hashlib.sha256(data).digest()
    # a tiny one: a request whose whole reply comes after the EOF
    await echo(tunnel.endpoint_port, b"", timeout=10)


async def test_thousand_concurrent_streams(tunnel: Tunnel) -> None:
    """1,000 streams open at once, each with its own checksummed payload."""
    count = 1000
    port = tunnel.endpoint_port
    all_echoed = asyncio.Event()
    release = asyncio.Event()
    echoed = 0

    async def one(i: int) -> None:
        nonlocal echoed
        data = payload(256 + i % 512, seed=1000 + i)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            assert await reader.readexactly(len(data)) == data, f"stream {i} cross-wired"
            echoed += 1
            if echoed == count:
                all_echoed.set()
            await release.wait()  # hold the stream open until all were seen open
            writer.write_eof()
            assert await read_to_eof(reader, DIGEST_SIZE) == hashlib.sha256(data).digest()
        finally:
            writer.close()
            await writer.wait_closed()

    async def check_all_open() -> None:
        try:
            await all_echoed.wait()
            procs = (tunnel.connect, tunnel.relay, tunnel.agent)
            for proc in procs:
                assert proc is not None
                doc = await tunnel.status(proc, timeout=10)
                assert doc is not None
                assert len(_open_streams(doc)) == count, f"{proc.name}: not all streams open"
        finally:
            release.set()

    start = time.monotonic()
    async with asyncio.timeout(90):
        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        # the check runs while every stream is held open
        checker = asyncio.create_task(check_all_open())
        try:
            await asyncio.wait_for(asyncio.shield(checker), 60)
        finally:
            release.set()
            results = await asyncio.gather(*tasks, checker, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} streams failed, first: {errors[0]!r}"
    print(f"{count} concurrent streams in {time.monotonic() - start:.2f} s")
    await _quiet(tunnel, *[p for p in (tunnel.connect, tunnel.relay, tunnel.agent) if p])


@pytest.mark.slow
async def test_ten_thousand_short_streams_do_not_leak(tunnel: Tunnel) -> None:
    """10,000 short streams: tasks, fds and RSS flat in relay, agent and connect."""
    port = tunnel.endpoint_port
    assert tunnel.connect is not None and tunnel.relay is not None and tunnel.agent is not None
    procs = (tunnel.relay, tunnel.agent, tunnel.connect)
    loops = 4  # concurrent client loops; each one strictly sequential
    data = payload(64, seed=3)

    async def run(n: int) -> None:
        async def client(k: int) -> None:
            for _ in range(k):
                await echo(port, data, timeout=10)

        share = [n // loops + (1 if i < n % loops else 0) for i in range(loops)]
        await asyncio.gather(*(client(k) for k in share))

    await run(500)  # warm-up: lazy imports, caches, the stream book's history
    await _quiet(tunnel, *procs)
    before = await tunnel.counters(*procs)
    start = time.monotonic()
    async with asyncio.timeout(120):
        await run(10_000)
    elapsed = time.monotonic() - start
    await _quiet(tunnel, *procs)
    await asyncio.sleep(0.5)
    after = await tunnel.counters(*procs)
    print(f"10,000 streams with {loops} loops in {elapsed:.1f} s; before {before} after {after}")
    for name in before:
        b, a = before[name], after[name]
        assert a["tasks"] <= b["tasks"] + 5, f"{name}: tasks {b['tasks']} -> {a['tasks']}"
        assert a["fds"] <= b["fds"] + 5, f"{name}: fds {b['fds']} -> {a['fds']}"
        growth = a["rss_kib"] - b["rss_kib"]
        assert growth <= 10 * 1024, f"{name}: RSS grew by {growth} KiB"
    for proc in procs:
        doc = await tunnel.status(proc)
        assert doc is not None
        reasons = {s["close_reason"] for s in doc["snapshot"]["streams"]}
        assert reasons <= {"eof"}, f"{proc.name}: {reasons}"
        assert len(doc["snapshot"]["streams"]) <= 200  # the bounded history only
    relay = await tunnel.status(tunnel.relay)
    assert relay is not None
    # the mux stream tables: only each session's control stream is left
    assert [p["streams"] for p in relay["snapshot"]["peers"]] == [1, 1]


async def test_agent_offline_fails_fast(tunnel: Tunnel) -> None:
    """With the agent stopped, a new connection ends within 100 ms; connect says why."""
    assert tunnel.agent is not None and tunnel.connect is not None
    await echo(tunnel.endpoint_port, b"before", timeout=10)
    assert tunnel.agent.stop() == 0

    async def offline() -> bool:
        return not await tunnel.cluster_online()

    await tunnel.wait_until(offline, 10, "cluster offline at the relay")
    times = [await refusal(tunnel.endpoint_port, timeout=5) for _ in range(20)]
    print(f"refusal latency: max {max(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms")
    assert max(times) < 0.1, f"a refusal took {max(times) * 1000:.0f} ms"
    doc = await tunnel.status(tunnel.connect)
    assert doc is not None
    snap = doc["snapshot"]
    assert snap["session"] == "online"  # the relay is there, only the agent is not
    assert snap["last_refusal"].startswith("agent_offline")
    refused = [s for s in snap["streams"] if "agent_offline" in (s["close_reason"] or "")]
    assert len(refused) >= 20 and all(s["state"] == "failed" for s in refused)
    assert "stream refused: agent_offline" in tunnel.connect.log()
    relay = await tunnel.status(tunnel.relay) if tunnel.relay else None
    assert relay is not None
    clusters = {c["name"]: c for c in relay["snapshot"]["clusters"]}
    assert clusters[CLUSTER]["online"] is False


async def test_clients_vanishing_mid_reply_leave_the_session_up(tunnel: Tunnel) -> None:
    """Hundreds of clients that close (reset) while their reply flows: the session stays.

    Regression: the splice's half-close on a TCP socket the client had already reset
    raised out of the mux dispatch and ended the whole relay session, every stream on it.
    """
    assert tunnel.relay is not None and tunnel.connect is not None
    port = tunnel.endpoint_port
    relay_before = await tunnel.status(tunnel.relay)
    assert relay_before is not None
    (client_before,) = [p for p in relay_before["snapshot"]["peers"] if p["role"] == "client"]

    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a bystander
    try:
        first = payload(1000, seed=4)
        writer.write(first)
        assert await reader.readexactly(len(first)) == first

        async def vanish(i: int) -> None:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            try:
                w.write(payload(64 * 1024, seed=i))
                if i % 2:
                    w.write_eof()  # the target's reply (echo, digest) is still coming
                await asyncio.sleep(0.001 * (i % 20))
            except OSError:
                pass  # only the bystander's fate is checked
            finally:
                w.transport.abort()
                w.close()
            del r

        async with asyncio.timeout(60):
            await asyncio.gather(*(vanish(i) for i in range(300)))
            await asyncio.sleep(0.5)
            second = payload(2000, seed=5)
            writer.write(second)
            writer.write_eof()
            back = await read_to_eof(reader, len(second) + DIGEST_SIZE)
    finally:
        writer.close()
        await writer.wait_closed()
    assert back == second + hashlib.sha256(first + second).digest()
    await echo(port, b"after", timeout=10)
    relay_after = await tunnel.status(tunnel.relay)
    assert relay_after is not None
    (client_after,) = [p for p in relay_after["snapshot"]["peers"] if p["role"] == "client"]
    assert client_after["connected_at"] == client_before["connected_at"], "session was replaced"
    assert "session to the relay ended" not in tunnel.connect.log()


def _open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit in /proc")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
async def test_relay_and_agent_raise_their_open_files_limit(tmp_path: Path) -> None:
    """Started with a shell's low soft limit on open files (256 here; 1,024 is usual), the
    relay and the agent raise it to the hard limit before they serve: each session and
    stream is a descriptor. Below 4,096 even then, they say so."""
    t = Tunnel(tmp_path)
    low = ["prlimit", "--nofile=256:8192", "--"]
    lowest = ["prlimit", "--nofile=256:2048", "--"]
    t.wrap = {"relay": low, "agent": lowest}
    try:
        await t.start_target()
        relay = await t.start_relay()
        agent = await t.start_agent()
        assert _open_files_limit(relay.pid) == (8192, 8192)
        assert _open_files_limit(agent.pid) == (2048, 2048)
        assert "open files allowed" not in relay.log()
        assert "only 2048 open files allowed (hard limit 2048)" in agent.log()
    finally:
        t.close()
