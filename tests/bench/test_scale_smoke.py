"""The relay scale benchmark's mechanics, at a tiny scale (not its targets).

``scale_bench`` with 20 agents and 20 clients: every session comes up on the relay,
connections go through random clusters, and after the relay restarts every agent and
client has a new session, with nothing throttled and no failed handshake. The sshd
anchor runs too (3 sessions) where sshd is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS = CLIENTS = 20


def _sshd() -> bool:
    return (
        os.access("/usr/sbin/sshd", os.X_OK)
        and Path("/run/sshd").is_dir()
        and shutil.which("ssh") is not None
        and shutil.which("ssh-keygen") is not None
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_tiny_scale_run_brings_everyone_up_and_back(tmp_path: Path) -> None:
    anchor = 3 if _sshd() else 0
    argv = [sys.executable, "-m", "tests.bench.scale_bench", "--out", str(tmp_path)]
    argv += ["--agents", str(AGENTS), "--clients", str(CLIENTS), "--per-host", "10"]
    argv += ["--runs", "1", "--warm", "2", "--settle", "0.2", "--idle-seconds", "0.5"]
    argv += ["--load-seconds", "1", "--concurrency", "4", "--anchor-sessions", str(anchor)]
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "KB per agent session" in done.stdout
    doc = json.loads((tmp_path / "scale-latest.json").read_text())
    [run] = doc["runs"]
    assert doc["setup"]["enrolled"] == AGENTS + CLIENTS
    # Sessions up, as the relay itself lists them.
    assert (run["agents_online"], run["clients_online"]) == (AGENTS, CLIENTS)
    assert run["connect_agents"]["online"] == AGENTS
    mem = run["mem"]
    assert mem["clients"]["rss"] > mem["warm"]["rss"] > 0
    assert run["idle"]["relay_cpu_s"] >= 0 and run["idle"]["sessions"] == AGENTS + CLIENTS
    # Connections through random clusters, each echoed by that cluster's agent.
    load = run["load"]
    assert load["conns"] > 0 and load["failures"] == {}
    # The restart: everyone back in a new session, nothing throttled, no failed handshake.
    restart = run["restart"]
    assert (restart["agents_back"], restart["clients_back"]) == (AGENTS, CLIENTS)
    assert restart["relay_lists"] == [AGENTS, CLIENTS]
    assert 0 < restart["agents_back_s"] < 60
    assert restart["refused"].get("throttled", 0) == 0
    assert restart["refused"].get("tls", 0) == 0
    if anchor:
        [ssh] = doc["anchor"]
        assert ssh["sessions"] == anchor
        assert ssh["mem"]["all"]["processes"] > ssh["mem"]["fresh"]["processes"]
