"""Running exec and attach for the demo: real local processes, with or without a pty.

The transports (``sessions.py``) fill an ``ExecIO`` from the wire (stdin, resizes) and
give it a ``send`` function for output; the functions here do the process side and
return the ``Status`` JSON that ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.protocol.k8s_channels import (
    Channel,
    TerminalSize,
    status_exit_code,
    status_failure,
    status_success,
)

READ_SIZE = 32 * 1024
FIRST_RESIZE_WAIT = 1.0
"""With a tty, how long to wait for the client's first size before starting the command."""
KILL_GRACE = 2.0

SendFn = Callable[[int, bytes], Awaitable[None]]


async def _discard(channel: int, data: bytes) -> None:
    return None


@dataclass(frozen=True)
class ExecRequest:
    """The query of an exec/attach request."""

    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @property
    def output_channels(self) -> list[Channel]:
        chans = [Channel.STDOUT] if self.stdout else []
        if self.stderr and not self.tty:
            chans.append(Channel.STDERR)
        return chans


@dataclass
class ExecIO:
    """One session's streams, as seen by the process side."""

    stdin: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(64))
    """Client stdin chunks; None at EOF."""
    resize: asyncio.Queue[TerminalSize] = field(default_factory=asyncio.Queue)
    send: SendFn = _discard
    """Writes output on a channel (stdout/stderr), waiting for the transport."""


class ProcessTable:
    """Every child process the demo started, so ``stop()`` can kill them all."""

    def __init__(self) -> None:
        self._procs: set[asyncio.subprocess.Process] = set()

    def add(self, proc: asyncio.subprocess.Process) -> None:
        self._procs.add(proc)

    def discard(self, proc: asyncio.subprocess.Process) -> None:
        self._procs.discard(proc)

    async def kill_all(self) -> None:
        procs = list(self._procs)
        for proc in procs:
            kill_group(proc)
        for proc in procs:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), KILL_GRACE)
        self._procs.clear()


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the process and its process group (each child runs in its own session)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _exit_status(returncode: int) -> bytes:
    code = returncode if returncode >= 0 else 128 - returncode
    return status_success() if code == 0 else status_exit_code(code)


def _set_controlling_tty() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_winsize(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


async def _pump_out(stream: asyncio.StreamReader, channel: int, io: ExecIO) -> None:
    while True:
        try:
            data = await stream.read(READ_SIZE)
        except OSError:  # EIO: the pty's last holder is gone
            return
        if not data:
            return
        await io.send(channel, data)


async def _pump_in(
    io: ExecIO, write: Callable[[bytes], Awaitable[None]], close: Callable[[], None]
) -> None:
    broken = False
    while (data := await io.stdin.get()) is not None:
        if broken:
            continue
        try:
            await write(data)
        except OSError:
            broken = True  # keep draining the queue so the transport never blocks
    close()


async def run_command(
    request: ExecRequest, cwd: Path, env: dict[str, str], io: ExecIO, procs: ProcessTable
) -> bytes:
    """Run the command to its end; the result is the session's final Status."""
    if not request.command:
        return status_failure("you must specify at least one command", "BadRequest", 400)
    if request.tty:
        return await _run_pty(request, cwd, env, io, procs)
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *request.command,
            stdin=pipe if request.stdin else devnull,
            stdout=pipe if request.stdout else devnull,
            stderr=pipe if request.stderr else devnull,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return _start_failure(request, exc)
    procs.add(proc)
    tasks: list[asyncio.Task[None]] = []
    try:
        if proc.stdout is not None:
            tasks.append(asyncio.create_task(_pump_out(proc.stdout, Channel.STDOUT, io)))
        if proc.stderr is not None:
            tasks.append(asyncio.create_task(_pump_out(proc.stderr, Channel.STDERR, io)))
        feeder = None
        if proc.stdin is not None:
            stdin = proc.stdin

            async def write(data: bytes) -> None:
                stdin.write(data)
                await stdin.drain()

            feeder = asyncio.create_task(_pump_in(io, write, stdin.close))
        await asyncio.gather(*tasks)
        returncode = await proc.wait()
        if feeder is not None:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if proc.stdin is not None:
                proc.stdin.close()
        return _exit_status(returncode)
    finally:
        await _reap(proc, tasks, procs)


async def _reap(
    proc: asyncio.subprocess.Process, helpers: list[asyncio.Task[None]], procs: ProcessTable
) -> None:
    """However the session ended: kill the command's group, stop its pumps, wait for it."""
    kill_group(proc)
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    await proc.wait()
    procs.discard(proc)


def _start_failure(request: ExecRequest, exc: OSError) -> bytes:
    return status_failure(
        f"exec: {request.command[0]!r}: {exc.strerror or exc}", "InternalError", 500
    )


async def _run_pty(
    request: ExecRequest, cwd: Path, env: dict[str, str], io: ExecIO, procs: ProcessTable
) -> bytes:
    loop = asyncio.get_running_loop()
    size: TerminalSize | None = None
    with contextlib.suppress(asyncio.TimeoutError):
        size = await asyncio.wait_for(io.resize.get(), FIRST_RESIZE_WAIT)
    master, slave = os.openpty()
    writer_fd = -1
    try:
        if size is not None:
            set_winsize(master, size)
        env = {"TERM": "xterm-256color", **env}
        try:
            proc = await asyncio.create_subprocess_exec(
                *request.command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_set_controlling_tty,
            )
        except OSError as exc:
            return _start_failure(request, exc)
        finally:
            os.close(slave)
        procs.add(proc)
        writer_fd = os.dup(master)
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", buffering=0)
        )
        master = -1  # owned by the transport now

        async def write(data: bytes) -> None:
            await _write_fd(writer_fd, data)

        async def resizes() -> None:
            while True:
                set_winsize(writer_fd, await io.resize.get())

        helpers = [asyncio.create_task(resizes())]
        if request.stdin:
            helpers.append(asyncio.create_task(_pump_in(io, write, lambda: None)))
        try:
            await _pump_out(reader, Channel.STDOUT, io)
            returncode = await proc.wait()
            return _exit_status(returncode)
        finally:
            transport.close()
            await _reap(proc, helpers, procs)
    finally:
        for fd in (master, writer_fd):
            if fd >= 0:
                os.close(fd)


async def _write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)


# -- attach --------------------------------------------------------------------------

CHAT_PROGRAM = r"""
import sys, threading, time
def tick():
    n = 0
    while True:
        time.sleep(2)
        n += 1
        print(f"[chat] still here ({n})", flush=True)
threading.Thread(target=tick, daemon=True).start()
print("[chat] hello: type a line and I will answer it", flush=True)
for line in sys.stdin:
    print(f"[chat] you said: {line.rstrip()}", flush=True)
"""


class PodProcess:
    """A pod's long-running main process: ``kubectl attach`` joins it, logs record it."""

    def __init__(
        self,
        cwd: Path,
        env: dict[str, str],
        procs: ProcessTable,
        on_output: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._cwd = cwd
        self._env = env
        self._procs = procs
        self._on_output = on_output
        self._listeners: set[asyncio.Queue[bytes | None]] = set()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            "-c",
            CHAT_PROGRAM,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._cwd,
            env=self._env,
            start_new_session=True,
        )
        self._procs.add(self._proc)
        self._task = asyncio.create_task(self._relay())

    async def _relay(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while data := await self._proc.stdout.read(READ_SIZE):
            await self._on_output(data)
            for queue in list(self._listeners):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(data)
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def stop(self) -> None:
        if self._proc is not None:
            kill_group(self._proc)
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            await self._proc.wait()
            self._procs.discard(self._proc)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def attach(self, request: ExecRequest, io: ExecIO) -> bytes:
        """Stream the process's output (and feed it stdin) until it ends or we are cancelled."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(256)
        self._listeners.add(queue)
        feeder = None
        proc = self._proc
        if request.stdin and proc is not None and proc.stdin is not None:
            stdin = proc.stdin

            async def write(data: bytes) -> None:
                stdin.write(data)
                await stdin.drain()

            feeder = asyncio.create_task(_pump_in(io, write, lambda: None))
        try:
            while (data := await queue.get()) is not None:
                if request.stdout:
                    await io.send(Channel.STDOUT, data)
            return status_success()
        finally:
            self._listeners.discard(queue)
            if feeder is not None:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
