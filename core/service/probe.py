"""``GET /version`` through a local endpoint: the check that a new cluster works.

HTTP is spoken with h11 (chunked bodies, framing, errors), never by hand. When the
probe fails, the endpoint usually knows better why than the TLS error the probe saw: a
passthrough endpoint whose tunnel was refused (agent offline, target down) can only
close kubectl's connection, which the probe sees as a TLS alert or an EOF. The caller
passes the endpoint's last refusal, and the error names that cause instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import h11

from core.errors import TunnelError, UpstreamUnavailable
from core.protocol.preamble import os_error_words

PROBE_TIMEOUT = 10.0
READ_SIZE = 65536


@dataclass(frozen=True)
class VersionProbe:
    """What ``GET /version`` through the tunnel answered."""

    status: int
    body: str

    @property
    def git_version(self) -> str | None:
        try:
            value = json.loads(self.body).get("gitVersion")
        except (ValueError, AttributeError):
            return None
        return str(value) if value else None


@dataclass(frozen=True)
class ProbeAuth:
    token: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


async def probe_version(
    port: int,
    ca_pem: bytes,
    server_name: str,
    auth: ProbeAuth,
    *,
    last_refusal: Callable[[], str | None] = lambda: None,
    timeout: float = PROBE_TIMEOUT,
) -> VersionProbe:
    """``GET /version`` at ``127.0.0.1:port``, verifying the cluster's CA and name.

    A failure raises ``UpstreamUnavailable`` with the endpoint's refusal when it has
    one (``last_refusal``), else ``TunnelError`` with what the probe saw.
    """
    refused_before = last_refusal()
    try:
        async with asyncio.timeout(timeout):
            return await _get_version(port, _context(ca_pem, auth), server_name, auth)
    except (OSError, ssl.SSLError, TimeoutError, h11.ProtocolError) as exc:
        refusal = last_refusal()
        if refusal and (refusal != refused_before or isinstance(exc, ssl.SSLError)):
            raise UpstreamUnavailable(plain_refusal(refusal)) from exc
        raise TunnelError(f"/version through the tunnel failed: {_describe(exc)}") from exc


def plain_refusal(refusal: str) -> str:
    """An endpoint's refusal (``target_unreachable: agent cannot reach its target:
    [Errno 111] …``) as a person reads it: ``target unreachable: connection refused``."""
    code, _, message = refusal.partition(": ")
    detail = os_error_words(message)
    return f"{code.replace('_', ' ')}: {detail}" if detail else code.replace("_", " ")


def _context(ca_pem: bytes, auth: ProbeAuth) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    if auth.cert_file and auth.key_file:
        context.load_cert_chain(auth.cert_file, auth.key_file)
    return context


async def _get_version(
    port: int, context: ssl.SSLContext, server_name: str, auth: ProbeAuth
) -> VersionProbe:
    headers = [
        ("Host", server_name),
        ("Accept", "application/json"),
        ("User-Agent", "wicket-desktop"),
        ("Connection", "close"),
    ]
    if auth.token:
        headers.append(("Authorization", f"Bearer {auth.token}"))
    conn = h11.Connection(h11.CLIENT)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    try:
        writer.write(conn.send(h11.Request(method="GET", target="/version", headers=headers)))
        writer.write(conn.send(h11.EndOfMessage()))
        return await _read_response(conn, reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _read_response(conn: h11.Connection, reader: asyncio.StreamReader) -> VersionProbe:
    status, body = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            if not status:
                raise TunnelError("the apiserver closed the connection without an answer")
            return VersionProbe(status, body.decode(errors="replace"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the apiserver's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, h11.ProtocolError):
        return f"the answer is not HTTP ({exc})"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
