"""Chaos: SIGKILL (and freeze) the agent or the relay mid-traffic, then bring it back.

Clients must see an error, never a hang, within the keepalive bound (the relay pings a
peer silent for 25 s and waits 5 s for the answer; docs/mux.md); the endpoint must
refuse new connections fast while the far side is down; the survivors reconnect on
their own (backoff capped at 5 s) once it is back.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.tunnel.harness import (
    Interrupted,
    Tunnel,
    echo,
    interrupted_transfer,
    payload,
    refusal,
    wait_echo,
)

#: the relay's keepalive interval + timeout (core.aio.relay.RELAY_MUX: 25 + 5 s; a peer
#: notices a dead relay within 20 + 5 s, core.aio.peer.TUNNEL_MUX) + slack
KEEPALIVE_BOUND = 32.0


async def _start_transfers(
    t: Tunnel, count: int
) -> tuple[list[Interrupted], list[asyncio.Task[None]]]:
    """``count`` long echo transfers, returned once every one of them is flowing."""
    results = [Interrupted() for _ in range(count)]
    tasks = [
        asyncio.create_task(interrupted_transfer(t.endpoint_port, r, threshold=2 << 20))
        for r in results
    ]
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(r.flowing.wait() for r in results))
        for r in results:
            assert r.error is None, f"a transfer ended before the chaos: {r.error}"
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return results, tasks


async def _broken_within(
    results: list[Interrupted], tasks: list[asyncio.Task[None]], since: float, bound: float
) -> float:
    """Every transfer ended in an error; the latest end, in seconds after ``since``."""
    try:
        async with asyncio.timeout(bound + 5):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        assert r.error is not None and r.error != "complete", f"transfer not cut: {r.error}"
        assert r.ended_at is not None
    latest = max(r.ended_at for r in results if r.ended_at is not None) - since
    assert latest <= bound, f"a client waited {latest:.1f} s for its error"
    return latest


async def _refusals(t: Tunnel, n: int = 10) -> float:
    times = [await refusal(t.endpoint_port, timeout=5) for _ in range(n)]
    return max(times)


async def test_agent_killed_mid_transfer_then_restarted(tunnel: Tunnel) -> None:
    assert tunnel.agent is not None and tunnel.connect is not None
    results, tasks = await _start_transfers(tunnel, 4)

    killed_at = tunnel.kill9(tunnel.agent)
    cut = await _broken_within(results, tasks, killed_at, KEEPALIVE_BOUND)
    errors = sorted({(r.error or "").split(":")[0] for r in results})
    print(f"agent SIGKILL: all 4 transfers failed within {cut:.3f} s ({errors})")

    # While it is down, the endpoint answers at once and says why.
    async def offline() -> bool:
        return not await tunnel.cluster_online()

    await tunnel.wait_until(offline, KEEPALIVE_BOUND, "cluster offline at the relay")
    worst = await _refusals(tunnel)
    print(f"agent down: refusals within {worst * 1000:.1f} ms")
    assert worst < 0.1
    doc = await tunnel.status(tunnel.connect)
    assert doc is not None and doc["snapshot"]["last_refusal"].startswith("agent_offline")

    # Restart (same state dir, already enrolled): the first connection works within 5 s.
    agent = tunnel.spawn_agent()
    took = await wait_echo(tunnel.endpoint_port, timeout=5.0)
    since_spawn = time.monotonic() - agent.started_at
    print(f"agent restart: first echo {since_spawn:.2f} s after the spawn")
    assert since_spawn <= 5.0, f"first echo {since_spawn:.2f} s after the agent started"
    assert took <= 5.0
    await echo(tunnel.endpoint_port, payload(100_000, seed=9), timeout=10)
    assert "enrolling" not in agent.log(), "the restarted agent enrolled again"

    # Nothing of the dead session stays open in the relay or connect.
    for proc in (tunnel.relay, tunnel.connect):
        assert proc is not None
        doc = await tunnel.status(proc)
        assert doc is not None
        assert not [s for s in doc["snapshot"]["streams"] if s["closed_at"] is None]


@pytest.mark.slow
async def test_relay_killed_and_restarted_peers_recover(tunnel: Tunnel) -> None:
    assert tunnel.relay is not None and tunnel.agent is not None and tunnel.connect is not None
    agent_pid, connect_pid = tunnel.agent.pid, tunnel.connect.pid
    results, tasks = await _start_transfers(tunnel, 2)

    killed_at = tunnel.kill9(tunnel.relay)
    cut = await _broken_within(results, tasks, killed_at, KEEPALIVE_BOUND)
    print(f"relay SIGKILL: transfers failed within {cut:.3f} s")

    # No session: the endpoint ends new connections at once.
    async def disconnected() -> bool:
        assert tunnel.connect is not None
        doc = await tunnel.status(tunnel.connect)
        return doc is not None and doc["snapshot"]["session"] != "online"

    await tunnel.wait_until(disconnected, KEEPALIVE_BOUND, "connect notices the relay is gone")
    worst = await _refusals(tunnel)
    print(f"relay down: refusals within {worst * 1000:.1f} ms")
    assert worst < 0.1
    await asyncio.sleep(2.0)  # let the peers' backoff grow a little, as in real outages

    tunnel.spawn_relay()  # same state dir, same port
    await tunnel.wait_relay_ready()
    back_at = time.monotonic()
    took = await wait_echo(tunnel.endpoint_port, timeout=15.0)
    print(f"relay restart: first echo {took:.2f} s after the relay was back")
    assert took <= 15.0
    assert tunnel.agent.alive() and tunnel.agent.pid == agent_pid
    assert tunnel.connect.alive() and tunnel.connect.pid == connect_pid
    agent_doc = await tunnel.status(tunnel.agent)
    assert agent_doc is not None
    assert agent_doc["snapshot"]["state"] == "online"
    assert agent_doc["snapshot"]["reconnects"] >= 1
    assert await tunnel.cluster_online()
    assert time.monotonic() - back_at <= 15.0


@pytest.mark.slow
async def test_frozen_agent_is_detected_by_keepalive(tunnel: Tunnel) -> None:
    """A blackholed agent (SIGSTOP: its socket stays open, nothing answers)."""
    assert tunnel.agent is not None
    results, tasks = await _start_transfers(tunnel, 2)
    tunnel.agent.signal_group(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        cut = await _broken_within(results, tasks, frozen_at, KEEPALIVE_BOUND)
        print(f"agent frozen: transfers failed within {cut:.2f} s (keepalive)")

        async def offline() -> bool:
            return not await tunnel.cluster_online()

        await tunnel.wait_until(offline, KEEPALIVE_BOUND, "cluster offline at the relay")
        assert time.monotonic() - frozen_at <= KEEPALIVE_BOUND + 1
        assert await refusal(tunnel.endpoint_port) < 0.1
    finally:
        tunnel.agent.signal_group(signal.SIGCONT)
    # Thawed, it finds its session dead and reconnects by itself.
    took = await tunnel.wait_agent_online(timeout=15)
    await wait_echo(tunnel.endpoint_port, timeout=10)
    print(f"agent thawed: online again after {took:.2f} s")


@pytest.mark.slow
async def test_agent_kill_restart_cycles_leak_nothing(tunnel: Tunnel) -> None:
    """Twenty SIGKILL/restart cycles under traffic: no leak (counted after the first
    four), no cross-wired stream."""
    assert tunnel.relay is not None and tunnel.connect is not None
    port = tunnel.endpoint_port
    survivors = (tunnel.relay, tunnel.connect)

    async def traffic(cycle: int) -> None:
        datas = [payload(1000 + i * 37, seed=cycle * 100 + i) for i in range(20)]
        await asyncio.gather(*(echo(port, d, timeout=10) for d in datas))  # checks each

    await traffic(0)
    # The first cycles raise the heap's high-water mark (buffers of the transfers cut
    # mid-flight, more of them the slower the machine): not a leak. Counted from after
    # them, a leak still grows with every cycle.
    warm_up, cycles = 4, 20
    before: dict[str, dict[str, int]] = {}
    start = time.monotonic()
    for cycle in range(1, cycles + 1):
        if cycle == warm_up + 1:
            before = await tunnel.counters(*survivors)
        results, tasks = await _start_transfers(tunnel, 2)
        assert tunnel.agent is not None
        killed_at = tunnel.kill9(tunnel.agent)
        await _broken_within(results, tasks, killed_at, KEEPALIVE_BOUND)
        tunnel.spawn_agent()
        await wait_echo(port, timeout=5.0)
        await traffic(cycle)
    elapsed = time.monotonic() - start
    for proc in survivors:
        doc = await tunnel.status(proc)
        assert doc is not None
        assert not [s for s in doc["snapshot"]["streams"] if s["closed_at"] is None]
    after = await tunnel.counters(*survivors)
    print(f"{cycles} agent kill/restart cycles in {elapsed:.1f} s; {before} -> {after}")
    for name in before:
        b, a = before[name], after[name]
        assert a["tasks"] <= b["tasks"] + 5, f"{name}: tasks {b['tasks']} -> {a['tasks']}"
        assert a["fds"] <= b["fds"] + 5, f"{name}: fds {b['fds']} -> {a['fds']}"
        assert a["rss_kib"] - b["rss_kib"] <= 10 * 1024, f"{name}: RSS {b} -> {a}"
