"""How a splice between two real TCP connections classifies its end, on both loops.

The client side (kubectl) may close fully while the server's last bytes (a TLS
close_notify) are still on their way: the client's kernel answers them with a reset,
and a later ``write_eof`` fails with ENOTCONN. That is a normal close; only bytes cut
off before a side said EOF make a failure.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from core.aio.eventloop import loop_factory, uvloop_available
from core.aio.splice import Splice, splice_transports

LOOPS: list[Literal["uvloop", "asyncio"]] = ["asyncio", "uvloop"]
ROUNDS = 40  # the race (which socket the loop reads first) is decided per round


@pytest.fixture(scope="module", autouse=True)
def _libuv_process_state() -> None:
    """libuv keeps process-wide descriptors from its first loop: open them before the
    per-test descriptor leak check counts."""
    if uvloop_available():
        loop_factory("uvloop")().close()


def run_on(kind: Literal["uvloop", "asyncio"], main: Callable[[], Awaitable[Any]]) -> Any:
    if kind == "uvloop" and not uvloop_available():
        pytest.skip("uvloop is not installed here")
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main())  # type: ignore[arg-type]


@dataclass
class Spliced:
    client: socket.socket  # kubectl's socket
    server: socket.socket  # the apiserver's socket
    splice: Splice
    done: asyncio.Future[Exception | None]

    def close(self) -> None:
        self.client.close()
        self.server.close()


async def spliced() -> Spliced:
    """client ⇄ [a] splice [b] ⇄ server, every hop a real loopback TCP connection."""
    loop = asyncio.get_running_loop()
    with (
        socket.create_server(("127.0.0.1", 0)) as front,
        socket.create_server(("127.0.0.1", 0)) as back,
    ):
        client = socket.create_connection(front.getsockname())
        a_sock, _ = front.accept()
        b_sock = socket.create_connection(back.getsockname())
        server, _ = back.accept()
    a, _ = await loop.connect_accepted_socket(asyncio.Protocol, a_sock)
    b, _ = await loop.connect_accepted_socket(asyncio.Protocol, b_sock)
    done: asyncio.Future[Exception | None] = loop.create_future()
    splice = splice_transports(a, b, lambda _up, _down, exc: done.set_result(exc))
    for sock in (client, server):
        sock.setblocking(False)
    return Spliced(client, server, splice, done)


async def recv_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        assert chunk, "EOF too early"
        data += chunk
    return data


async def close_after_client(shutdown_client: bool, pause: float) -> list[Exception | None]:
    """The client sends, closes (fully, or half then fully); the server's goodbye follows."""
    loop = asyncio.get_running_loop()
    outcomes = []
    for i in range(ROUNDS):
        pair = await spliced()
        try:
            await loop.sock_sendall(pair.client, b"request")
            assert await recv_exactly(pair.server, 7) == b"request"
            if shutdown_client:
                pair.client.shutdown(socket.SHUT_WR)
            pair.client.close()
            await asyncio.sleep(pause * (i % 3))  # 0: both ends at once
            await loop.sock_sendall(pair.server, b"\x15\x03\x03\x00\x1aclose_notify-ish-record...")
            pair.server.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(5):
                outcomes.append(await pair.done)
        finally:
            pair.close()
    return outcomes


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("shutdown_client", [False, True], ids=["close", "half-close"])
def test_server_goodbye_after_the_client_closed_is_a_normal_close(
    kind: Literal["uvloop", "asyncio"], shutdown_client: bool
) -> None:
    outcomes = run_on(kind, lambda: close_after_client(shutdown_client, 0.02))
    failed = [repr(exc) for exc in outcomes if exc is not None]
    assert not failed, f"{len(failed)} of {ROUNDS} normal closes recorded failed: {failed[:3]}"


async def both_say_eof() -> tuple[Exception | None, bytes]:
    loop = asyncio.get_running_loop()
    pair = await spliced()
    try:
        pair.client.shutdown(socket.SHUT_WR)
        await loop.sock_sendall(pair.server, b"reply")
        pair.server.shutdown(socket.SHUT_WR)
        got = await recv_exactly(pair.client, 5)
        async with asyncio.timeout(5):
            return await pair.done, got
    finally:
        pair.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_both_half_closes_are_a_normal_close(kind: Literal["uvloop", "asyncio"]) -> None:
    exc, got = run_on(kind, both_say_eof)
    assert exc is None and got == b"reply"


async def client_resets_mid_reply() -> Exception | None:
    """The client resets (no EOF first) while the server's reply is still flowing."""
    loop = asyncio.get_running_loop()
    pair = await spliced()
    try:
        await loop.sock_sendall(pair.client, b"request")
        assert await recv_exactly(pair.server, 7) == b"request"
        await loop.sock_sendall(pair.server, b"x" * 1000)
        await recv_exactly(pair.client, 1000)
        pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pair.client.close()  # an RST, not a FIN
        for _ in range(50):  # the reply keeps coming: it has nowhere to go
            try:
                await loop.sock_sendall(pair.server, b"y" * 1000)
            except OSError:
                break
            if pair.done.done():
                break
            await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            return await pair.done
    finally:
        pair.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_a_reset_before_eof_is_still_a_failure(kind: Literal["uvloop", "asyncio"]) -> None:
    exc = run_on(kind, client_resets_mid_reply)
    assert isinstance(exc, ConnectionError | OSError), exc


async def server_resets_mid_reply() -> Exception | None:
    """The server resets while the client waits for the rest of its reply: data lost."""
    loop = asyncio.get_running_loop()
    pair = await spliced()
    try:
        await loop.sock_sendall(pair.server, b"partial")
        assert await recv_exactly(pair.client, 7) == b"partial"
        pair.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pair.server.close()
        async with asyncio.timeout(5):
            return await pair.done
    finally:
        pair.client.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_a_server_reset_mid_reply_is_a_failure(kind: Literal["uvloop", "asyncio"]) -> None:
    exc = run_on(kind, server_resets_mid_reply)
    assert isinstance(exc, ConnectionError | OSError), exc
