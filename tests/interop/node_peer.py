"""Start and stop the Node yamux test peer (``peer.mjs``) and read its JSON-line events.

The peer prints one JSON object per line on stdout; a reader thread collects them so tests can
wait for events either blocking (``wait_for``) or from a running asyncio loop
(``wait_for_async``, which never blocks the loop). See README.md for the command protocol.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

INTEROP_DIR = Path(__file__).resolve().parent
PEER_JS = INTEROP_DIR / "peer.mjs"
NODE_MODULES = INTEROP_DIR / "node_modules"

Event = dict[str, Any]


class NodePeerError(RuntimeError):
    """The node peer could not be started, failed, or an awaited event never came."""


def node_executable() -> str | None:
    """The ``node`` binary on PATH, or None."""
    return shutil.which("node")


def node_missing_reason() -> str | None:
    """Why the peer cannot run here (for ``pytest.skip``), or None when it can."""
    if node_executable() is None:
        return "node is not on PATH (the yamux interop peer needs Node.js >= 20)"
    return None


class NodePeer:
    """A running ``node peer.mjs <mode> ...`` subprocess.

    Use as a context manager (or call ``stop``) so the process is always reaped and its pipes
    closed. ``timeout_ms`` is the peer's own hard self-timeout.
    """

    def __init__(self, mode: str, *args: str, timeout_ms: int = 60_000) -> None:
        node = node_executable()
        if node is None:
            raise NodePeerError("node is not on PATH")
        if not (NODE_MODULES / "@libp2p" / "yamux").is_dir():
            raise NodePeerError(
                f"{NODE_MODULES} is missing: run `npm ci` in tests/interop (make test-deps)"
            )
        self.argv = [node, str(PEER_JS), mode, "--timeout-ms", str(timeout_ms), *args]
        self.port: int | None = None
        self._events: list[Event] = []
        self._stderr: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._proc = subprocess.Popen(
            self.argv,
            cwd=INTEROP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def server(cls, *args: str, timeout_ms: int = 60_000, ready_timeout: float = 15.0) -> Self:
        """Start ``server --port 0`` and wait for its ``listening`` event (sets ``.port``)."""
        peer = cls("server", "--port", "0", *args, timeout_ms=timeout_ms)
        try:
            peer.port = int(peer.wait_for("listening", timeout=ready_timeout)["port"])
        except BaseException:
            peer.stop()
            raise
        return peer

    @classmethod
    def client(cls, port: int, *args: str, timeout_ms: int = 60_000) -> Self:
        """Start ``client --port PORT ...``."""
        return cls("client", "--port", str(port), *args, timeout_ms=timeout_ms)

    # -- reader threads ------------------------------------------------------------------------

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                event = {"event": "invalid_line", "line": text}
            if not isinstance(event, dict):
                event = {"event": "invalid_line", "line": text}
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._stderr.append(line)

    # -- queries -------------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """A snapshot of every event printed so far."""
        with self._cond:
            return list(self._events)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def find(self, event: str, **fields: object) -> list[Event]:
        """All events named ``event`` whose ``fields`` match exactly."""
        return [e for e in self.events if _matches(e, event, fields)]

    def summary(self) -> Event | None:
        """The final ``summary`` event, once printed."""
        found = self.find("summary")
        return found[-1] if found else None

    def _lookup(self, event: str, fields: dict[str, object]) -> tuple[Event | None, bool]:
        for e in self._events:
            if _matches(e, event, fields):
                return e, False
        return None, self._eof

    def wait_for(self, event: str, *, timeout: float = 30.0, **fields: object) -> Event:
        """Block until an event named ``event`` with matching ``fields`` was printed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found, eof = self._lookup(event, fields)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if eof or remaining <= 0:
                    break
                self._cond.wait(remaining)
        raise NodePeerError(self._describe(f"no {event!r} event matching {fields}"))

    async def wait_for_async(self, event: str, *, timeout: float = 30.0, **fields: object) -> Event:
        """Like ``wait_for`` but polls, so a running asyncio loop is never blocked."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                found, eof = self._lookup(event, fields)
            if found is not None:
                return found
            if eof or time.monotonic() >= deadline:
                raise NodePeerError(self._describe(f"no {event!r} event matching {fields}"))
            await asyncio.sleep(0.01)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the peer to exit; returns its exit code (kills it on timeout)."""
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise NodePeerError(self._describe(f"did not exit within {timeout} s")) from None
        self._join_readers()
        return code

    async def wait_async(self, timeout: float = 60.0) -> int:
        """Like ``wait`` without blocking the asyncio loop."""
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None:
            if time.monotonic() >= deadline:
                self.stop()
                raise NodePeerError(self._describe(f"did not exit within {timeout} s"))
            await asyncio.sleep(0.02)
        return self.wait(5.0)

    def assert_ok(self, timeout: float = 60.0) -> Event:
        """Wait for exit; raise unless it exited 0 with ``summary.ok``. Returns the summary."""
        code = self.wait(timeout)
        summary = self.summary()
        if code != 0 or summary is None or summary.get("ok") is not True:
            raise NodePeerError(self._describe(f"exit code {code}"))
        return summary

    # -- teardown ------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> int:
        """Terminate (then kill) the peer if still running; reap it and close its pipes."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._join_readers()
        return self._proc.returncode

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(5.0)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _describe(self, problem: str) -> str:
        events = self.events
        return (
            f"node peer {' '.join(self.argv[2:])}: {problem}\n"
            f"returncode={self._proc.poll()}\n"
            f"last events:\n{_tail(json.dumps(e) for e in events)}\n"
            f"stderr:\n{_tail(self.stderr.splitlines())}"
        )


def _matches(e: Event, event: str, fields: dict[str, object]) -> bool:
    return e.get("event") == event and all(e.get(k) == v for k, v in fields.items())


def _tail(lines: Iterable[str], n: int = 25) -> str:
    kept = list(lines)[-n:]
    return "\n".join(kept) if kept else "(none)"
