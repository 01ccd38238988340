"""Authorization and limits at a real ``wicket relay`` process (issue 14).

Each test runs the relay as a process (``tests.tunnel.harness.Tunnel``), issues tokens
and revokes identities with the real ``wicket relay`` commands, and uses agents and
clients as processes or as in-process peers against that relay:

- a client token's scope: a stream to a cluster outside it is refused ``forbidden`` by
  the relay and never reaches that cluster's agent;
- ``wicket relay revoke``: the live session ends within a second, and stays out;
- quotas: one client holding its quota of idle tunnels, and anonymous idle public
  connections, cannot make another client's new connections fail (item 4);
- ``--public-allow``: other sources are closed at once; the endpoint closes with its
  cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.aio.agent import Agent
from core.aio.endpoint import LocalEndpoint, RelayClient
from core.pki.tokens import parse
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS
from tests.tunnel.harness import (
    CLIENT,
    CLUSTER,
    Tunnel,
    echo,
    free_port,
    payload,
    refusal,
)
from tests.tunnel_security.conftest import EchoTarget, echo_once

pytestmark = pytest.mark.timeout(120)

LAB = "lab"


@pytest.fixture
async def tunnel(tmp_path: Path) -> AsyncIterator[Tunnel]:
    t = Tunnel(tmp_path)
    try:
        yield t
    finally:
        t.close()


def state(tunnel: Tunnel) -> tuple[str, str]:
    return ("--state-dir", str(tunnel.relay_dir))


def client_token(tunnel: Tunnel, name: str, *scope: str) -> Path:
    """A client token from ``wicket relay client-token … --out FILE``."""
    out = tunnel.base / f"{name}.token"
    tunnel.wicket("relay", *state(tunnel), "client-token", *state(tunnel), "--name", name,
                  "--address", tunnel.relay_address, *scope, "--out", str(out))  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    return out


@contextlib.asynccontextmanager
async def in_process_client(
    tunnel: Tunnel, token: Path, cluster: str
) -> AsyncIterator[LocalEndpoint]:
    client = RelayClient(tunnel.base / f"client-{token.stem}", parse(token.read_text().strip()))
    await client.start()
    endpoint = LocalEndpoint(client, cluster)
    try:
        await endpoint.start()
        await client.wait_online(15)
        yield endpoint
    finally:
        await endpoint.stop()
        await client.stop()


async def relay_doc(tunnel: Tunnel) -> dict[str, Any]:
    assert tunnel.relay is not None
    doc = await tunnel.status(tunnel.relay, timeout=5.0)
    assert doc is not None, tunnel.logs()
    snapshot: dict[str, Any] = doc["snapshot"]
    return snapshot


async def refused(tunnel: Tunnel, what: str) -> int:
    """A ``refused`` counter of the relay, as ``wicket status --json`` shows it."""
    docs = await tunnel.status_cli()
    (relay,) = [d for d in docs if d["role"] == "relay"]
    return int(relay["snapshot"]["refused"].get(what, 0))


async def clients_online(tunnel: Tunnel, name: str) -> int:
    peers = (await relay_doc(tunnel))["peers"]
    return sum(1 for p in peers if p["role"] == "client" and p["name"] == name)


@contextlib.asynccontextmanager
async def second_cluster(tunnel: Tunnel) -> AsyncIterator[Agent]:
    """The tunnel's relay, its cluster and agent, and a second cluster (``LAB``: an echo
    target and its own agent, in this process), stopped on the way out."""
    await tunnel.start_target()
    await tunnel.start_relay()
    await tunnel.start_agent()
    lab_target = EchoTarget()
    lab_port = await lab_target.start()
    join = tunnel.wicket("relay", *state(tunnel), "join-token", *state(tunnel),
                         "--cluster", LAB, "--address", tunnel.relay_address)  # fmt: skip
    lab = Agent(tunnel.base / "lab-agent", "127.0.0.1", lab_port, token=parse(join.strip()))
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()
        await lab_target.stop()


async def test_a_stream_outside_the_clients_scope_is_refused_and_never_reaches_the_agent(
    tunnel: Tunnel,
) -> None:
    async with second_cluster(tunnel) as lab:
        await lab.wait_online(15)
        prod_only = client_token(tunnel, "eve", "--cluster", CLUSTER)
        async with in_process_client(tunnel, prod_only, LAB) as endpoint:
            for _ in range(3):
                await refusal(endpoint.port)
        async with in_process_client(tunnel, prod_only, CLUSTER) as endpoint:
            await echo(endpoint.port, payload(4096, 1))  # its own cluster: through
        assert lab.book.total == 0, "a stream outside the scope reached the agent"
        assert await refused(tunnel, "forbidden") == 3
        assert tunnel.relay is not None
        assert tunnel.relay.log().count("is not in its scope") == 1  # once per interval

        everything = client_token(tunnel, "ops", "--all-clusters")
        async with in_process_client(tunnel, everything, LAB) as endpoint:
            await echo_once(endpoint.port, 4096)
        assert lab.book.total == 1
        # Item 6: the relay's and the agent's records name the authenticated identity
        # and the address the relay saw, then the client's claim ("for ...").
        (at_agent,) = lab.book.snapshot()
        streams = (await relay_doc(tunnel))["streams"]
        (at_relay,) = [s for s in streams if s["cluster"] == LAB]
        assert at_relay["client"] == at_agent.client
        assert re.fullmatch(r"ops@127\.0\.0\.1:\d+ for 127\.0\.0\.1:\d+", at_agent.client or "")


async def test_a_revoked_client_and_agent_are_out_within_a_second_and_stay_out(
    tunnel: Tunnel,
) -> None:
    await tunnel.start_all()
    assert tunnel.connect is not None and tunnel.agent is not None
    assert await clients_online(tunnel, CLIENT) == 1
    await echo(tunnel.endpoint_port, payload(1024, 2))

    tunnel.wicket("relay", *state(tunnel), "revoke", *state(tunnel), "--client", CLIENT)
    revoked_at = time.monotonic()
    while await clients_online(tunnel, CLIENT):
        assert time.monotonic() - revoked_at < 1.0, "the revoked client's session lives on"
        await asyncio.sleep(0.02)

    tunnel.wicket("relay", *state(tunnel), "revoke", *state(tunnel), "--agent", CLUSTER)
    revoked_at = time.monotonic()
    while await tunnel.cluster_online():
        assert time.monotonic() - revoked_at < 1.0, "the revoked agent's session lives on"
        await asyncio.sleep(0.02)

    # Both keep retrying (new TLS sessions, same certificates): refused every time.
    before = await refused(tunnel, "unauthenticated")
    await asyncio.sleep(3)
    assert await refused(tunnel, "unauthenticated") > before
    assert not await clients_online(tunnel, CLIENT)
    assert not await tunnel.cluster_online()
    await refusal(tunnel.endpoint_port)
    listing = tunnel.wicket("relay", *state(tunnel), "list", *state(tunnel))
    rows = {tuple(line.split()[:2]): line for line in listing.splitlines()[1:]}
    assert rows[("client", CLIENT)].endswith("revoked")
    assert CLUSTER in rows[("client", CLIENT)]  # its scope
    assert rows[("agent", CLUSTER)].endswith("revoked")
    assert "never" not in rows[("client", CLIENT)]  # last seen, at its session


async def test_a_narrowed_scope_ends_the_live_streams_it_no_longer_covers_within_a_second(
    tunnel: Tunnel,
) -> None:
    """``wicket relay scope`` from another process: the client's live stream to the
    cluster it left ends within a second and new ones are refused; the other goes on."""
    async with second_cluster(tunnel) as lab:
        token = client_token(tunnel, "alice", "--cluster", CLUSTER, "--cluster", LAB)
        client = RelayClient(tunnel.base / "client-alice", parse(token.read_text().strip()))
        endpoints = {name: LocalEndpoint(client, name) for name in (CLUSTER, LAB)}
        streams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            await lab.wait_online(15)
            await client.start()
            for endpoint in endpoints.values():
                await endpoint.start()
            await client.wait_online(15)
            for name, endpoint in endpoints.items():
                streams[name] = await asyncio.open_connection("127.0.0.1", endpoint.port)
                await round_trip(*streams[name], payload(1024, 3))
            await wait_streams(tunnel, 2)

            out = tunnel.wicket("relay", *state(tunnel), "scope", "alice", *state(tunnel),
                                "--cluster", CLUSTER)  # fmt: skip
            narrowed_at = time.monotonic()
            assert "alice now reaches prod" in out
            reader, _ = streams[LAB]
            async with asyncio.timeout(1.0):
                with contextlib.suppress(ConnectionError):
                    assert await reader.read(65536) == b"", "the stream to lab went on"
            ended = time.monotonic() - narrowed_at
            await round_trip(*streams[CLUSTER], payload(64 * 1024, 4))  # still through
            await refusal(endpoints[LAB].port)
            await echo(endpoints[CLUSTER].port, payload(4096, 5))
            assert lab.book.total == 1, "a stream outside the new scope reached the agent"
            assert tunnel.relay is not None
            assert "lab left its scope" in tunnel.relay.log()
            listing = tunnel.wicket("relay", *state(tunnel), "list", *state(tunnel))
            (row,) = [line for line in listing.splitlines() if line.startswith("client  alice")]
            assert row.split()[2] == CLUSTER, row
            print(f"the stream to lab ended {ended * 1000:.0f} ms after `wicket relay scope`")

            # Widened again: lab is reachable on the same session.
            tunnel.wicket("relay", *state(tunnel), "scope", "alice", *state(tunnel),
                          "--all-clusters")  # fmt: skip

            async def lab_reachable() -> bool:
                try:
                    await echo_once(endpoints[LAB].port, 512, timeout=1.0)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    return False
                return True

            await tunnel.wait_until(lab_reachable, 5.0, "lab reachable again")
        finally:
            for _, writer in streams.values():
                writer.transport.abort()
            for endpoint in endpoints.values():
                await endpoint.stop()
            await client.stop()


async def test_scope_names_a_known_client_and_valid_clusters(tunnel: Tunnel) -> None:
    tunnel.issue_tokens()
    for who, cluster, error in [
        ("bob", CLUSTER, "no client named bob here"),
        (CLIENT, "No_Such!", "invalid cluster name 'No_Such!'"),
    ]:
        with pytest.raises(subprocess.CalledProcessError) as failed:
            tunnel.wicket("relay", *state(tunnel), "scope", who, *state(tunnel),
                          "--cluster", cluster)  # fmt: skip
        assert error in failed.value.stderr
    with contextlib.closing(RelayState(tunnel.relay_dir)) as relay_state:
        scopes = [t.scope for t in relay_state.store.tokens() if t.name == CLIENT]
    assert scopes == [frozenset({CLUSTER})], "a refused change left the scope as it was"
    # An unused token's scope changes too (its identity will have the new one).
    tunnel.wicket("relay", *state(tunnel), "scope", CLIENT, *state(tunnel), "--all-clusters")
    with contextlib.closing(RelayState(tunnel.relay_dir)) as relay_state:
        scopes = [t.scope for t in relay_state.store.tokens() if t.name == CLIENT]
    assert scopes == [ALL_CLUSTERS]


async def test_quotas_keep_one_client_and_the_public_from_starving_a_cluster(
    tunnel: Tunnel,
) -> None:
    public_port = free_port(stable=True)
    tunnel.relay_args = [
        "--public-host", "127.0.0.1",
        "--max-streams-per-client", "8",
        "--max-public-per-source", "4",
        "--max-public", "6",
        "--public-idle-timeout", "4",
    ]  # fmt: skip
    tunnel.issue_tokens()
    tunnel.wicket("relay", *state(tunnel), "join-token", *state(tunnel), "--cluster", CLUSTER,
                  "--public-port", str(public_port), "--address", tunnel.relay_address)  # fmt: skip
    await tunnel.start_all()
    held: list[asyncio.StreamWriter] = []
    try:
        # Client "laptop" (the connect process) holds its 8 idle tunnels; more fail.
        for _ in range(8):
            held.append(await idle(tunnel.endpoint_port))
        await wait_streams(tunnel, 8)
        for _ in range(4):
            await refusal(tunnel.endpoint_port)
        assert await refused(tunnel, "client_stream_quota") == 4
        # Anonymous idle public connections: 4 from one source, 6 in all.
        held += [await idle(public_port, "127.0.0.2") for _ in range(4)]
        assert await closed_at_once(public_port, "127.0.0.2")  # its own limit
        held += [await idle(public_port, "127.0.0.3") for _ in range(2)]
        assert await closed_at_once(public_port, "127.0.0.4")  # the total
        await wait_streams(tunnel, 14)

        # Another client's new connections all succeed meanwhile.
        other = client_token(tunnel, "bob", "--cluster", CLUSTER)
        async with in_process_client(tunnel, other, CLUSTER) as endpoint:
            for n in range(20):
                await echo(endpoint.port, payload(2048, n))

        # The idle public connections are closed after --public-idle-timeout.
        await wait_streams(tunnel, 8, timeout=8)
        assert await refused(tunnel, "public_idle") == 6
        assert await refused(tunnel, "public_source_quota") == 1
        assert await refused(tunnel, "public_quota") == 1
        assert tunnel.relay is not None
        log = tunnel.relay.log()
        assert log.count("already 8 open") == 1, "a refusal logged per event"
    finally:
        for writer in held:
            writer.transport.abort()


async def test_public_allow_admits_its_networks_only_and_the_endpoint_closes_with_its_cluster(
    tunnel: Tunnel,
) -> None:
    public_port = free_port(stable=True)
    tunnel.relay_args = ["--public-host", "127.0.0.1", "--public-allow", "127.0.0.2/32"]
    tunnel.issue_tokens()
    tunnel.wicket("relay", *state(tunnel), "join-token", *state(tunnel), "--cluster", CLUSTER,
                  "--public-port", str(public_port), "--address", tunnel.relay_address)  # fmt: skip
    await tunnel.start_target()
    await tunnel.start_relay()
    await tunnel.start_agent()

    await public_echo(public_port, "127.0.0.2")
    for source in ("127.0.0.3", "127.0.0.1"):
        assert await closed_at_once(public_port, source)
    assert await refused(tunnel, "public_not_allowed") == 2
    await public_echo(public_port, "127.0.0.2")

    # Another process removes the cluster: the relay closes its public endpoint.
    with contextlib.closing(RelayState(tunnel.relay_dir)) as relay_state:
        assert relay_state.unregister_cluster(CLUSTER)
    removed_at = time.monotonic()
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.2", public_port)
        except ConnectionRefusedError:
            break
        writer.transport.abort()
        assert time.monotonic() - removed_at < 2.0, "the public endpoint outlived its cluster"
        await asyncio.sleep(0.05)


# -- helpers ---------------------------------------------------------------------------


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> None:
    """``data`` through a held connection to an echo, and back whole."""
    async with asyncio.timeout(10):
        writer.write(data)
        await writer.drain()
        assert await reader.readexactly(len(data)) == data


async def idle(port: int, source: str = "127.0.0.1") -> asyncio.StreamWriter:
    """A connection that sends nothing (held by the caller)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return writer


async def wait_streams(tunnel: Tunnel, count: int, timeout: float = 10.0) -> None:
    """Until the relay has exactly ``count`` open streams."""

    async def ready() -> bool:
        streams = (await relay_doc(tunnel))["streams"]
        return sum(1 for s in streams if s["closed_at"] is None) == count

    await tunnel.wait_until(ready, timeout, f"{count} open streams at the relay")


async def closed_at_once(port: int, source: str) -> bool:
    """The relay ends a connection from ``source`` without a byte, within a second."""
    async with asyncio.timeout(1.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            return await reader.read(1) == b""
        except ConnectionError:
            return True
        finally:
            writer.transport.abort()


async def public_echo(port: int, source: str) -> None:
    """Through a public endpoint from ``source``: the harness target's echo and digest."""
    data = os.urandom(1024)
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            writer.write(data)
            writer.write_eof()
            back = await reader.read()
        finally:
            writer.transport.abort()
    assert back == data + hashlib.sha256(data).digest()
