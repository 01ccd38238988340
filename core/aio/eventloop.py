"""The event loop a headless Wicket process runs on.

The relay, the agent and a passthrough ``wicket connect`` spend most of a short
connection in the event loop itself: accepting, dialling, one TLS record in and out per
hop. uvloop (libuv, with its TLS layer in Cython) does that work in about two thirds of
the CPU of asyncio's pure-Python selector loop and TLS layer, so those processes use it
where it is installed. Everything Wicket does is written against the asyncio API and is
tested on both loops.

``auto`` means uvloop for the relay and the agent only. uvloop cannot run
``loop.start_tls`` on a transport it did not create, such as a mux stream, which the
inspect endpoint needs (its upstream TLS runs over a stream); and a local endpoint on
uvloop reached a higher heap high-water mark when transfers broke (flat afterwards, but
past the kill-cycle test's bound), so ``wicket connect`` and ``wicket demo`` default to
asyncio (``--loop uvloop`` is accepted for a passthrough ``connect``). The desktop app
runs its core on asyncio too.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Callable
from typing import Literal

LoopKind = Literal["auto", "uvloop", "asyncio"]
LOOP_KINDS: tuple[LoopKind, ...] = ("auto", "uvloop", "asyncio")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(
    kind: LoopKind, *, auto_uvloop: bool, tls_over_streams: bool = False
) -> Literal["uvloop", "asyncio"]:
    """The loop to run; ``auto_uvloop``: whether ``auto`` means uvloop for this process."""
    if kind == "asyncio":
        return "asyncio"
    if kind == "uvloop":
        if tls_over_streams:
            raise ValueError("uvloop cannot run TLS over mux streams (inspect mode): use asyncio")
        if not uvloop_available():
            raise ValueError("uvloop is not installed")
        return "uvloop"
    return "uvloop" if auto_uvloop and uvloop_available() and not tls_over_streams else "asyncio"


def loop_factory(kind: Literal["uvloop", "asyncio"]) -> LoopFactory:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def freeze_startup_heap() -> None:
    """Take what is alive once a process has started (modules, its configuration, keys and
    certificates: most of the objects it will ever hold) out of the garbage collector's
    scans, so the collections that traffic triggers look at the traffic's objects only
    (``gc.freeze``, the copy-on-write servers' trick). Startup garbage is collected first;
    frozen objects are still freed when their last reference goes.

    Measured on the relay and the agent: 6% fewer instructions per short connection
    (tests/bench/README.md, "Levers").
    """
    gc.collect()
    gc.freeze()
