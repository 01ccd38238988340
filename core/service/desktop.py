"""The desktop configuration, running: what the app and ``wicket up`` both are.

``Desktop`` runs on the service's event loop and owns, for the clusters in the
configuration (:mod:`core.service.config`):

* the embedded relay, on its saved address (the first start picks a free port and saves
  it; a taken port is a ``ConfigError`` that says so: the agents dial that address, so
  it never moves silently). Its CA and registry live in ``<state>/relay``.
* a client session per relay (``<state>/client`` at the embedded relay,
  ``<state>/clients/<relay>`` at an external one); an external session reconnects with
  backoff for as long as Wicket runs (``core.aio.peer``), and its last error is the
  reason the cluster list shows.
* a local endpoint per cluster, on its saved port (a port picked at the first start is
  saved too).
* each cluster's ``wicket-NAME-public`` kubectl context, when it has a public server:
  written or removed at start and whenever the public server changes.

It polls the configuration file's stat every second and reconciles: a cluster added by
``wicket cluster add`` starts, a removed one stops, a changed one restarts (unless only
its public server changed: that is a context, not an endpoint). A cluster that fails to
start stays in the configuration, with the reason in :attr:`problems`, and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from core.aio.dial import load_enrollment, use_relay
from core.aio.endpoint import InspectSettings, LocalEndpoint, RelayClient
from core.aio.lifecycle import cancel_and_wait
from core.aio.relay import Relay, RelayConfig
from core.cli.tunnel import endpoint_token, host_port
from core.demo.embedded import DemoStack
from core.errors import ConfigError, KubeconfigError, SecretStoreError, TunnelError, WicketError
from core.format import utcnow
from core.kube import KubeconfigPaths, load_merged
from core.mode import Mode
from core.pki.identity import Role
from core.pki.tokens import Token, parse
from core.registry.store import ALL_CLUSTERS
from core.secrets.socket import CredentialServer
from core.service import clusters, demo
from core.service.clusters import AgentInstructions
from core.service.config import (
    DEFAULT_RELAY_LISTEN,
    EMBEDDED,
    ClusterConfig,
    DesktopConfig,
    config_path,
    relay_dir,
)
from core.service.demo import DEMO
from core.service.service import WicketService
from core.service.status import ClusterStatus, DesktopSnapshot, Passive
from core.service.vault import TokenVault

log = logging.getLogger("wicket.desktop")

RELAY = "relay"
DESKTOP = "desktop"
CLIENT_NAME = "desktop"
POLL_SECONDS = 1.0
RETRY_SECONDS = 5.0
ONLINE_TIMEOUT = 10.0


def endpoint_name(cluster: str) -> str:
    return f"endpoint:{cluster}"


def client_name(relay: str) -> str:
    return "client" if relay == EMBEDDED else f"client@{relay}"


def client_dir(state_dir: Path, relay: str) -> Path:
    """Where this app's identity at ``relay`` is kept."""
    if relay == EMBEDDED:
        return state_dir / "client"
    return state_dir / "clients" / re.sub(r"[^A-Za-z0-9._-]", "_", relay)


class Desktop:
    """The clusters of one configuration file, brought up and kept in step with it."""

    def __init__(
        self,
        state_dir: Path,
        kubeconfig: KubeconfigPaths,
        service: WicketService,
        *,
        vault: TokenVault | None = None,
        relay_listen: str | None = None,
        poll: float = POLL_SECONDS,
        credential_socket: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.path = config_path(state_dir)
        self.kubeconfig = kubeconfig
        self.service = service
        self.vault = vault or TokenVault()
        self.config = DesktopConfig()
        self.problems: dict[str, str] = {}  # cluster -> why it is not running
        self.held: set[str] = set()  # disconnected by the user (this session)
        self._relay_listen = relay_listen  # an override: --relay-port, or a new choice
        self._running: dict[str, ClusterConfig] = {}
        self._provisional: set[str] = set()  # a setup's endpoint, not saved yet
        self.join_tokens: dict[str, str] = {}  # the last one issued per cluster
        self._public_checked: dict[str, str | None] = {}  # cluster -> its public context
        self._poll = poll
        self._stamp: tuple[int, int, int] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self.credentials = CredentialServer(self.token_of, credential_socket)
        self._serving = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, strict: bool = False) -> None:
        """Read the configuration, bring its clusters up, watch the file.

        ``strict`` (``wicket up``): an embedded relay that cannot start is an error;
        otherwise it is a problem of each embedded cluster.
        """
        self._stamp = await asyncio.to_thread(_stamp, self.path)
        self.config = await asyncio.to_thread(DesktopConfig.load, self.path)
        await self._serve_credentials(strict=strict)
        await self.service.add(DESKTOP, Passive(), self.snapshot)
        try:
            if strict and (self._relay_listen or any(c.embedded for c in self.config.clusters)):
                await self.ensure_relay()
            await self.reconcile()
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._watch_loop(), name="wicket-desktop-config")

    async def stop(self) -> None:
        """Stop watching and answering ``wicket credential``; the service stops the
        components."""
        await cancel_and_wait(self._watch)
        self._watch = None
        await self.service.remove(DESKTOP)
        if self._serving:
            await self.credentials.stop()
            self._serving = False

    async def _serve_credentials(self, *, strict: bool) -> None:
        """Answer ``wicket credential`` (core.secrets.socket), so every context Wicket
        wrote works while it runs, whichever store holds the token."""
        try:
            await self.credentials.start()
        except WicketError as exc:
            if strict:
                raise
            log.warning("wicket credential cannot ask this Wicket: %s", exc)
            return
        self._serving = True

    async def token_of(self, cluster: str) -> str | None:
        """What kubectl presents for a configured cluster: the upstream token from the
        store it names, or for an inspect cluster the endpoint's own token (the upstream
        one never leaves Wicket then)."""
        cfg = self.config.cluster(cluster)
        if cfg is None:
            return None
        if cfg.mode is Mode.INSPECT:
            return await asyncio.to_thread(endpoint_token, self._endpoint_token_file(cfg.name))
        return await self.vault.get(cfg)

    @property
    def inspect_dir(self) -> Path:
        """Wicket's CA and the endpoint tokens of inspect clusters."""
        return self.state_dir / "inspect"

    def _endpoint_token_file(self, name: str) -> Path:
        return self.inspect_dir / f"endpoint-token-{name}"

    def _inspect_ca(self) -> bytes:
        """Wicket's CA if an inspect endpoint created it already (else b"")."""
        with contextlib.suppress(FileNotFoundError):
            return (self.inspect_dir / "ca.pem").read_bytes()
        return b""

    # -- the configuration -------------------------------------------------------------

    async def update(self, change: Callable[[DesktopConfig], None]) -> DesktopConfig:
        """Change the file (locked read-modify-write), then bring the running parts in step."""
        await self._save(change)
        await self.reconcile()
        return self.config

    async def reload(self) -> None:
        """Re-read the file now (the watcher does this within a second of a change)."""
        self._stamp = await asyncio.to_thread(_stamp, self.path)
        try:
            self.config = await asyncio.to_thread(DesktopConfig.load, self.path)
        except ConfigError as exc:
            log.error("%s (keeping the configuration read before)", exc)
            return
        await self.reconcile()

    async def _save(self, change: Callable[[DesktopConfig], None]) -> None:
        self.config = await asyncio.to_thread(DesktopConfig.update, self.path, change)
        self._stamp = await asyncio.to_thread(_stamp, self.path)

    async def _watch_loop(self) -> None:
        since_retry = 0.0
        while True:
            await asyncio.sleep(self._poll)
            since_retry += self._poll
            try:
                if await asyncio.to_thread(_stamp, self.path) != self._stamp:
                    await self.reload()
                elif self.problems and since_retry >= RETRY_SECONDS:
                    since_retry = 0.0
                    await self.reconcile()
            except Exception:  # the watch must outlive one bad pass
                log.exception("reconciling the desktop configuration failed")

    # -- reconciling -------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Start what the configuration has and nothing runs for; stop the rest."""
        async with self._guard():
            wanted = {c.name: c for c in self.config.clusters if c.name not in self.held}
            for name, running in list(self._running.items()):
                if name in self._provisional or wanted.get(name) == running:
                    continue
                if _same_endpoint(wanted.get(name), running):
                    self._running[name] = wanted[name]  # a new public server only
                    continue
                removed = self.config.cluster(name) is None
                await self._stop_cluster(name, removed=removed)
            for name in set(self.problems) - set(wanted):
                del self.problems[name]
            for cfg in wanted.values():
                if cfg.name not in self._running:
                    await self._try_start(cfg)
            await self._sync_public_contexts()

    def _guard(self) -> asyncio.Lock:
        """One change of the running parts at a time (made on first use, on the loop)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _try_start(self, cfg: ClusterConfig) -> None:
        try:
            await self._start_cluster(cfg)
        except Exception as exc:
            if self.problems.get(cfg.name) != str(exc):
                log.error("cluster %s cannot start: %s", cfg.name, exc)
            self.problems[cfg.name] = str(exc)
        else:
            self.problems.pop(cfg.name, None)

    async def _start_cluster(self, cfg: ClusterConfig) -> LocalEndpoint:
        client = await self.client_for(cfg.relay)
        inspect = await self._inspect_settings(cfg) if cfg.mode is Mode.INSPECT else None
        endpoint = await self.service.start_endpoint(
            client, cfg.name, port=cfg.port, mode=cfg.mode, inspect=inspect
        )
        started = replace(cfg, port=endpoint.port)
        self._running[cfg.name] = started
        if cfg.name not in self._provisional:
            moved = cfg.port != endpoint.port
            if moved:
                await self._save(lambda c: c.put(started))  # the port kubectl's context names
            if moved or cfg.mode is Mode.INSPECT:  # an inspect context trusts this CA
                await self._sync_contexts(started, endpoint.ca_pem)
        log.info("cluster %s: local endpoint %s", cfg.name, endpoint.url)
        return endpoint

    async def _sync_contexts(self, cfg: ClusterConfig, inspect_ca: bytes = b"") -> bool:
        """Write the cluster's contexts; False if it has none to write (no CA or port)."""
        if not (cfg.cluster_ca and cfg.port):
            return False
        await asyncio.to_thread(clusters.sync_contexts, self.kubeconfig, cfg, inspect_ca)
        return True

    async def _sync_public_contexts(self) -> None:
        """Write or remove ``wicket-NAME-public`` where the kubeconfig is not in step
        with what a cluster's configuration asks for; checked at start and when that
        changes (``wicket cluster set`` and Edit write it themselves, and then this finds
        it in step). A kubeconfig that cannot be written is logged and not retried until
        the configuration changes again."""
        configured = {c.name: c for c in self.config.clusters if c.name not in self._provisional}
        for name in set(self._public_checked) - set(configured):
            del self._public_checked[name]
        todo = {  # "": never checked (a wanted server is None or a URL)
            name: wanted
            for name, cfg in configured.items()
            if self._public_checked.get(name, "") != (wanted := clusters.public_context_server(cfg))
        }
        if not todo:
            return
        try:
            view = await asyncio.to_thread(load_merged, self.kubeconfig)
        except KubeconfigError as exc:
            view = None
            log.warning("the public contexts cannot be checked: %s", exc)
        for name, wanted in todo.items():
            self._public_checked[name] = wanted
            if view is None or clusters.written_public_server(view, name) == wanted:
                continue
            current = self._running.get(name, configured[name])  # the port the endpoint has
            try:
                if await self._sync_contexts(current, self._inspect_ca()):
                    log.info("cluster %s: public context %s", name, wanted or "removed")
            except WicketError as exc:
                log.warning("cluster %s: its public context stays as it was: %s", name, exc)

    async def _stop_cluster(self, name: str, *, removed: bool) -> None:
        self._running.pop(name, None)
        self._provisional.discard(name)
        await self.service.remove(endpoint_name(name))
        relay = self.relay
        if removed and relay is not None:
            relay.disconnect_agent(name)  # unregistered: its reconnection is refused
        log.info("cluster %s: stopped%s", name, " (removed)" if removed else "")

    async def _inspect_settings(self, cfg: ClusterConfig) -> InspectSettings:
        """What an inspect cluster needs: its apiserver's CA and name, the token kubectl
        presents (kept next to Wicket's CA, as ``wicket connect`` keeps it) and the
        upstream token from the cluster's secret store, if one was stored."""
        if not (cfg.cluster_ca and cfg.server_name):
            raise ConfigError(f"{cfg.name}: inspect mode needs the cluster's CA and server name")
        token = await asyncio.to_thread(endpoint_token, self._endpoint_token_file(cfg.name))
        try:
            upstream = await self.vault.get(cfg)
        except SecretStoreError as exc:
            log.warning(
                "%s: no upstream token (%s); requests go upstream as they come", cfg.name, exc
            )
            upstream = None
        return InspectSettings(
            state_dir=self.inspect_dir,
            endpoint_token=token,
            cluster_ca_pem=cfg.cluster_ca.encode(),
            server_name=cfg.server_name,
            upstream_authorization=f"Bearer {upstream}" if upstream else None,
        )

    # -- what the user does ------------------------------------------------------------

    def is_running(self, name: str) -> bool:
        return name in self._running

    async def connect(self, name: str) -> None:
        """Bring a held (or failed) cluster up; its start error is raised."""
        cfg = self.config.cluster(name)
        if cfg is None:
            raise ConfigError(f"no cluster {name!r}")
        self.held.discard(name)
        if name not in self._running:
            try:
                await self._start_cluster(cfg)
            except Exception as exc:
                self.problems[name] = str(exc)
                raise
            self.problems.pop(name, None)

    async def disconnect(self, name: str) -> None:
        """Stop the cluster's endpoint until :meth:`connect` (or the next launch)."""
        self.held.add(name)
        if name in self._running:
            await self._stop_cluster(name, removed=False)

    def snapshot(self) -> DesktopSnapshot:
        """The configured clusters whose state the running parts cannot tell."""
        found = (self._status_of(c) for c in self.config.clusters)
        return DesktopSnapshot(tuple(s for s in found if s is not None))

    def _status_of(self, cfg: ClusterConfig) -> ClusterStatus | None:
        if cfg.name in self.held:
            return ClusterStatus(cfg.name, "disconnected", "disconnected")
        if cfg.name in self.problems:
            return ClusterStatus(cfg.name, "offline", self.problems[cfg.name])
        if cfg.name not in self._running:
            return ClusterStatus(cfg.name, "offline", "not started")
        client = self.service.component(client_name(cfg.relay))
        if isinstance(client, RelayClient) and client.state != "online":
            reason = f"relay {client.state}: {client.last_error or 'no session yet'}"
            return ClusterStatus(cfg.name, "reconnecting", reason)
        return None

    def status(self, name: str) -> str:
        """Why the cluster is as it is, in a few words (the snapshot's reason)."""
        cfg = self.config.cluster(name)
        if cfg is None:
            return "not configured"
        status = self._status_of(cfg)
        return "running" if status is None else status.reason or status.state

    async def remove(self, name: str) -> list[str]:
        """Remove the cluster and what it left: for the embedded relay its registration
        and its agents' identities (revoked), its kubectl contexts, its stored token and
        the configuration entry (which stops its endpoint). Returns what stayed."""
        cfg = self.config.cluster(name)
        if cfg is None:
            raise ConfigError(f"no cluster {name!r}")
        removal = await asyncio.to_thread(
            clusters.remove_cluster, self.state_dir, self.kubeconfig, self.vault, cfg
        )
        self.held.discard(name)
        self.join_tokens.pop(name, None)
        await self.update(lambda c: c.drop(name))
        return removal.problems

    async def edit(
        self,
        name: str,
        *,
        mode: Mode | None = None,
        port: int | None = None,
        public_server: str | None = None,
    ) -> None:
        """Change the cluster's mode, local port or public server ("": none). A new mode
        or port restarts the endpoint; the kubectl contexts follow (inspect: Wicket's CA
        and the endpoint's token, written again once the endpoint serves; the public
        context: see :func:`clusters.sync_contexts`). The demo takes a mode only."""
        if name == DEMO and self.config.cluster(name) is None:
            await self._edit_demo(mode)
            return
        cfg = self.config.cluster(name)
        if cfg is None:
            raise ConfigError(f"no cluster {name!r}")
        changed = replace(
            cfg,
            mode=mode or cfg.mode,
            port=cfg.port if port is None else port,
            public_server=cfg.public_server if public_server is None else public_server,
        )
        if changed.mode is Mode.INSPECT and cfg.user:
            raise ConfigError(
                f"{name} cannot inspect: kubectl authenticates as the kubeconfig user "
                f"{cfg.user!r}, and Wicket presents a token upstream in inspect mode "
                "(add the cluster again with a token)"
            )
        inspect_ca = self._inspect_ca() if changed.mode is Mode.INSPECT else b""
        await self._sync_contexts(changed, inspect_ca)
        await self.update(lambda c: c.put(changed))

    async def _edit_demo(self, mode: Mode | None) -> None:
        """Save the demo's mode; a running demo restarts in it (same ports)."""
        if mode is None or mode is self.config.demo_mode:
            return
        await self._save(lambda c: setattr(c, "demo_mode", mode))
        if isinstance(self.service.component(DEMO), DemoStack):
            await self.stop_demo()
            await self.start_demo()

    async def agent_instructions(self, name: str) -> AgentInstructions:
        """The agent's command and manifests again: the join token issued last time
        while it is unused, else a fresh one (embedded relay only)."""
        cfg = self.config.cluster(name)
        if cfg is None:
            raise ConfigError(f"no cluster {name!r}")
        if not cfg.embedded:
            raise ConfigError(f"{name}: the agent's join token comes from the relay {cfg.relay}")
        token = self.join_tokens.get(name)
        if token is None or await asyncio.to_thread(
            clusters.join_token_used, self.state_dir, token
        ):
            address = (await self.ensure_relay()).address
            token = await asyncio.to_thread(
                clusters.issue_join_token, self.state_dir, name, address
            )
            self.join_tokens[name] = token
        target = cfg.target or "HOST:PORT"
        return await asyncio.to_thread(clusters.agent_instructions, token, name, target)

    # -- a setup's endpoint (core.service.setup) ---------------------------------------

    async def start_provisional(self, cfg: ClusterConfig) -> int:
        """An endpoint for a cluster not saved yet; the reconciler leaves it alone."""
        self._provisional.add(cfg.name)
        try:
            endpoint = await self._start_cluster(cfg)
            try:
                await endpoint.client.wait_online(ONLINE_TIMEOUT)
            except TimeoutError:
                reason = endpoint.client.last_error or endpoint.client.state
                raise TunnelError(f"no session to the relay: {reason}") from None
        except BaseException:
            await self.stop_provisional(cfg.name)
            self._provisional.discard(cfg.name)
            raise
        return endpoint.port

    async def confirm(self, cfg: ClusterConfig) -> None:
        """Save a setup's cluster; its running endpoint becomes the configured one."""
        self._running[cfg.name] = cfg
        await self._save(lambda c: c.put(cfg))
        self._provisional.discard(cfg.name)

    async def stop_provisional(self, name: str) -> None:
        if name in self._provisional:
            await self._stop_cluster(name, removed=False)

    def last_refusal(self, name: str) -> str | None:
        endpoint = self.service.component(endpoint_name(name))
        return endpoint.last_refusal if isinstance(endpoint, LocalEndpoint) else None

    # -- the embedded relay and the relay clients --------------------------------------

    @property
    def relay(self) -> Relay | None:
        relay = self.service.component(RELAY)
        return relay if isinstance(relay, Relay) else None

    async def ensure_relay(self) -> Relay:
        """The embedded relay, started on its saved address (which a first start saves)."""
        if self.relay is not None:
            return self.relay
        listen = self._relay_listen or self.config.relay_listen or DEFAULT_RELAY_LISTEN
        host, port = host_port(listen, any_port=True)
        relay = Relay(RelayConfig(state_dir=relay_dir(self.state_dir), host=host, port=port))
        try:
            await self.service.add(RELAY, relay, relay.snapshot)
        except OSError as exc:
            relay.state.close()
            raise ConfigError(relay_port_taken(listen, exc)) from exc
        if relay.address != self.config.relay_listen:
            await self._save(lambda c: setattr(c, "relay_listen", relay.address))
            log.info("the embedded relay's address is now %s (saved)", relay.address)
        self._relay_listen = None
        return relay

    async def move_relay(self, port: int = 0) -> str:
        """The user's choice when the saved address is taken: listen on ``port`` (0: any
        free one) from now on, and save it. Agents need new join tokens afterwards."""
        host = (self.config.relay_listen or DEFAULT_RELAY_LISTEN).rpartition(":")[0]
        self._relay_listen = f"{host}:{port}"
        async with self._guard():
            for name, cfg in list(self._running.items()):
                if cfg.embedded:
                    await self._stop_cluster(name, removed=False)
            await self.service.remove(client_name(EMBEDDED))
            await self.service.remove(RELAY)
            relay = await self.ensure_relay()
        await self.reconcile()
        return relay.address

    async def client_for(self, relay: str) -> RelayClient:
        """The session to ``relay`` (EMBEDDED or an address), started if needed."""
        existing = self.service.component(client_name(relay))
        if isinstance(existing, RelayClient):
            return existing
        state_dir = client_dir(self.state_dir, relay)
        token = None
        if relay == EMBEDDED:
            embedded = await self.ensure_relay()
            token = await asyncio.to_thread(_embedded_client_token, embedded, state_dir)
        return await self.service.start_client(state_dir, token, name=client_name(relay))

    async def drop_unused_client(self, relay: str) -> None:
        """Stop the session to ``relay`` unless a configured cluster uses it."""
        if relay != EMBEDDED and not any(c.relay == relay for c in self.config.clusters):
            await self.service.remove(client_name(relay))

    async def enroll_remote(self, relay_token: str | Token) -> str:
        """Enroll at an external relay with a client token (the peer reuses an identity
        it holds there already) and wait until the session is up; returns the relay's
        address."""
        token = relay_token if isinstance(relay_token, Token) else parse(relay_token.strip())
        name = client_name(token.relay)
        state_dir = client_dir(self.state_dir, token.relay)
        if isinstance(self.service.component(name), RelayClient):
            return token.relay
        client = await self.service.start_client(state_dir, token, name=name)
        try:
            await client.wait_online(ONLINE_TIMEOUT)
        except TimeoutError:
            await self.service.remove(name)
            reason = client.last_error or client.state
            raise TunnelError(f"no session to the relay {token.relay}: {reason}") from None
        return token.relay

    # -- the demo ----------------------------------------------------------------------

    async def start_demo(self) -> DemoStack:
        """The demo stack (its context goes into the user's kubeconfig)."""
        target = Path(self.kubeconfig.default_file)
        return await demo.start_demo(
            self.service, self.state_dir / DEMO, target, self.config.demo_mode
        )

    async def stop_demo(self) -> None:
        await demo.stop_demo(self.service)


def relay_port_taken(listen: str, exc: OSError) -> str:
    """The error for a saved relay address something else holds now."""
    return (
        f"the embedded relay cannot listen on its saved address {listen} "
        f"({exc.strerror or exc}); agents dial that address, so Wicket does not move it "
        "silently: stop what holds the port, or choose another one "
        "(wicket up --relay-port P, 0 for any free port; agents then need new join tokens)"
    )


def _same_endpoint(wanted: ClusterConfig | None, running: ClusterConfig) -> bool:
    """Whether ``wanted`` differs from ``running`` in its public server at most."""
    return wanted is not None and replace(wanted, public_server="") == replace(
        running, public_server=""
    )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    return None


def _embedded_client_token(relay: Relay, state_dir: Path) -> Token | None:
    """A client token for the embedded relay unless this app enrolled there already."""
    ca_fingerprint = relay.state.ca().fingerprint
    if load_enrollment(state_dir, Role.CLIENT, ca_fingerprint) is not None:
        use_relay(state_dir, Role.CLIENT, ca_fingerprint, relay.address)
        return None
    return parse(relay.state.client_token(CLIENT_NAME, relay.address, utcnow(), scope=ALL_CLUSTERS))
