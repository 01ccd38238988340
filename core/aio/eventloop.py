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
import logging
import resource
from collections.abc import Callable
from typing import Literal

LoopKind = Literal["auto", "uvloop", "asyncio"]
LOOP_KINDS: tuple[LoopKind, ...] = ("auto", "uvloop", "asyncio")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

log = logging.getLogger("wicket.process")


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


#: Below this many descriptors a serving process says it will refuse connections early.
FEW_OPEN_FILES = 4096

#: Where to stop when the hard limit is unlimited (Linux's default ``fs.nr_open``).
UNLIMITED_OPEN_FILES = 1 << 20


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one, as Go's runtime does at start,
    and return it. Every session, stream and dial is a descriptor: a relay started from a
    shell (soft 1,024 where the hard limit is 524,288) would otherwise refuse its
    thousandth connection (its listener pauses on ``EMFILE``) with room to spare. Says so
    when even the hard limit leaves few (``LimitNOFILE=`` in the systemd units)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:  # above fs.nr_open, or a sandbox says no
            log.debug("open files limit stays %d: %s", soft, exc)
        else:
            log.debug("open files limit raised from %d to %d", soft, want)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and limit < FEW_OPEN_FILES:
        log.warning(
            "only %d open files allowed (hard limit %s): each session and stream takes one;"
            " raise it (ulimit -Hn, or LimitNOFILE= in a systemd unit)",
            limit,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
        )
    return int(limit)


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
