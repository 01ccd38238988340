"""``wicket agent-health``: the probes the agent bundle's Deployment runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.aio.health import HEALTH_FILE, check
from tests.support.cli import run_wicket
from tests.tunnel.harness import Tunnel


def probe(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_wicket("agent-health", "--state-dir", str(state_dir), *extra)


def test_check_reasons(tmp_path: Path) -> None:
    now = time.time()
    assert "no heartbeat" in (check(tmp_path, False, 30, now) or "")
    (tmp_path / HEALTH_FILE).write_text(json.dumps({"state": "reconnecting", "updated_at": now}))
    assert check(tmp_path, False, 30, now) is None  # alive: liveness passes
    assert "not connected" in (check(tmp_path, True, 30, now) or "")  # not ready
    assert "old" in (check(tmp_path, False, 30, now + 31) or "")
    (tmp_path / HEALTH_FILE).write_text(json.dumps({"state": "failed", "updated_at": now}))
    assert "failed" in (check(tmp_path, False, 30, now) or "")
    (tmp_path / HEALTH_FILE).write_text("{not json")
    assert "unreadable" in (check(tmp_path, False, 30, now) or "")


@pytest.fixture
async def tunnel(tmp_path: Path) -> AsyncIterator[Tunnel]:
    t = Tunnel(tmp_path)
    try:
        await t.start_target()
        await t.start_relay()
        await t.start_agent()
        yield t
    finally:
        t.close()


async def probe_until(state_dir: Path, code: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """The heartbeat follows a state change within half a second: poll briefly."""
    deadline = time.monotonic() + 15
    while True:
        result = await asyncio.to_thread(probe, state_dir, *extra)
        if result.returncode == code or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)


async def test_probes_follow_the_real_agent(tunnel: Tunnel) -> None:
    ready = await probe_until(tunnel.agent_dir, 0, "--require-connected")
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == "healthy"
    assert tunnel.relay is not None
    tunnel.relay.kill()  # the relay goes away: alive, but not ready
    ready = await probe_until(tunnel.agent_dir, 1, "--require-connected")
    assert ready.returncode == 1
    assert "not connected" in ready.stderr
    alive = await asyncio.to_thread(probe, tunnel.agent_dir)
    assert alive.returncode == 0, alive.stderr
    assert tunnel.agent is not None
    tunnel.agent.stop()  # a clean stop removes the heartbeat: not alive any more
    gone = await asyncio.to_thread(probe, tunnel.agent_dir)
    assert gone.returncode == 1
    assert "no heartbeat" in gone.stderr
