"""``StreamInfo``: one tunnelled connection as the statistics show it.

Kept out of ``core.aio.tunnel`` (which ``core.compiled`` builds) because it is subclassed
by interpreted code (``core.aio.inspected.InspectedStream``), and an interpreted class
cannot inherit from a compiled one. ``core.aio.tunnel`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamInfo:
    """One tunnelled connection, as the statistics show it."""

    id: int
    cluster: str
    endpoint: str
    client: str | None
    opened_at: float
    closed_at: float | None
    bytes_up: int
    bytes_down: int
    state: str
    close_reason: str | None
    sni: str | None = field(default=None, kw_only=True)
    """The server name of the client's TLS ClientHello (passthrough: seen, not decrypted)."""
    alpn: str | None = field(default=None, kw_only=True)
    """The ALPN protocols that ClientHello offered, comma-separated: ``h2,http/1.1`` for
    kubectl's API connections, ``http/1.1`` for its exec/attach/port-forward upgrades
    (which offer none: no offer is HTTP/1.1). None if no ClientHello was seen."""
