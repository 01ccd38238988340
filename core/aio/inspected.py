"""An inspect endpoint's records, frozen for snapshots and turned into display pairs.

``LocalEndpoint`` keeps listeners and sessions; what a snapshot shows of each request
through an inspect endpoint (``InspectedStream``) is built here from the proxy's live
``Exchange`` records, so the endpoint module does not grow display rules.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.aio.tunnel import StreamInfo
from core.protocol.http_proxy import Exchange
from core.protocol.inspect_decoders import SessionDetail
from core.protocol.k8s_channels import STREAM_TYPE_BY_NAME
from core.protocol.redaction import RecordedHeaders


@dataclass(frozen=True)
class InspectedStream(StreamInfo):
    """One request through an inspect endpoint (its bytes include an upgraded session).

    ``upgrade`` is ``none``, ``requested``, ``accepted`` or ``refused``; ``protocol`` the
    protocol asked for (``websocket``, ``SPDY/3.1``), ``subprotocol`` the one the 101
    chose. ``query`` is the request target's query string (what a copied kubectl
    command needs: ``follow``, ``container``, ``tty``…). ``detail`` is what was decoded,
    as ``(name, value)`` pairs: ``kind``, ``command``, ``channels``, ``exit_code``,
    ``ports``, ``channel_bytes``, ``resizes``, ``connection <id>``, ``events``,
    ``event_count``, ``lines``, ``close_code``, ``error``… The headers are the proxy's
    redacted records, shared as they are (frozen).
    """

    method: str
    path: str
    status: int | None
    kubectl_command: str | None
    upgrade: str
    protocol: str | None
    subprotocol: str | None
    detail: tuple[tuple[str, str], ...]
    query: str
    request_headers: RecordedHeaders
    response_headers: RecordedHeaders


def inspected_stream(exchange: Exchange, cluster: str, offset: float = 0.0) -> InspectedStream:
    """One ``Exchange`` frozen for a snapshot (``offset`` turns loop time into wall time)."""
    ended = exchange.ended
    return InspectedStream(
        exchange.id,
        cluster,
        "local",
        None,
        exchange.started + offset,
        ended + offset if ended is not None else None,
        exchange.bytes_up,
        exchange.bytes_down,
        "open" if ended is None else "closed",
        (exchange.error or "done") if ended is not None else None,
        exchange.method,
        exchange.path,
        exchange.status,
        exchange.kubectl_command,
        exchange.upgrade_state.value,
        exchange.upgrade,
        exchange.subprotocol,
        detail_pairs(exchange.detail),
        urlsplit(exchange.target).query,
        exchange.request_headers,
        exchange.response_headers,
    )


def detail_pairs(detail: SessionDetail) -> tuple[tuple[str, str], ...]:
    """What was decoded, as display pairs (only what is known), in a fixed order."""
    return (
        *_session_pairs(detail),
        *_channel_pairs(detail),
        *_connection_pairs(detail),
        *_stream_pairs(detail),
    )


def _session_pairs(detail: SessionDetail) -> list[tuple[str, str]]:
    """What the request and its upgrade said: kind, command, channels, exit, ports."""
    pairs: list[tuple[str, str]] = []
    if detail.kind:
        pairs.append(("kind", detail.kind))
    if detail.command:
        pairs.append(("command", shlex.join(detail.command)))
    if detail.channels:
        pairs.append(("channels", ",".join(sorted(detail.channels))))
    if detail.exit_code is not None:
        pairs.append(("exit_code", str(detail.exit_code)))
    if detail.status_message:
        pairs.append(("status", detail.status_message))
    if detail.ports:
        pairs.append(("ports", ",".join(map(str, detail.ports))))
    return pairs


def _channel_pairs(detail: SessionDetail) -> list[tuple[str, str]]:
    """An exec's or attach's bytes per channel (every channel opened, in channel order)
    and the terminal sizes it sent."""
    pairs: list[tuple[str, str]] = []
    if detail.kind in ("exec", "attach"):
        counts = dict(detail.channel_bytes)
        names = set(counts) | set(detail.channels)
        order = sorted(
            names, key=lambda n: (STREAM_TYPE_BY_NAME.get(n, len(STREAM_TYPE_BY_NAME)), n)
        )
        if order:
            pairs.append(("channel_bytes", ",".join(f"{n}={counts.get(n, 0)}" for n in order)))
    if detail.resizes:
        sizes = " ".join(f"{s.width}x{s.height}" for s in list(detail.sizes))
        last = f" (last {len(detail.sizes)})" if detail.resizes > len(detail.sizes) else ""
        pairs.append(("resizes", f"{detail.resizes}{last}: {sizes}"))
    if detail.bad_resizes:
        pairs.append(("bad_resizes", str(detail.bad_resizes)))
    return pairs


def _connection_pairs(detail: SessionDetail) -> list[tuple[str, str]]:
    """One pair per port-forward connection."""
    pairs: list[tuple[str, str]] = []
    for conn in list(detail.connections):
        port = "?" if conn.port is None else str(conn.port)
        text = f"port {port}, {conn.bytes_up} B up, {conn.bytes_down} B down"
        if conn.error:
            text += f", error: {conn.error}"
        pairs.append((f"connection {conn.request_id}", text))
    return pairs


def _stream_pairs(detail: SessionDetail) -> list[tuple[str, str]]:
    """What the streamed body carried: watch events, log lines, how it closed."""
    pairs: list[tuple[str, str]] = []
    if detail.kind == "watch" or detail.events:
        events = dict(detail.events)
        pairs.append(("event_count", str(sum(events.values()))))
        if events:
            pairs.append(("events", ",".join(f"{k}={v}" for k, v in sorted(events.items()))))
    if detail.kind == "log" or detail.lines:
        pairs.append(("lines", str(detail.lines)))
    if detail.close_code is not None:
        pairs.append(("close_code", str(detail.close_code)))
    if detail.error:
        pairs.append(("error", detail.error))
    return pairs
