"""exec, attach and port-forward: negotiate the upgrade, switch protocols, run the session.

kubectl offers WebSocket first and falls back to SPDY when that upgrade is refused with
400, so :class:`Upgrades` can refuse either kind to test both paths. The bytes h11 read
past the upgrade request are handed to the session's link, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h11

from core.demo import exec as demo_exec
from core.demo import portforward, sessions
from core.demo.http_io import Http, Request, Response, respond, status_response
from core.demo.transport import RawLink, WebSocketByteLink, WebSocketLink, websocket_accept
from core.protocol.k8s_channels import (
    EXEC_SPDY_PROTOCOLS,
    PORTFORWARD_SPDY_PROTOCOL,
    PORTFORWARD_WEBSOCKET_PROTOCOL,
    V5_PROTOCOL,
    choose_protocol,
)


@dataclass(frozen=True)
class Upgrades:
    """Which upgrades the server accepts; a refused one answers 400."""

    websocket: bool = True
    spdy: bool = True

    def negotiate(
        self, request: Request, websocket_protocols: Sequence[str], spdy_protocols: Sequence[str]
    ) -> tuple[str, str] | Response:
        """("websocket"|"spdy", protocol), or the error answer that makes kubectl fall back."""
        upgrade = request.header("upgrade").lower()
        if upgrade == "websocket":
            if not self.websocket:
                return status_response(400, "BadRequest", "websocket upgrades are disabled")
            offered = request.header_values("sec-websocket-protocol")
            chosen = choose_protocol(offered, websocket_protocols)
            if chosen is None or not request.header("sec-websocket-key"):
                return status_response(400, "BadRequest", "no supported websocket subprotocol")
            return "websocket", chosen
        if upgrade.startswith("spdy/3.1"):
            if not self.spdy:
                return status_response(400, "BadRequest", "spdy upgrades are disabled")
            offered = request.header_values("x-stream-protocol-version")
            chosen = choose_protocol(offered, spdy_protocols)
            if chosen is None:
                message = f"unable to upgrade: unable to negotiate protocol: offered {offered}"
                return status_response(403, "Forbidden", message)
            return "spdy", chosen
        return status_response(400, "BadRequest", "Upgrade request required")


async def switch(http: Http, request: Request, kind: str, protocol: str) -> bytes:
    """Send 101 Switching Protocols; returns the bytes already read past the request."""
    if kind == "websocket":
        headers = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", websocket_accept(request.header("sec-websocket-key"))),
            ("sec-websocket-protocol", protocol),
        ]
    else:
        headers = [
            ("upgrade", "SPDY/3.1"),
            ("connection", "Upgrade"),
            ("x-stream-protocol-version", protocol),
        ]
    switching = h11.InformationalResponse(
        status_code=101, headers=headers, reason=b"Switching Protocols"
    )
    http.writer.write(http.conn.send(switching) or b"")
    await http.writer.drain()
    trailing, _ = http.conn.trailing_data
    return trailing


async def serve_remote_command(
    http: Http,
    request: Request,
    *,
    upgrades: Upgrades,
    sub: str,
    container: str,
    runner_for: Callable[[demo_exec.ExecRequest], sessions.Runner],
) -> bool:
    """exec or attach on an upgraded connection; always False (it cannot be reused)."""
    exec_request = demo_exec.ExecRequest(
        tuple(request.query.get("command", [])),
        container,
        request.flag("stdin"),
        request.flag("stdout"),
        request.flag("stderr"),
        request.flag("tty"),
    )
    if sub == "exec" and not exec_request.command:
        message = "you must specify at least one command for the container"
        await respond(http, status_response(400, "BadRequest", message), close=True)
        return False
    chosen = upgrades.negotiate(request, [V5_PROTOCOL], EXEC_SPDY_PROTOCOLS)
    if isinstance(chosen, Response):
        await respond(http, chosen, close=True)
        return False
    runner = runner_for(exec_request)
    trailing = await switch(http, request, *chosen)
    if chosen[0] == "websocket":
        await sessions.serve_websocket(
            WebSocketLink(http.reader, http.writer, trailing), exec_request, runner
        )
    else:
        await sessions.serve_spdy(RawLink(http.reader, http.writer, trailing), exec_request, runner)
    return False


async def serve_portforward(
    http: Http,
    request: Request,
    upgrades: Upgrades,
    pod: str,
    resolve: Callable[[int], int | None],
) -> bool:
    """Port-forward on an upgraded connection; always False (it cannot be reused)."""
    chosen = upgrades.negotiate(
        request, [PORTFORWARD_WEBSOCKET_PROTOCOL], [PORTFORWARD_SPDY_PROTOCOL]
    )
    if isinstance(chosen, Response):
        await respond(http, chosen, close=True)
        return False
    trailing = await switch(http, request, *chosen)
    if chosen[0] == "websocket":
        link: Any = WebSocketByteLink(WebSocketLink(http.reader, http.writer, trailing))
    else:
        link = RawLink(http.reader, http.writer, trailing)
    await portforward.PortForwardSession(link, resolve, pod).run()
    return False
