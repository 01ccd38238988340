"""The core thread's end: a connection its tasks left open is closed with the loop."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

from core.service import WicketService
from gui.core_thread import CoreThread


def test_a_connection_left_open_is_closed_when_the_thread_stops() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        core = CoreThread(WicketService())
        core.start()

        async def leave_open() -> None:  # like a dial its task no longer owns
            loop = asyncio.get_running_loop()
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

        core.submit(leave_open()).result(10)
        accepted, _ = server.accept()
        with accepted, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            core.stop()
            accepted.settimeout(5)
            assert accepted.recv(1) == b"", "the peer saw the connection close"
            gc.collect()
        unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not unclosed, [str(w.message) for w in unclosed]
