"""The desktop runtime: the embedded relay keeps its address, configuration changes are
picked up without a restart, a failure never drops a cluster, and a setup's probe names
the real cause of a failure; a removed cluster's agent is refused."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from core.aio.endpoint import LocalEndpoint, RelayClient
from core.aio.relay import RelayConfig
from core.errors import ConfigError, UpstreamUnavailable
from core.format import utcnow
from core.kube import KubeconfigPaths, load_merged
from core.mode import Mode
from core.pki.ca import create_ca
from core.pki.tokens import parse
from core.registry.store import ALL_CLUSTERS
from core.service import ClusterSetup, ProbeAuth, WicketService, desktop
from core.service.config import EMBEDDED, ClusterConfig, DesktopConfig, config_path
from core.service.desktop import Desktop
from tests.support.home import fresh_home

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = fresh_home(tmp_path, monkeypatch, keyring=False)
    monkeypatch.setattr(desktop, "RETRY_SECONDS", 0.3)
    return home


class Running:
    def __init__(self, tmp: Path, home: Path) -> None:
        self.state = tmp / "app"
        self.paths = KubeconfigPaths.resolve(env=os.environ, home=str(home))
        self.started: list[tuple[WicketService, Desktop]] = []

    async def start(self, *, strict: bool = True, **options: object) -> Desktop:
        service = WicketService(publish_hz=20)
        await service.start()
        app = Desktop(self.state, self.paths, service, poll=0.1, **options)  # type: ignore[arg-type]
        self.started.append((service, app))
        try:
            await app.start(strict=strict)
        except BaseException:
            await self.stop(app)
            raise
        return app

    async def stop(self, app: Desktop) -> None:
        for service, running in list(self.started):
            if running is app:
                await app.stop()
                await service.stop()
                self.started.remove((service, running))

    def config(self) -> DesktopConfig:
        return DesktopConfig.load(config_path(self.state))

    def change(self, change: Callable[[DesktopConfig], None]) -> None:
        """What ``wicket cluster`` does, from outside the runtime."""
        DesktopConfig.update(config_path(self.state), change)


@pytest.fixture
async def run(tmp_path: Path, home: Path) -> AsyncIterator[Running]:
    running = Running(tmp_path, home)
    try:
        yield running
    finally:
        for _, app in list(running.started):
            await running.stop(app)


async def until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
    assert predicate(), what


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_embedded_relay_keeps_its_saved_address(run: Running) -> None:
    run.change(lambda c: c.put(ClusterConfig("lab", EMBEDDED, 0)))
    first = await run.start()
    assert first.relay is not None
    address = first.relay.address
    assert run.config().relay_listen == address
    port = run.config().cluster("lab").port  # type: ignore[union-attr]
    assert port != 0  # the endpoint's port, picked at the first start, is saved too
    await run.stop(first)

    again = await run.start()
    assert again.relay is not None and again.relay.address == address
    assert again.service.component("endpoint:lab") is not None
    assert run.config().cluster("lab").port == port  # type: ignore[union-attr]
    await run.stop(again)

    host, _, number = address.rpartition(":")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((host, int(number)))
        squatter.listen()
        with pytest.raises(ConfigError) as taken:
            await run.start()
        assert address in str(taken.value) and "--relay-port" in str(taken.value)
        assert run.config().relay_listen == address  # never moved silently
        app = await run.start(strict=False)  # as the app starts: the cluster has the reason
        assert "saved address" in app.problems["lab"] and app.relay is None
        moved_to = await app.move_relay(0)  # the user's choice
        assert moved_to != address and run.config().relay_listen == moved_to
        assert app.is_running("lab") and "lab" not in app.problems
        await run.stop(app)
        moved = await run.start(relay_listen="127.0.0.1:0")  # wicket up --relay-port 0
        assert moved.relay is not None
        assert run.config().relay_listen == moved.relay.address


async def test_changes_are_picked_up_and_failures_keep_the_cluster(run: Running) -> None:
    app = await run.start()
    assert app.relay is None  # nothing embedded configured: no relay yet
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        run.change(lambda c: c.put(ClusterConfig("lab", EMBEDDED, taken)))
        await until(lambda: "lab" in app.problems, "the failed start is reported")
        assert run.config().cluster("lab") is not None  # never dropped
        assert app.status("lab") == app.problems["lab"]
        view = app.service.refresh().cluster("lab")
        assert view is not None and (view.state, view.reason) == ("offline", app.problems["lab"])
    await until(lambda: app.is_running("lab"), "retried once the port is free")
    assert app.service.component("endpoint:lab") is not None
    assert "lab" not in app.problems

    free = closed_port()
    run.change(lambda c: c.put(ClusterConfig("lab", EMBEDDED, free)))
    await until(
        lambda: any(e.address.endswith(f":{free}") for e in app.service.refresh().endpoints),
        "moved port",
    )
    run.change(lambda c: c.drop("lab"))
    await until(lambda: app.service.component("endpoint:lab") is None, "stopped")

    await app.update(lambda c: c.put(ClusterConfig("far", "relay.invalid:443", 0)))
    assert app.is_running("far")  # the endpoint listens while the session is down
    await until(lambda: "not enrolled" in app.status("far"), "the reason it is offline")
    assert run.config().cluster("far") is not None

    await app.disconnect("far")
    assert app.status("far") == "disconnected"
    view = app.service.refresh().cluster("far")
    assert view is not None and view.state == "disconnected"
    await app.reload()
    assert not app.is_running("far")  # a disconnect holds across config reloads
    await app.connect("far")
    assert app.is_running("far")


async def test_a_setup_probe_names_the_real_cause_and_cancel_undoes_it(
    run: Running, tmp_path: Path
) -> None:
    app = await run.start()
    setup = ClusterSetup(app, "lab")
    setup.check_name()
    target = f"127.0.0.1:{closed_port()}"
    instructions = await setup.agent_instructions(target)
    assert f"--target {target}" in instructions.command
    token = parse(instructions.token)
    await app.service.start_agent(
        tmp_path / "agent", ("127.0.0.1", int(target.rpartition(":")[2])), token, name="agent"
    )
    await until(setup.agent_online, "the agent online")
    await setup.start_endpoint(0)
    ca = create_ca(utcnow(), common_name="lab CA").cert_pem
    with pytest.raises(UpstreamUnavailable) as failed:
        await setup.probe(ca, "127.0.0.1", ProbeAuth())
    assert str(failed.value) == "target unreachable: connection refused"
    assert "SSL" not in str(failed.value) and "TLSV1" not in str(failed.value)

    assert app.relay is not None
    assert "lab" in app.relay.state.clusters()
    await setup.cancel()
    assert app.service.component("endpoint:lab") is None
    assert "lab" not in app.relay.state.clusters()
    (record,) = [r for r in app.relay.state.tokens().records() if r.token_id == token.token_id]
    assert record.revoked


async def test_a_removed_clusters_agent_is_refused(
    run: Running, tmp_path: Path, home: Path
) -> None:
    kubeconfig = home / ".kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nusers:\n- name: someone\n  user: {}\n")
    app = await run.start()
    setup = ClusterSetup(app, "lab")
    instructions = await setup.agent_instructions("127.0.0.1:1")
    agent = await app.service.start_agent(
        tmp_path / "agent", ("127.0.0.1", 1), parse(instructions.token), name="agent"
    )
    await until(setup.agent_online, "the agent online")
    ca = create_ca(utcnow(), common_name="lab CA").cert_pem
    await setup.start_endpoint(0)
    await setup.finish(ca, "127.0.0.1", user="someone")
    setup.commit()
    assert run.config().cluster("lab") is not None
    await app.disconnect("lab")  # the relay still sees the agent; the list says what the user did
    view = app.service.refresh().cluster("lab")
    assert view is not None and view.state == "disconnected"
    await app.connect("lab")
    await until(
        lambda: getattr(app.service.refresh().cluster("lab"), "state", "") == "online", "up"
    )
    again = await app.agent_instructions("lab")
    assert again.token != instructions.token  # the first one was used by the agent
    assert await app.agent_instructions("lab") == again  # unused: shown again as it was

    assert "wicket-lab" in kubeconfig.read_text()
    assert await app.remove("lab") == []
    assert "wicket-lab" not in kubeconfig.read_text()
    assert run.config().cluster("lab") is None
    assert app.relay is not None
    assert app.relay.state.identity_revoked(_agent_fingerprint(tmp_path / "agent"))
    await until(lambda: agent.reconnects >= 2, "the agent tried again")
    assert agent.state != "online"
    assert "unauthenticated" in (agent.last_error or "")


def _agent_fingerprint(state_dir: Path) -> str:
    from cryptography import x509

    from core.pki.keys import fingerprint

    (pem,) = [
        p for p in state_dir.rglob("*.pem") if p.name not in ("ca.pem",) and "key" not in p.name
    ]
    return fingerprint(x509.load_pem_x509_certificate(pem.read_bytes()))


async def test_an_external_relay_survives_a_relaunch_and_its_own_restart(
    run: Running, tmp_path: Path
) -> None:
    remote = WicketService(publish_hz=20)
    await remote.start()
    config = RelayConfig(state_dir=tmp_path / "remote-relay")
    relay = await remote.start_relay(config)
    address = relay.address
    try:
        token = relay.state.client_token("laptop", address, utcnow(), scope=ALL_CLUSTERS)
        app = await run.start()
        assert await app.enroll_remote(token) == address
        await app.update(lambda c: c.put(ClusterConfig("far", address, 0)))
        assert app.is_running("far") and app.status("far") == "running"
        await run.stop(app)

        again = await run.start()  # a relaunch: the enrolled identity, no token
        client = again.service.component(f"client@{address}")
        assert isinstance(client, RelayClient)
        await client.wait_online(10)
        await remote.remove("relay")  # the relay goes away ...
        await until(lambda: "reconnecting" in again.status("far"), "the reason shown")
        view = again.service.refresh().cluster("far")
        assert view is not None and view.state != "online"
        assert "reconnecting" in (view.reason or "")
        assert run.config().cluster("far") is not None
        host, port = address.rsplit(":", 1)
        await remote.start_relay(RelayConfig(state_dir=config.state_dir, host=host, port=int(port)))
        await client.wait_online(15)  # ... and comes back: the session too, by itself
        assert again.status("far") == "running"
    finally:
        await remote.stop()


async def test_a_cancelled_setup_at_an_external_relay_leaves_no_session(
    run: Running, tmp_path: Path
) -> None:
    remote = WicketService(publish_hz=20)
    await remote.start()
    relay = await remote.start_relay(RelayConfig(state_dir=tmp_path / "remote-relay"))
    try:
        client_token = relay.state.client_token(
            "laptop", relay.address, utcnow(), scope=ALL_CLUSTERS
        )
        join_token = relay.state.join_token("far", relay.address, None, utcnow())
        app = await run.start()
        setup = ClusterSetup(app, "far")
        await setup.remote_relay(client_token, join_token)
        shown = await setup.agent_instructions("10.0.0.1:6443")
        assert shown.token == join_token  # the relay's operator issued it
        await setup.start_endpoint(0)
        assert app.service.component(f"client@{relay.address}") is not None
        await setup.cancel()
        assert app.service.component("endpoint:far") is None
        assert app.service.component(f"client@{relay.address}") is None
        assert run.config().clusters == []
    finally:
        await remote.stop()


def _local_context(home: Path) -> tuple[dict[str, object], dict[str, object]]:
    """The ``wicket-lab`` cluster entry and its user, as kubectl reads them."""
    doc = YAML(typ="safe").load((home / ".kube" / "config").read_text())
    (cluster,) = [c["cluster"] for c in doc["clusters"] if c["name"] == "wicket-lab"]
    (context,) = [c["context"] for c in doc["contexts"] if c["name"] == "wicket-lab"]
    (user,) = [u["user"] for u in doc["users"] if u["name"] == context["user"]]
    return cluster, user


async def test_an_inspect_cluster_gets_a_context_that_trusts_wicket(
    run: Running, home: Path
) -> None:
    """Passthrough → inspect → passthrough: the context follows each switch (Wicket's CA
    and the endpoint's token in inspect, the cluster's CA again after)."""
    cluster_ca = create_ca(utcnow(), common_name="lab CA").cert_pem
    lab = ClusterConfig("lab", EMBEDDED, 0, cluster_ca=cluster_ca.decode(), server_name="api")
    run.change(lambda c: c.put(lab))
    app = await run.start()
    cluster, _ = _local_context(home)
    assert base64.b64decode(str(cluster["certificate-authority-data"])) == cluster_ca
    assert cluster["tls-server-name"] == "api"

    await app.edit("lab", mode=Mode.INSPECT)
    port = run.config().cluster("lab").port  # type: ignore[union-attr]
    endpoint = app.service.component("endpoint:lab")
    assert isinstance(endpoint, LocalEndpoint) and endpoint.mode == "inspect"
    cluster, user = _local_context(home)
    assert cluster["server"] == f"https://127.0.0.1:{port}"
    assert base64.b64decode(str(cluster["certificate-authority-data"])) == endpoint.ca_pem
    assert cluster["tls-server-name"] == "127.0.0.1"
    assert user["exec"]["args"] == ["credential", "--cluster", "lab"]  # type: ignore[index]
    token = (app.state_dir / "inspect" / "endpoint-token-lab").read_text().strip()
    assert await app.token_of("lab") == token  # what the plugin hands kubectl

    await app.edit("lab", mode=Mode.PASSTHROUGH)
    cluster, _ = _local_context(home)
    assert base64.b64decode(str(cluster["certificate-authority-data"])) == cluster_ca
    assert cluster["tls-server-name"] == "api"

    # A cluster kubectl reaches as a kubeconfig user has no token for Wicket to present.
    await app.update(lambda c: c.put(replace(lab, port=port, user="admin")))
    with pytest.raises(ConfigError, match="kubeconfig user 'admin'"):
        await app.edit("lab", mode=Mode.INSPECT)
    assert run.config().cluster("lab").mode is Mode.PASSTHROUGH  # type: ignore[union-attr]
    cluster, _ = _local_context(home)
    assert base64.b64decode(str(cluster["certificate-authority-data"])) == cluster_ca
    assert cluster["tls-server-name"] == "api"


def _public_server(home: Path) -> str | None:
    """The server of the ``wicket-lab-public`` context (None: there is none)."""
    view = load_merged(KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    context = view.context("wicket-lab-public")
    return context.server if context is not None else None


async def test_the_public_context_follows_the_configuration(run: Running, home: Path) -> None:
    """Written at start and on a change of the file (as ``wicket cluster set`` makes it),
    removed when cleared, without restarting the endpoint; none in inspect mode."""
    public, moved = "https://relay.example:7443", "https://203.0.113.7:443"
    cluster_ca = create_ca(utcnow(), common_name="lab CA").cert_pem.decode()
    lab = ClusterConfig("lab", EMBEDDED, closed_port(), cluster_ca=cluster_ca, server_name="api")
    run.change(lambda c: c.put(replace(lab, public_server=public)))
    app = await run.start()
    assert _public_server(home) == public  # at start: the port did not move, still written
    endpoint = app.service.component("endpoint:lab")
    assert isinstance(endpoint, LocalEndpoint)

    run.change(lambda c: c.put(replace(lab, public_server=moved)))
    await until(lambda: _public_server(home) == moved, "the new public server")
    run.change(lambda c: c.put(lab))
    await until(lambda: _public_server(home) is None, "the public context removed")
    local = load_merged(KubeconfigPaths.resolve(env=os.environ, home=str(home)))
    assert local.context("wicket-lab") is not None  # the local context stays
    assert app.service.component("endpoint:lab") is endpoint  # never restarted for it

    await app.edit("lab", public_server=public)  # the app's Edit
    assert _public_server(home) == public
    assert run.config().cluster("lab").public_server == public  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not an https:// URL"):
        await app.edit("lab", public_server="relay.example:7443")
    assert _public_server(home) == public
    await app.edit("lab", mode=Mode.INSPECT)  # the apiserver would refuse its token
    await until(lambda: _public_server(home) is None, "no public context in inspect mode")
    assert run.config().cluster("lab").public_server == public  # type: ignore[union-attr]
    await app.edit("lab", mode=Mode.PASSTHROUGH)
    assert _public_server(home) == public
