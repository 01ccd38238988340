"""The whole demo in one process: relay, agent, demo apiserver, client session, endpoint.

``wicket demo`` and the desktop app's first run use this to give a new user a cluster
reached the way a real one is: kubectl → local passthrough endpoint → relay → agent →
demo apiserver (TLS, bearer token). With ``mode="inspect"`` the local endpoint ends
kubectl's TLS (Wicket's CA and a per-run endpoint credential go into the kubeconfig)
and sends the demo's bearer token upstream itself. Everything lives in one state dir::

    <state>/relay/      the relay's CA, certificate, clusters and tokens
    <state>/agent/      the agent's enrolled identity
    <state>/client/     the desktop client's enrolled identity
    <state>/apiserver/  the demo apiserver's PKI and pod working dirs
    <state>/inspect/    Wicket's CA and the inspect endpoint's certificate (inspect mode)
    <state>/kubeconfig  context ``wicket-demo`` → the local endpoint
    <state>/stack.json  ports of the last run (reused when free)

Tokens are one-time: the agent and the client enroll on the first run only, later runs
reuse the identities (and just point them at the relay's current address). ``start()``
returns once kubectl can be used; nothing here blocks the event loop for long.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.aio.agent import Agent, AgentSnapshot
from core.aio.dial import load_enrollment, use_relay
from core.aio.endpoint import EndpointSnapshot, InspectSettings, LocalEndpoint, RelayClient
from core.aio.peer import RelayPeer
from core.aio.relay import Relay, RelayConfig, RelaySnapshot
from core.demo.apiserver import DemoApiServer
from core.errors import ConfigError, PKIError, TunnelError, WicketError
from core.kube import Entry, KubeconfigPaths, WriteOptions, write_owned_entries
from core.mode import Mode, mode_of
from core.paths import data_dir
from core.pki import files
from core.pki.identity import Role
from core.pki.tokens import Token, parse
from core.registry.store import ALL_CLUSTERS

log = logging.getLogger("wicket.demo")

CLUSTER = "demo"
CLIENT_NAME = "demo-desktop"
CONTEXT = "wicket-demo"
#: A name on the demo apiserver's certificate: kubectl verifies it end to end.
TLS_SERVER_NAME = "wicket-demo.local"
NAMESPACE = "default"
ONLINE_TIMEOUT = 20.0
STACK_FILE = "stack.json"


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/wicket/demo`` (default ``~/.local/share/wicket/demo``)."""
    return data_dir("demo")


@dataclass(frozen=True)
class DemoSnapshot:
    """The stack as the status socket shows it: its own facts plus each part's snapshot."""

    state: str
    state_dir: str
    kubeconfig: str
    endpoint_port: int | None
    apiserver: str | None
    enrolled: bool
    endpoint: EndpointSnapshot | None
    relay: RelaySnapshot | None
    agent: AgentSnapshot | None
    client_state: str | None
    client_error: str | None


class DemoStack:
    """Runs every part of the demo in the current event loop.

    ``port`` is the local endpoint's port: None reuses the last run's port when it is
    free (else any), 0 takes any, a number must be free (``ConfigError`` otherwise).
    ``kubeconfig`` is where the ``wicket-demo`` context goes (default
    ``<state>/kubeconfig``); an existing file is edited, not replaced: only the
    ``wicket-demo`` entries change, and only if Wicket wrote them. ``mode`` is the
    local endpoint's: ``passthrough`` (default) or ``inspect``.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        port: int | None = None,
        kubeconfig: Path | None = None,
        online_timeout: float = ONLINE_TIMEOUT,
        mode: Mode | str = Mode.PASSTHROUGH,
    ) -> None:
        self.mode = mode_of(mode)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.requested_port = port
        self.kubeconfig_path = Path(kubeconfig) if kubeconfig else self.state_dir / "kubeconfig"
        self.online_timeout = online_timeout
        self.state = "stopped"
        self.enrolled = False  # True when this run enrolled (first run, or a reset)
        self.apiserver: DemoApiServer | None = None
        self.relay: Relay | None = None
        self.agent: Agent | None = None
        self.client: RelayClient | None = None
        self.endpoint: LocalEndpoint | None = None
        self.kubeconfig_is_current = False
        self._endpoint_token: str | None = None

    # -- public facts ------------------------------------------------------------------

    @property
    def endpoint_port(self) -> int:
        if self.endpoint is None or not self.endpoint.port:
            raise RuntimeError("the demo stack has not started its endpoint")
        return self.endpoint.port

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.endpoint_port}"

    def snapshot(self) -> DemoSnapshot:
        endpoint, apiserver, client = self.endpoint, self.apiserver, self.client
        return DemoSnapshot(
            self.state,
            str(self.state_dir),
            str(self.kubeconfig_path),
            endpoint.port if endpoint is not None and endpoint.port else None,
            apiserver.url if apiserver is not None and self.state == "running" else None,
            self.enrolled,
            endpoint.snapshot() if endpoint is not None else None,
            self.relay.snapshot() if self.relay is not None else None,
            self.agent.snapshot() if self.agent is not None else None,
            client.state if client is not None else None,
            client.last_error if client is not None else None,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; returns once the tunnel is up and the kubeconfig written."""
        if self.state not in ("stopped", "failed"):
            raise RuntimeError(f"the demo stack is already {self.state}")
        self.state = "starting"
        try:
            await self._start()
        except BaseException:
            self.state = "failed"
            await self.stop()
            self.state = "failed"
            raise
        self.state = "running"
        log.info("demo running: kubectl → %s → relay → agent → apiserver", self.server_url)

    async def stop(self) -> None:
        """Stop everything that started (idempotent; one failing part stops no other)."""
        parts: list[Callable[[], Awaitable[None]] | None] = [
            self.endpoint.stop if self.endpoint else None,
            self.client.stop if self.client else None,
            self.agent.stop if self.agent else None,
            self.relay.stop if self.relay else None,
            self.apiserver.stop if self.apiserver else None,
        ]
        for stop in parts:
            if stop is None:
                continue
            try:
                await stop()
            except Exception:  # keep going: the rest must still stop
                log.exception("stopping a demo part failed")
        if self.state != "failed":
            self.state = "stopped"

    async def wait(self) -> None:
        """Return (or raise) when the agent or the client gives up for good."""
        tasks = [p.task for p in (self.agent, self.client) if p is not None and p.task]
        if not tasks:
            return
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def __aenter__(self) -> DemoStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- starting ----------------------------------------------------------------------

    async def _start(self) -> None:
        state = self.state_dir
        await asyncio.to_thread(files.ensure_private_dir, state)
        remembered = await asyncio.to_thread(self._load_ports)

        self.apiserver = DemoApiServer(state / "apiserver", "127.0.0.1", 0)
        await self.apiserver.start()

        self.relay = await self._start_relay(remembered.get("relay_port", 0))
        agent_token, client_token = await asyncio.to_thread(self._enrollment, self.relay)
        self.enrolled = agent_token is not None or client_token is not None

        self.client = RelayClient(state / "client", client_token)
        self.endpoint = await self._start_endpoint(self.client, remembered.get("endpoint_port", 0))
        self.agent = Agent(state / "agent", "127.0.0.1", self.apiserver.port, token=agent_token)
        await self.agent.start()
        await self.client.start()
        await _online(self.agent, self.online_timeout)  # both connect meanwhile
        await _online(self.client, self.online_timeout)

        await asyncio.to_thread(self._write_state)

    async def _start_relay(self, remembered: int) -> Relay:
        for port in dict.fromkeys([remembered, 0]):
            relay = Relay(RelayConfig(state_dir=self.state_dir / "relay", port=port))
            try:
                await relay.start()
            except OSError as exc:
                await relay.stop()
                if port == 0:
                    raise TunnelError(f"the demo relay cannot listen: {exc}") from exc
                log.info("relay port %d of the last run is taken; using another", port)
                continue
            return relay
        raise AssertionError("unreachable")

    async def _start_endpoint(self, client: RelayClient, remembered: int) -> LocalEndpoint:
        if self.requested_port is not None:
            candidates = [self.requested_port]
        else:
            candidates = list(dict.fromkeys([remembered, 0]))
        for port in candidates:
            endpoint = LocalEndpoint(
                client, CLUSTER, "127.0.0.1", port, mode=self.mode, inspect=self._inspect()
            )
            try:
                await endpoint.start()
            except ConfigError:
                if port == candidates[-1]:
                    raise
                log.info("endpoint port %d of the last run is taken; using another", port)
                continue
            return endpoint
        raise AssertionError("unreachable")

    def _inspect(self) -> InspectSettings | None:
        """Inspect mode: a fresh endpoint credential per run; the demo token upstream."""
        if self.mode != "inspect":
            return None
        assert self.apiserver is not None
        if self._endpoint_token is None:
            self._endpoint_token = secrets.token_urlsafe(32)
        return InspectSettings(
            state_dir=self.state_dir / "inspect",
            endpoint_token=self._endpoint_token,
            cluster_ca_pem=self.apiserver.ca_pem,
            server_name=TLS_SERVER_NAME,
            upstream_authorization=f"Bearer {self.apiserver.bearer_token}",
        )

    def _enrollment(self, relay: Relay) -> tuple[Token | None, Token | None]:
        """One-time tokens for the parts not enrolled with this relay yet (in a thread)."""
        now = dt.datetime.now(dt.UTC)
        ca_fingerprint = relay.state.ca(now).fingerprint
        address = relay.address
        known = CLUSTER in relay.state.clusters()

        def token(role: Role, issue: Callable[[], str]) -> Token | None:
            path = self.state_dir / role.value
            if _enrolled_here(path, role, ca_fingerprint) and (known or role == Role.CLIENT):
                # The relay's port may differ from the last run: point the identity at it.
                use_relay(path, role, ca_fingerprint, address)
                return None
            if path.exists():
                log.info("resetting the demo %s identity in %s", role.value, path)
                shutil.rmtree(path)
            return parse(issue())

        return (
            token(Role.AGENT, lambda: relay.state.join_token(CLUSTER, address, None, now)),
            token(
                Role.CLIENT,
                lambda: relay.state.client_token(CLIENT_NAME, address, now, scope=ALL_CLUSTERS),
            ),
        )

    def _load_ports(self) -> dict[str, int]:
        path = self.state_dir / STACK_FILE
        try:
            doc = json.loads(files.read_file(path, private=True))
        except (OSError, PKIError, ValueError):
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: v for k, v in doc.items() if isinstance(v, int) and 0 < v < 65536}

    def _write_state(self) -> None:
        assert self.relay is not None and self.endpoint is not None
        relay_port = int(self.relay.address.rsplit(":", 1)[1])
        doc = {"relay_port": relay_port, "endpoint_port": self.endpoint.port}
        files.write_private(self.state_dir / STACK_FILE, json.dumps(doc).encode())
        self.kubeconfig_is_current = self.write_kubeconfig(self.kubeconfig_path)

    # -- the kubeconfig ----------------------------------------------------------------

    def write_kubeconfig(self, path: Path, *, options: WriteOptions | None = None) -> bool:
        """Put the ``wicket-demo`` entries into ``path`` (created if missing).

        Other entries are kept; ``current-context`` is set when the file has none or is
        the stack's own. Returns whether ``wicket-demo`` is the current context. Written
        by core.kube under kubectl's lock, atomically (synchronous: call it from a
        thread in an event loop). ``options`` default to no backups of the stack's own
        file and core.kube's defaults for any other (the crash test shortens the settle).
        """
        own = path == self.state_dir / "kubeconfig"
        change = write_owned_entries(
            KubeconfigPaths.single(str(path)),
            CLUSTER,
            self._kubeconfig_entries(),
            mode=self.mode,
            current=CONTEXT,
            switch="always" if own else "if-unset",
            options=options or WriteOptions(backups=0 if own else 3),
        )
        return change.current_context == CONTEXT

    def _kubeconfig_entries(self) -> list[Entry]:
        assert self.apiserver is not None and self.endpoint is not None
        cluster: dict[str, Any] = {"server": self.server_url}
        if self.mode == "inspect":
            # kubectl talks TLS to the endpoint (Wicket's loopback-only CA) and presents
            # the endpoint's credential; the demo token never leaves this process.
            assert self._endpoint_token is not None
            cluster["certificate-authority-data"] = base64.b64encode(self.endpoint.ca_pem).decode()
            token = self._endpoint_token
        else:
            cluster["certificate-authority-data"] = base64.b64encode(self.apiserver.ca_pem).decode()
            cluster["tls-server-name"] = TLS_SERVER_NAME
            token = self.apiserver.bearer_token
        context = {"cluster": CONTEXT, "user": CONTEXT, "namespace": NAMESPACE}
        return [
            Entry("clusters", CONTEXT, cluster),
            Entry("users", CONTEXT, {"token": token}),
            Entry("contexts", CONTEXT, context),
        ]


def _enrolled_here(path: Path, role: Role, relay_ca_fingerprint: str) -> bool:
    """Whether ``path`` holds an identity issued by this relay's CA."""
    try:
        return load_enrollment(path, role, relay_ca_fingerprint) is not None
    except (OSError, WicketError, ValueError):
        return False


async def _online(peer: RelayPeer, timeout: float) -> None:
    """Wait for the peer's session; its failure (a refused token) is raised at once."""
    task = peer.task
    assert task is not None
    waiter = asyncio.create_task(peer.wait_online(timeout))
    try:
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if task.done():
        task.result()  # raises the reason it gave up
        raise TunnelError(f"the demo {peer.role.value} stopped")
    try:
        waiter.result()
    except TimeoutError:
        raise TunnelError(
            f"the demo {peer.role.value} is not online after {timeout:g} s: "
            f"{peer.last_error or peer.state}"
        ) from None
