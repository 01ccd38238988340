"""Relay, agent and ``wicket connect`` as separate processes, plus a loopback target.

``Tunnel`` starts each role through the real ``wicket`` command line (one process group
each) with its own state dir, a private ``XDG_RUNTIME_DIR`` (so ``wicket status`` sees
this test's processes only) and free loopback ports. Readiness is read from the status
sockets: the relay lists the cluster online, the agent and the connect session say
``online``. ``close()`` kills every process group, also when the test failed.

The target is this module run as a program (``python -m tests.tunnel.harness target``):
an echo server that, on the client's EOF, answers the SHA-256 of everything it received
and closes. So one connection checks both directions and the half-close at once.

Client helpers (``echo``, ``transfer``, ``refusal``) run in the test's event loop and
always end their connection; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from core.aio.eventloop import raise_open_files_limit
from core.aio.status import read_all_status

REPO = Path(__file__).resolve().parents[2]
WICKET = Path(sys.executable).with_name("wicket")
CLUSTER = "prod"
CLIENT = "laptop"
DIGEST_SIZE = 32
TARGET_READY = "target listening"
CHUNK = 256 * 1024

Doc = dict[str, Any]


def free_port(stable: bool = False) -> int:
    """A loopback port nobody listens on.

    ``stable``: below the ephemeral range, for a port a restarted process binds again
    (a random outgoing connection cannot take it in between).
    """
    for _ in range(200):
        want = random.randrange(20000, 32000) if stable else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", want))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise OSError("no free loopback port")


class Process:
    """One child in its own process group; output goes to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL the whole group and reap the child."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; the exit status (None: killed)."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(timeout)
        return self.popen.returncode

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self._log.close()

    def __repr__(self) -> str:
        return f"<Process {self.name} pid {self.pid}>"


class Tunnel:
    """Relay, agent, connect and target processes for one test (``close()`` in teardown)."""

    def __init__(self, base: Path, *, log_level: str = "info", program: Path = WICKET) -> None:
        raise_open_files_limit()  # (the target and this process; children inherit it)
        self.base = base
        self.log_level = log_level
        self.program = program  # the ``wicket`` to run (tests/packaging: the bundle)
        #: A command put before a role's (relay, agent, connect) own, e.g. a sandbox.
        self.wrap: dict[str, list[str]] = {}
        # A short private dir: status socket paths must fit in sun_path.
        self.runtime = Path(tempfile.mkdtemp(prefix="wkt-"))
        self.status_dir = self.runtime / "wicket"
        self.relay_dir = base / "relay"
        self.agent_dir = base / "agent"
        self.client_dir = base / "client"
        self.relay_port = free_port(stable=True)
        self.endpoint_port = free_port(stable=True)
        self.target_port = free_port(stable=True)
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_DATA_HOME": str(base / "data"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.procs: list[Process] = []
        self.relay: Process | None = None
        self.agent: Process | None = None
        self.connect: Process | None = None
        self.target: Process | None = None
        #: Extra ``wicket relay`` arguments (limits, public endpoints).
        self.relay_args: list[str] = []
        self._join_file = base / "join.token"
        self._client_file = base / "client.token"

    @property
    def relay_address(self) -> str:
        return f"127.0.0.1:{self.relay_port}"

    # -- commands ----------------------------------------------------------------------

    def wicket(self, *args: str, timeout: float = 30.0) -> str:
        """Run one short ``wicket`` command; its stdout (CalledProcessError on failure)."""
        result = subprocess.run(
            [str(self.program), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return result.stdout

    def issue_tokens(self) -> None:
        # ``relay`` itself requires --state-dir too (argparse), so it is given twice.
        state = ("--state-dir", str(self.relay_dir))
        join = self.wicket(
            "relay", *state, "join-token", *state,
            "--cluster", CLUSTER, "--address", self.relay_address,
        )  # fmt: skip
        client = self.wicket(
            "relay", *state, "client-token", *state,
            "--name", CLIENT, "--cluster", CLUSTER, "--address", self.relay_address,
        )  # fmt: skip
        for path, text in ((self._join_file, join), (self._client_file, client)):
            path.write_text(text.strip() + "\n")
            path.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> Process:
        n = sum(1 for p in self.procs if p.name == name)
        log = self.base / (f"{name}.log" if n == 0 else f"{name}-{n}.log")  # one per run
        proc = Process(name, [*self.wrap.get(name, []), *argv], self.env, log)
        self.procs.append(proc)
        return proc

    def _wicket_argv(self, *args: str) -> list[str]:
        return [str(self.program), "--log-level", self.log_level, *args]

    # -- starting ----------------------------------------------------------------------

    async def start_target(self) -> Process:
        argv = [sys.executable, "-m", "tests.tunnel.harness", "target"]
        self.target = self._spawn("target", [*argv, "--port", str(self.target_port)])
        target = self.target

        async def ready() -> bool:
            _alive(target)
            return TARGET_READY in target.log()

        await self.wait_until(ready, 10, "target")
        return target

    def spawn_relay(self) -> Process:
        """Start the relay (same state dir and port every time); does not wait."""
        if not self._join_file.exists():
            self.issue_tokens()
        self.relay = self._spawn(
            "relay",
            self._wicket_argv(
                "relay",
                "--listen",
                self.relay_address,
                "--state-dir",
                str(self.relay_dir),
                *self.relay_args,
            ),
        )
        return self.relay

    async def wait_relay_ready(self, timeout: float = 15.0) -> float:
        """Until the relay answers on its status socket (it listens by then)."""
        assert self.relay is not None
        relay = self.relay

        async def ready() -> bool:
            _alive(relay)
            return await self.status(relay) is not None

        return await self.wait_until(ready, timeout, "relay status socket")

    async def start_relay(self, timeout: float = 15.0) -> Process:
        relay = self.spawn_relay()
        await self.wait_relay_ready(timeout)
        return relay

    def spawn_agent(self) -> Process:
        """Start the agent (same state dir: enrolled once, then mutual TLS); no wait."""
        self.agent = self._spawn(
            "agent",
            self._wicket_argv(
                "agent",
                "--token-file", str(self._join_file),
                "--target", f"127.0.0.1:{self.target_port}",
                "--state-dir", str(self.agent_dir),
            ),
        )  # fmt: skip
        return self.agent

    async def start_agent(self, timeout: float = 20.0) -> Process:
        agent = self.spawn_agent()
        await self.wait_agent_online(timeout)
        return agent

    async def start_connect(self, timeout: float = 20.0) -> Process:
        self.connect = self._spawn(
            "connect",
            self._wicket_argv(
                "connect",
                "--token-file", str(self._client_file),
                "--cluster", CLUSTER,
                "--listen", f"127.0.0.1:{self.endpoint_port}",
                "--state-dir", str(self.client_dir),
            ),
        )  # fmt: skip
        await self.wait_connect_online(timeout)
        return self.connect

    async def start_all(self) -> None:
        await self.start_target()
        await self.start_relay()
        await self.start_agent()
        await self.start_connect()

    # -- readiness ---------------------------------------------------------------------

    async def wait_agent_online(self, timeout: float = 20.0) -> float:
        """Until the agent says online and the relay lists the cluster online."""
        assert self.agent is not None
        agent = self.agent

        async def ready() -> bool:
            _alive(agent)
            doc = await self.status(agent)
            return (
                doc is not None
                and doc["snapshot"]["state"] == "online"
                and await self.cluster_online()
            )

        return await self.wait_until(ready, timeout, "agent online")

    async def wait_connect_online(self, timeout: float = 20.0) -> float:
        assert self.connect is not None
        connect = self.connect

        async def ready() -> bool:
            _alive(connect)
            doc = await self.status(connect)
            return doc is not None and doc["snapshot"]["session"] == "online"

        return await self.wait_until(ready, timeout, "connect session online")

    async def cluster_online(self) -> bool:
        if self.relay is None or not self.relay.alive():
            return False
        doc = await self.status(self.relay)
        if doc is None:
            return False
        clusters = doc["snapshot"]["clusters"]
        return any(c["name"] == CLUSTER and c["online"] for c in clusters)

    async def wait_until(
        self, ready: Callable[[], Awaitable[bool]], timeout: float, what: str
    ) -> float:
        """Poll ``ready`` every 20 ms; the seconds it took, AssertionError past ``timeout``."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if await ready():
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not ready after {timeout} s\n{self.logs()}")
            await asyncio.sleep(0.02)

    # -- status ------------------------------------------------------------------------

    async def status(self, proc: Process, timeout: float = 2.0) -> Doc | None:
        """``proc``'s status document, or None if it does not answer (yet)."""
        docs = await read_all_status(self.status_dir, timeout)
        for doc in docs:
            if doc["pid"] == proc.pid:
                return doc
        return None

    async def counters(self, *procs: Process) -> dict[str, dict[str, int]]:
        """The ``process`` counters (tasks, fds, rss_kib) of each process, by name."""
        out: dict[str, dict[str, int]] = {}
        for proc in procs:
            doc = await self.status(proc, timeout=5.0)
            assert doc is not None, f"{proc.name} does not answer its status socket"
            out[proc.name] = dict(doc["process"])
        return out

    async def status_cli(self) -> list[Doc]:
        """``wicket status --json`` for this test's processes (the real CLI)."""
        proc = await asyncio.create_subprocess_exec(
            str(self.program), "status", "--json",
            env=self.env, cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode(errors="replace")
        docs: list[Doc] = json.loads(out)
        return docs

    # -- chaos -------------------------------------------------------------------------

    def kill9(self, proc: Process) -> float:
        """SIGKILL ``proc``'s group and reap it; the monotonic time of the kill."""
        at = time.monotonic()
        proc.kill()
        assert not proc.alive(), f"{proc.name} survived SIGKILL"
        return at

    # -- teardown and diagnostics ------------------------------------------------------

    def logs(self, tail: int = 40) -> str:
        parts = []
        for proc in self.procs:
            lines = proc.log().splitlines()[-tail:]
            rc = proc.popen.returncode
            parts.append(f"--- {proc.name} pid {proc.pid} rc {rc} ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=3.0)
            proc.close()
        shutil.rmtree(self.runtime, ignore_errors=True)


def _alive(proc: Process) -> None:
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}")


# -- client helpers ----------------------------------------------------------------------


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


async def read_to_eof(reader: asyncio.StreamReader, limit: int) -> bytes:
    """Everything up to EOF (at most ``limit`` bytes)."""
    chunks = []
    total = 0
    while total <= limit:
        data = await reader.read(CHUNK)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


async def echo(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` then EOF, read to EOF; checks the echo and the target's digest.

    Returns what came back. ``AssertionError`` on a wrong answer, ``OSError`` or
    ``TimeoutError`` if the tunnel fails.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            writer.write_eof()
            back = await read_to_eof(reader, len(data) + DIGEST_SIZE)
        finally:
            await _close(writer)
    expected = data + hashlib.sha256(data).digest()
    assert back == expected, f"echo mismatch: {len(back)} bytes back for {len(data)} sent"
    return back


async def try_echo(port: int, data: bytes, timeout: float = 5.0) -> bool:
    try:
        await echo(port, data, timeout)
    except (OSError, TimeoutError, AssertionError):
        return False
    return True


async def wait_echo(port: int, timeout: float, data: bytes = b"ping" * 16) -> float:
    """Retry an echo until one works; the seconds it took (AssertionError past timeout)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await try_echo(port, data, timeout=min(5.0, timeout)):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"no echo through the tunnel within {timeout} s")


async def transfer(port: int, data: bytes, timeout: float = 120.0) -> tuple[bytes, bytes, int]:
    """Send ``data`` while reading the echo; (sha256 of the echo, target's digest, length).

    The upload and the download run at the same time (the echo flows back while the
    rest is still going up); the digest arrives after our EOF (half-close).
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:

            async def send() -> None:
                view = memoryview(data)
                for offset in range(0, len(data), CHUNK):
                    writer.write(view[offset : offset + CHUNK])
                    await writer.drain()
                writer.write_eof()

            async def receive() -> tuple[bytes, bytes, int]:
                hasher = hashlib.sha256()
                tail = b""
                total = 0
                while True:
                    chunk = await reader.read(CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    joined = tail + chunk
                    cut = max(0, len(joined) - DIGEST_SIZE)
                    hasher.update(joined[:cut])
                    tail = joined[cut:]
                return hasher.digest(), tail, total - DIGEST_SIZE

            _, result = await asyncio.gather(send(), receive())
        finally:
            await _close(writer)
    return result


async def refusal(port: int, timeout: float = 5.0) -> float:
    """Open a connection that the endpoint must end; the seconds until it did.

    Sends the start of a TLS record (as kubectl's ClientHello would) and expects EOF or
    a reset, possibly after a fatal TLS alert record (0x15), never tunnelled data;
    ``TimeoutError`` if it hangs.
    """
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionError:
            return time.monotonic() - start
        try:
            writer.write(b"\x16\x03\x01\x00\x05hello")
            data = await read_to_eof(reader, 64)
            assert data == b"" or data[:1] == b"\x15", f"a refused connection got {data!r}"
        except ConnectionError:
            pass
        finally:
            await _close(writer)
    return time.monotonic() - start


class Interrupted:
    """How a transfer that was meant to be cut ended (see ``interrupted_transfer``)."""

    def __init__(self) -> None:
        self.received = 0
        self.flowing = asyncio.Event()  # set once ``threshold`` bytes came back
        self.error: str | None = None  # "eof", "reset: ..." or "complete"
        self.ended_at: float | None = None


async def interrupted_transfer(
    port: int, result: Interrupted, *, total: int = 1 << 30, threshold: int = 4 << 20
) -> None:
    """Echo up to ``total`` bytes until the tunnel breaks; fills in ``result``.

    ``result.flowing`` is set once ``threshold`` bytes are back, so the caller can break
    something mid-transfer. An EOF before ``total`` bytes plus the digest, or a reset,
    is the error the test wants; ``complete`` means nothing broke.
    """
    block = payload(CHUNK, 7)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        result.error = f"connect: {exc!r}"
        result.ended_at = time.monotonic()
        result.flowing.set()
        return

    async def send() -> None:
        with contextlib.suppress(OSError):
            for _ in range(total // CHUNK):
                writer.write(block)
                await writer.drain()
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                done = result.received == total + DIGEST_SIZE
                result.error = "complete" if done else "eof"
                break
            result.received += len(data)
            if result.received >= threshold:
                result.flowing.set()
    except OSError as exc:
        result.error = f"reset: {exc!r}"
    finally:
        result.ended_at = time.monotonic()
        result.flowing.set()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.transport.abort()
        await _close(writer)


# -- the target server (run as a program) ------------------------------------------------


async def _serve_target(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hasher = hashlib.sha256()
        try:
            while data := await reader.read(CHUNK):
                hasher.update(data)
                writer.write(data)
                await writer.drain()
            writer.write(hasher.digest())
            await writer.drain()
        except OSError:
            writer.transport.abort()
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    server = await asyncio.start_server(
        handle, "127.0.0.1", port, backlog=4096, reuse_address=True, limit=CHUNK
    )
    print(f"{TARGET_READY} on 127.0.0.1:{port}", flush=True)
    async with server:
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tunnel.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    target = sub.add_parser("target", help="echo server answering sha256 on EOF")
    target.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve_target(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
