"""``wicket agent-health``: the agent's liveness/readiness probe (exit 0 = healthy)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.aio.health import INTERVAL, check


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = sub.add_parser("agent-health", help="probe: is the agent alive (and connected)?")
    health.add_argument("--state-dir", type=Path, required=True)
    health.add_argument(
        "--require-connected",
        action="store_true",
        help="healthy only while the relay session is up",
    )
    health.add_argument(
        "--max-age", type=float, default=6 * INTERVAL, help="oldest acceptable heartbeat (s)"
    )
    health.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    problem = check(args.state_dir, args.require_connected, args.max_age, time.time())
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0
