"""Running the real kubectl against a demo apiserver from async tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
PROTOCOLS = ("websocket", "spdy")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


class Kubectl:
    """The real kubectl with a fresh HOME, cache dir and our kubeconfig."""

    def __init__(self, home: Path, kubeconfig: Path, protocol: str = "websocket") -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = kubeconfig
        flag = "true" if protocol == "websocket" else "false"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(home / "cache"),
            "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": flag,
            "KUBECTL_PORT_FORWARD_WEBSOCKETS": flag,
            "LANG": "C.UTF-8",
        }

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), *args]

    async def run(self, *args: str, stdin: bytes | None = None, timeout: float = 30) -> Result:
        return await run_process(self.argv(*args), self.env, stdin, timeout)

    async def run_in_script(self, shell_command: str, timeout: float = 30) -> Result:
        """Run under ``script`` so kubectl has a real terminal (for -t)."""
        script = shutil.which("script")
        assert script is not None
        return await run_process(
            [script, "-qec", shell_command, "/dev/null"], self.env, b"", timeout
        )

    @contextlib.asynccontextmanager
    async def background(self, *args: str) -> AsyncIterator[Background]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        bg = Background(proc)
        try:
            yield bg
        finally:
            await bg.stop()


class Background:
    """A kubectl left running (logs -f, get -w, port-forward, attach)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = bytearray()
        self.errors = b""

    async def read_until(self, needle: bytes, timeout: float = 15) -> bytes:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while needle not in self.output:
                chunk = await self.proc.stdout.read(65536)
                if not chunk:
                    raise AssertionError(f"kubectl ended before {needle!r}: {self.output!r}")
                self.output += chunk
        return bytes(self.output)

    async def read_for(self, seconds: float) -> bytes:
        assert self.proc.stdout is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while chunk := await self.proc.stdout.read(65536):
                    self.output += chunk
        return bytes(self.output)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), 10)
        except TimeoutError:
            self.proc.kill()
            out, err = await self.proc.communicate()
        self.output += out
        self.errors += err


async def run_process(
    argv: Sequence[str], env: dict[str, str], stdin: bytes | None, timeout: float
) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"{argv} timed out; out={out!r} err={err!r}") from None
    assert proc.returncode is not None
    return Result(proc.returncode, out, err)


KubectlFactory = Callable[..., Kubectl]
"""``kubectl_for(server, protocol="websocket", auth="token")`` (a fixture)."""


# -- port-forward helpers ------------------------------------------------------------


async def forwarded_ports(bg: Background, count: int) -> list[int]:
    """The local ports of a running `kubectl port-forward`, once it prints them all."""
    pattern = rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)"
    async with asyncio.timeout(20):
        while len(re.findall(pattern, bg.output)) < count:
            await bg.read_until(b"Forwarding from")
            await bg.read_for(0.2)
    return [int(local) for local, _ in re.findall(pattern, bg.output)]


async def http_get(port: int, path: str) -> bytes:
    """One HTTP/1.1 GET through a forwarded port; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def sink(port: int, chunk: bytes, repeat: int) -> bytes:
    """Send ``chunk`` ``repeat`` times to the demo sink service; its checksum reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(90):
            for _ in range(repeat):
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
