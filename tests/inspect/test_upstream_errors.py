"""Upstream failures reach kubectl as a ``Status`` in words a user can act on.

A TLS handshake that never ends over a tunnel stream is a timeout (504), not "the
connection closed": ``MuxStream._force_close`` hands asyncio's error to
``connection_lost`` so ``start_tls`` raises it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core.aio.inspect import InspectEndpoint, tcp_connector, tunnel_connector, upstream_context
from core.protocol.mux import MuxConfig
from core.protocol.preamble import (
    EndpointKind,
    RequestDecoder,
    Status,
    StreamRequest,
    StreamStatus,
    refusal_words,
)
from tests.aio.conftest import MuxPair, connect_pair, shutdown
from tests.inspect.backend import StrictBackend
from tests.inspect.conftest import ENDPOINT_TOKEN
from tests.inspect.test_handover import close, open_client
from tests.support.certs import LoopbackPKI, make_pki

GET = b"GET /api HTTP/1.1\r\nHost: @HOST@\r\nAuthorization: Bearer " + ENDPOINT_TOKEN.encode()
GET += b"\r\n\r\n"


async def status_of(endpoint: InspectEndpoint) -> tuple[int, dict[str, object]]:
    """One GET through ``endpoint``: the answer's code and its ``Status`` body."""
    reader, writer = await open_client(endpoint)
    writer.write(GET.replace(b"@HOST@", f"127.0.0.1:{endpoint.port}".encode()))
    answer = await asyncio.wait_for(reader.read(), 10)
    await close(writer)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = json.loads(body)
    assert status["kind"] == "Status" and status["code"] == int(head.split()[1]), answer
    return status["code"], status


def endpoint_for(
    state: Path, pki: LoopbackPKI, port: int, *, server_name: str = "localhost"
) -> InspectEndpoint:
    return InspectEndpoint(
        "errors",
        state,
        endpoint_token=ENDPOINT_TOKEN,
        connector=tcp_connector("127.0.0.1", port),
        upstream_tls=upstream_context(pki.ca_pem),
        server_name=server_name,
        upstream_authorization=None,
    )


# -- TLS over a mux stream: the error is kept ------------------------------------------


async def silent_agent(pair: MuxPair) -> None:
    """Accepts the stream, says OK, then never answers the ClientHello."""
    stream = await pair.server.accept()
    reader, writer = pair.server.stream_pair(stream)
    decoder = RequestDecoder()
    while decoder.receive_data(await reader.read(1)) is None:
        pass
    writer.write(StreamStatus(Status.OK).encode())
    await reader.read()  # until the endpoint gives up


async def test_tls_handshake_timeout_over_a_mux_stream_is_raised(backend_pki: LoopbackPKI) -> None:
    pair = await connect_pair(MuxConfig(keepalive_interval=None))
    try:
        stream = pair.client.open_stream(b"")
        stream.pause_reading()
        loop = asyncio.get_running_loop()
        with pytest.raises(ConnectionAbortedError, match="handshake"):
            await loop.start_tls(
                stream,
                asyncio.Protocol(),
                backend_pki.client_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        assert isinstance(stream.error, ConnectionAbortedError)
    finally:
        await shutdown(pair)


async def test_tls_handshake_timeout_through_a_tunnel_is_a_504(
    inspect_state: Path, backend_pki: LoopbackPKI
) -> None:
    pair = await connect_pair(MuxConfig(keepalive_interval=None))
    agent = asyncio.create_task(silent_agent(pair))
    request = StreamRequest("demo", EndpointKind.LOCAL, "127.0.0.1:1")
    endpoint = InspectEndpoint(
        "demo",
        inspect_state,
        endpoint_token=ENDPOINT_TOKEN,
        connector=tunnel_connector(lambda: pair.client, request),
        upstream_tls=upstream_context(backend_pki.ca_pem),
        server_name="localhost",
        upstream_authorization=None,
        handshake_timeout=0.3,
    )
    try:
        async with endpoint:
            code, status = await status_of(endpoint)
            (record,) = endpoint.exchanges()
    finally:
        agent.cancel()
        await asyncio.gather(agent, return_exceptions=True)
        await shutdown(pair)
    assert code == 504 and status["reason"] == "Timeout", status
    message = "the TLS handshake with the apiserver (localhost) timed out after 0.3 s"
    assert status["message"] == message
    assert record.status == 504 and record.error == message


# -- words a user can act on -------------------------------------------------------------


async def test_connection_refused_names_the_address(
    inspect_state: Path, backend_pki: LoopbackPKI
) -> None:
    async with endpoint_for(inspect_state, backend_pki, 1) as endpoint:  # nothing on port 1
        code, status = await status_of(endpoint)
    assert code == 503 and status["reason"] == "ServiceUnavailable"
    assert status["message"] == "could not reach the apiserver at 127.0.0.1:1: connection refused"


async def test_a_certificate_from_another_ca(
    inspect_state: Path, backend: StrictBackend, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other")
    async with endpoint_for(inspect_state, other, backend.port) as endpoint:
        code, status = await status_of(endpoint)
    assert code == 502
    assert status["message"] == (
        "the apiserver's certificate was rejected: it is not signed by the CA you gave"
    )


async def test_a_certificate_for_another_name(
    inspect_state: Path, backend: StrictBackend, backend_pki: LoopbackPKI
) -> None:
    endpoint = endpoint_for(inspect_state, backend_pki, backend.port, server_name="api.example")
    async with endpoint:
        code, status = await status_of(endpoint)
    assert code == 502
    assert status["message"] == (
        "the apiserver's certificate was rejected: it is not valid for the name api.example"
    )


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (
            StreamStatus(
                Status.TARGET_UNREACHABLE,
                "agent cannot reach its target: [Errno 111] Connect call failed ('10.0.0.1', 6443)",
            ),
            "target_unreachable: the agent could not reach the apiserver at 10.0.0.1:6443: "
            "connection refused",
        ),
        (
            StreamStatus(Status.TARGET_UNREACHABLE, "agent cannot reach its target: timeout"),
            "target_unreachable: the agent could not reach the apiserver: timeout",
        ),
        (
            StreamStatus(Status.AGENT_OFFLINE, "the agent of demo is offline"),
            "agent_offline: the cluster's agent is not connected to the relay "
            "(is it running?): the agent of demo is offline",
        ),
        (
            StreamStatus(Status.UNKNOWN_CLUSTER),
            "unknown_cluster: the relay does not know this cluster",
        ),
    ],
)
def test_refusal_words(status: StreamStatus, words: str) -> None:
    assert refusal_words(status) == words
