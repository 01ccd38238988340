"""Fixtures: a strict raw-socket backend, an inspect endpoint in front of it, a TLS client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest

from core.aio.inspect import InspectEndpoint, tcp_connector, upstream_context
from tests.inspect.backend import StrictBackend
from tests.support.certs import LoopbackPKI, make_pki
from tests.support.leaks import no_leaks

ENDPOINT_TOKEN = "endpoint-secret-0123456789abcdef"
UPSTREAM_TOKEN = "upstream-secret-fedcba9876543210"


@pytest.fixture(scope="session")
def inspect_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inspect-state")


@pytest.fixture(scope="session")
def backend_pki(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPKI:
    return make_pki(tmp_path_factory.mktemp("backend-pki"))


@pytest.fixture
def backend(backend_pki: LoopbackPKI) -> Iterator[StrictBackend]:
    server = StrictBackend(backend_pki.server_context())
    yield server
    server.close()


async def start_endpoint(
    state: Path, backend: StrictBackend, pki: LoopbackPKI, *, callers_own: bool = False
) -> InspectEndpoint:
    endpoint = InspectEndpoint(
        "test",
        state,
        endpoint_token=ENDPOINT_TOKEN,
        connector=tcp_connector("127.0.0.1", backend.port),
        upstream_tls=upstream_context(pki.ca_pem),
        server_name="localhost",
        upstream_authorization=f"Bearer {UPSTREAM_TOKEN}",
        credential_is_callers_own=callers_own,
    )
    await endpoint.start()
    return endpoint


@pytest.fixture
async def endpoint(
    inspect_state: Path, backend: StrictBackend, backend_pki: LoopbackPKI
) -> AsyncIterator[InspectEndpoint]:
    ep = await start_endpoint(inspect_state, backend, backend_pki)
    yield ep
    await ep.stop()


def client_context(endpoint: InspectEndpoint) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=endpoint.ca_pem.decode())
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # like kubectl: the endpoint must pick 1.1
    return ctx


@dataclass
class Answer:
    """What the client saw: the first response, whether the connection then ended, and
    every byte after that response."""

    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    closed: bool = False
    after: bytes = b""
    raw: bytes = b""

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


async def ask(
    endpoint: InspectEndpoint,
    raw: bytes,
    *,
    upgrade: bool = False,
    wait_close: float = 3.0,
    then: bytes = b"",
) -> Answer:
    """Send raw bytes, parse the first response with h11; then wait for the close."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", endpoint.port, ssl=client_context(endpoint), server_hostname="127.0.0.1"
    )
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    answer = Answer()
    parser = h11.Connection(h11.CLIENT)
    dummy = [("host", "x")] + ([("connection", "upgrade"), ("upgrade", "x")] if upgrade else [])
    parser.send(h11.Request(method="GET", target="/", headers=dummy))
    parser.send(h11.EndOfMessage())
    writer.write(raw)
    complete = False
    try:
        async with asyncio.timeout(10):
            while not complete:
                data = await reader.read(65536)
                answer.raw += data
                parser.receive_data(data)
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        break
                    if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                        complete = True
                        break
                    if isinstance(event, h11.InformationalResponse | h11.Response):
                        answer.status = event.status_code
                        answer.headers = [(k.decode(), v.decode()) for k, v in event.headers]
                        if event.status_code == 101:
                            complete = True
                            break
                    elif isinstance(event, h11.Data):
                        answer.body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        complete = True
                        break
                if not data:
                    break
    except h11.RemoteProtocolError:
        pass
    answer.after = parser.trailing_data[0]
    if then:
        writer.write(then)
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(wait_close):
            while data := await reader.read(65536):
                answer.after += data
            answer.closed = True
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 3)
    return answer


async def settle(backend: StrictBackend, timeout: float = 5.0) -> None:
    """Wait for every backend connection to end (the proxy closes them after the client)."""
    async with asyncio.timeout(timeout):
        while not all(conn.done.is_set() for conn in backend.conns):
            await asyncio.sleep(0.01)


__all__ = ["no_leaks"]
