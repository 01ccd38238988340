"""Values written for people and for addresses: ``host:port``, byte counts, UTC now."""

from __future__ import annotations

import datetime as dt

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def host_port(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 literal in brackets: ``[::1]:6443``."""
    host = str(host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def peer_address(peer: object) -> str:
    """A socket's ``peername`` as ``host:port`` (``?`` when the socket has none)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return host_port(peer[0], peer[1])
    return "?"


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``12.3 MiB``…"""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC (what every timestamp on disk uses)."""
    return dt.datetime.now(dt.UTC)
