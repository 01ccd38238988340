"""The event-loop choice, the raw-socket listener, and the relay's TLS port on both loops."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from core.aio.dial import discover_ca
from core.aio.eventloop import loop_factory, resolve, uvloop_available
from core.aio.listener import Listener, bind
from core.aio.relay import Relay, RelayConfig

LOOPS: list[Literal["uvloop", "asyncio"]] = ["asyncio", "uvloop"]


@pytest.fixture(scope="module", autouse=True)
def _libuv_process_state() -> None:
    """libuv opens process-wide descriptors on its first loop and keeps them: open them
    before the per-test descriptor leak check (tests/aio/conftest.py) counts."""
    if uvloop_available():
        loop_factory("uvloop")().close()


def run_on(kind: Literal["uvloop", "asyncio"], main: Callable[[], Awaitable[Any]]) -> Any:
    if kind == "uvloop" and not uvloop_available():
        pytest.skip("uvloop is not installed here")
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main())  # type: ignore[arg-type]


def test_resolve_matrix() -> None:
    assert resolve("asyncio", auto_uvloop=True) == "asyncio"
    assert resolve("auto", auto_uvloop=False) == "asyncio"
    assert resolve("auto", auto_uvloop=True, tls_over_streams=True) == "asyncio"
    expected = "uvloop" if uvloop_available() else "asyncio"
    assert resolve("auto", auto_uvloop=True) == expected
    with pytest.raises(ValueError, match="TLS over mux streams"):
        resolve("uvloop", auto_uvloop=True, tls_over_streams=True)


def test_uvloop_is_installed_by_the_project() -> None:
    """The relay and agent speed-up is not optional on Linux: the dependency must be there."""
    assert uvloop_available()


def test_bind_gives_every_address_one_port() -> None:
    sockets = bind("localhost", 0, backlog=8)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1 and 0 not in ports
        assert all(not s.getblocking() for s in sockets)
    finally:
        for s in sockets:
            s.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_listener_hands_over_unread_sockets(kind: Literal["uvloop", "asyncio"]) -> None:
    """What the peer sent first is still in the socket when the owner gets it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue[tuple[socket.socket, object]] = asyncio.Queue()
        sockets = bind("127.0.0.1", 0, backlog=8)
        listener = Listener(loop, sockets, lambda s, p: got.put_nowait((s, p)))
        port = sockets[0].getsockname()[1]
        clients = []
        for i in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"first bytes %d" % i)
            await writer.drain()
            clients.append(writer)
        for i in range(3):
            sock, peer = await asyncio.wait_for(got.get(), 5)
            await asyncio.sleep(0.05)  # a loop that read eagerly would have by now
            assert isinstance(peer, tuple) and peer[0] == "127.0.0.1"
            assert sock.recv(100) == b"first bytes %d" % i
            sock.close()
        listener.close()
        assert all(s.fileno() == -1 for s in sockets)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        for writer in clients:
            writer.close()

    run_on(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_relay_tls_port_on_both_loops(kind: Literal["uvloop", "asyncio"], tmp_path: Path) -> None:
    """A TLS client's ClientHello, sent at once, reaches the relay's TLS layer intact."""

    async def main() -> None:
        relay = Relay(RelayConfig(state_dir=tmp_path / "relay", handshake_timeout=2.0))
        await relay.start()
        try:
            assert relay._ca is not None
            pin = relay._ca.fingerprint
            for _ in range(5):
                ca = await discover_ca(relay.address, pin, timeout=3.0)
                assert ca == relay._ca.cert
        finally:
            await relay.stop()

    run_on(kind, main)
