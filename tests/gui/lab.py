"""A real relay, agent, client session and local endpoint in a ``CoreThread``.

The agent's target is an echo server (or any given address) on the core loop, so a
test can move bytes through the real tunnel while the GUI watches from the Qt thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.aio.relay import RelayConfig
from core.format import utcnow
from core.pki.tokens import parse
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS
from core.service import WicketService
from gui.core_thread import CoreThread


@dataclass
class Lab:
    core: CoreThread
    endpoint: tuple[str, int]
    relay_dir: Path
    echo: asyncio.Server | None = None


async def _echo_server() -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(256 * 1024):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def start_lab_parts(
    service: WicketService, tmp: Path, cluster: str = "lab", target: tuple[str, int] | None = None
) -> tuple[tuple[str, int], asyncio.Server | None]:
    echo = None
    if target is None:
        echo = await _echo_server()
        target = ("127.0.0.1", echo.sockets[0].getsockname()[1])
    await service.start_relay(RelayConfig(state_dir=tmp / "relay"))
    state = RelayState(tmp / "relay")
    join = parse(state.join_token(cluster, None, None, utcnow()))
    client_token = parse(state.client_token("me", None, utcnow(), scope=ALL_CLUSTERS))
    agent = await service.start_agent(tmp / "agent", target, join, name=f"agent:{cluster}")
    client = await service.start_client(tmp / "client", client_token)
    await agent.wait_online(10)
    await client.wait_online(10)
    endpoint = await service.start_endpoint(client, cluster)
    service.refresh()
    return (endpoint.host, endpoint.port), echo


@contextlib.contextmanager
def running_lab(tmp: Path, publish_hz: float = 10.0) -> Iterator[Lab]:
    core = CoreThread(WicketService(publish_hz=publish_hz))
    core.start()
    try:
        address, echo = core.submit(start_lab_parts(core.service, tmp)).result(30)
        yield Lab(core, address, tmp / "relay", echo)
    finally:
        if echo is not None:
            echo.close()
        core.stop()
