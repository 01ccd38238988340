"""The agent's heartbeat file, for container probes (``wicket agent-health``).

A probe cannot reach a Unix socket in another process's runtime directory inside a
read-only container as reliably as it can read a file in the agent's own state dir, so
the agent rewrites ``agent-health.json`` every few seconds: its state and the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from core.aio.lifecycle import cancel_and_wait
from core.pki import files

HEALTH_FILE = "agent-health.json"
INTERVAL = 5.0

log = logging.getLogger("wicket.health")


class Heartbeat:
    """Writes ``{"state": …, "updated_at": …}`` to the state dir every ``interval``."""

    def __init__(
        self, state_dir: Path, state: Callable[[], str], interval: float = INTERVAL
    ) -> None:
        self.path = state_dir / HEALTH_FILE
        self._state = state
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._beat(), name="wicket-heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        with contextlib.suppress(OSError):
            self.path.unlink()

    def write(self) -> None:
        files.ensure_private_dir(self.path.parent)
        doc = {"state": self._state(), "updated_at": time.time()}
        files.write_private(self.path, json.dumps(doc).encode())

    async def _beat(self) -> None:
        """Write every ``interval``, and within half a second of a state change."""
        written: tuple[str, float] | None = None
        while True:
            state, now = self._state(), time.monotonic()
            if written is None or state != written[0] or now - written[1] >= self._interval:
                try:
                    self.write()
                    written = (state, now)
                except OSError as exc:
                    log.warning("cannot write the heartbeat %s: %s", self.path, exc)
            await asyncio.sleep(0.5)


def check(state_dir: Path, require_connected: bool, max_age: float, now: float) -> str | None:
    """None when healthy, else why not (for the probe's output)."""
    path = state_dir / HEALTH_FILE
    try:
        doc = json.loads(path.read_bytes())
        state, updated = str(doc["state"]), float(doc["updated_at"])
    except FileNotFoundError:
        return f"{path}: no heartbeat (is the agent running?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path}: unreadable heartbeat ({exc})"
    age = now - updated
    if age > max_age:
        return f"heartbeat is {age:.0f} s old (limit {max_age:.0f} s)"
    if state == "failed":
        return "the agent failed (see its log)"
    if require_connected and state != "online":
        return f"not connected to the relay (state: {state})"
    return None
