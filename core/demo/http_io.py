"""The demo apiserver's HTTP/1.1 over h11: requests in, whole or streamed answers out.

Kept apart from routing so every handler module (reads, watches, logs, streaming
upgrades) answers through the same three calls: :func:`respond`, :func:`stream`, and
the ``Status`` builders a real apiserver's errors look like.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from core.demo.resources import JsonObj

READ_SIZE = 64 * 1024
TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]

    @classmethod
    def from_h11(cls, event: h11.Request) -> Request:
        target = urlsplit(event.target.decode("latin-1"))
        return cls(
            event.method.decode(),
            target.path,
            parse_qs(target.query, keep_blank_values=True),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
        )

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def param(self, name: str, default: str = "") -> str:
        return (self.query.get(name) or [default])[0]

    def flag(self, name: str) -> bool:
        return self.param(name).lower() in ("true", "1")

    @property
    def wants_table(self) -> bool:
        """kubectl's ``get`` asks for server-side Tables in its Accept header."""
        return "as=Table" in self.header("accept")


@dataclass
class Http:
    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def status_response(code: int, reason: str, message: str, **details: Any) -> Response:
    body: JsonObj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return Response(code, json.dumps(body).encode())


def json_response(obj: JsonObj, content_type: str = "application/json") -> Response:
    return Response(200, json.dumps(obj).encode(), content_type)


def not_found(resource: str, name: str, group: str = "") -> Response:
    """A real apiserver's NotFound: ``details.kind`` is the resource, ``group`` if any."""
    if not group:
        message = f'{resource} "{name}" not found'
        return status_response(404, "NotFound", message, name=name, kind=resource)
    message = f'{resource}.{group} "{name}" not found'
    return status_response(404, "NotFound", message, name=name, group=group, kind=resource)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await reader.read(READ_SIZE)
        conn.receive_data(data)


async def respond(http: Http, response: Response, *, close: bool = False) -> None:
    conn, writer = http.conn, http.writer
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("cache-control", "no-cache, private"),
        *response.headers,
    ]
    if close:
        headers.append(("connection", "close"))
    reason = HTTPStatus(response.status).phrase.encode()
    head = h11.Response(status_code=response.status, headers=headers, reason=reason)
    writer.write(conn.send(head) or b"")
    writer.write(conn.send(h11.Data(data=response.body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


async def stream(
    http: Http,
    chunks: AsyncIterator[bytes],
    request: Request,
    content_type: str = "application/json",
) -> None:
    """A chunked response, one chunk per item, until the client hangs up or time is up."""
    conn, reader, writer = http.conn, http.reader, http.writer
    headers = [("content-type", content_type), ("cache-control", "no-cache, private")]
    if content_type == "application/json" and request.wants_table:
        headers[0] = ("content-type", TABLE_TYPE)
    writer.write(conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK")) or b"")
    await writer.drain()
    timeout_param = request.param("timeoutSeconds")
    timeout = float(timeout_param) if timeout_param.isdigit() and int(timeout_param) > 0 else None

    async def pump() -> None:
        async for chunk in chunks:
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()

    async def hangup() -> None:
        while await reader.read(READ_SIZE):
            pass

    pumping = asyncio.create_task(pump())
    watching = asyncio.create_task(hangup())
    try:
        await asyncio.wait({pumping, watching}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    with contextlib.suppress(h11.LocalProtocolError, OSError):
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
