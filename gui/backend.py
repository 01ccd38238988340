"""What the windows ask of the core, as coroutines for the GUI loop.

``Backend`` owns the ``CoreThread`` and the app's state directory. Each method awaits
work done elsewhere: tunnel changes on the core loop (``core.call``), file writes,
kubeconfig edits, key generation and keyring calls in worker threads
(``asyncio.to_thread`` / ``SecretStore``). Nothing here blocks the thread that paints.

State directory (``$XDG_DATA_HOME/wicket/app``)::

    clusters.json   the clusters the wizard added (name, relay, local port, mode)
    inspect/        Wicket's CA and the endpoint tokens of inspect-mode clusters
    relay/          the embedded relay (CA, tokens, clusters), when one was used
    client/         this app's identity at the embedded relay
    clients/<n>/    its identities at remote relays
    demo/           the built-in demo stack
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import fsutil
from core.cli.tunnel import endpoint_token
from core.errors import ConfigError, TunnelError
from core.format import utcnow
from core.kube import (
    ClusterSpec,
    KubeconfigPaths,
    MergedView,
    add_cluster_contexts,
    load_merged,
    remove_cluster_contexts,
    use_context,
)
from core.mode import Mode, mode_of
from core.paths import data_dir
from core.pki import files
from core.pki.identity import Role
from core.pki.tokens import Token, parse
from core.secrets import Fallback, SecretStore, open_secret_store, upstream_token_key
from core.service import (
    DEMO_CONTEXT,
    DemoStack,
    InspectSettings,
    Relay,
    RelayClient,
    RelayConfig,
    ServiceSnapshot,
    WicketService,
    load_enrollment,
    use_relay,
)
from gui.aio import spawn
from gui.core_thread import CoreThread

log = logging.getLogger("wicket.gui")

DEMO = "demo"
EMBEDDED = "embedded"
CLUSTERS_FILE = "clusters.json"
CLIENT_NAME = "desktop"
PROBE_TIMEOUT = 10.0


def default_state_dir() -> Path:
    return data_dir("app")


@dataclass(frozen=True)
class ClusterConfig:
    """A cluster the wizard added: how to bring its local endpoint back."""

    name: str
    relay: str  # "embedded", or the remote relay's address
    port: int
    mode: Mode = Mode.PASSTHROUGH
    cluster_ca: str = ""  # inspect mode: the PEM and name that verify the apiserver
    server_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", mode_of(self.mode))  # a str from clusters.json


@dataclass
class AppSettings:
    """The app's ``clusters.json``, which a ``wicket cluster`` command may change too:
    every change is a locked read-modify-write (:meth:`update`), so none is lost."""

    demo: bool = True
    clusters: list[ClusterConfig] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> AppSettings:
        try:
            return cls.parse(path.read_bytes(), path)
        except FileNotFoundError:
            return cls()

    @classmethod
    def parse(cls, data: bytes | None, path: Path) -> AppSettings:
        if data is None:
            return cls()
        try:
            doc = json.loads(data)
            return cls(
                bool(doc.get("demo", True)),
                [ClusterConfig(**c) for c in doc.get("clusters", [])],
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: unreadable settings ({exc})") from exc

    @classmethod
    def update(cls, path: Path, change: Callable[[AppSettings], None]) -> AppSettings:
        """Apply ``change`` to the settings as they are on disk now; returns the result."""
        result = cls()

        def apply(data: bytes | None) -> bytes:
            nonlocal result
            result = cls.parse(data, path)
            change(result)
            doc = {"demo": result.demo, "clusters": [asdict(c) for c in result.clusters]}
            return json.dumps(doc, indent=1).encode()

        files.ensure_private_dir(path.parent)
        try:
            fsutil.update_locked(path, apply)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write: {exc.strerror}") from exc
        return result

    def put(self, cfg: ClusterConfig) -> None:
        self.drop(cfg.name)
        self.clusters.append(cfg)

    def drop(self, name: str) -> None:
        self.clusters = [c for c in self.clusters if c.name != name]


class _Passive:
    """Lets a part of a composite (the demo stack) show in the service's snapshot."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def _client_dir_name(relay: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", relay)


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


class Backend:
    """The GUI's handle on the core and on the user's files (coroutines only)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        kubeconfig: KubeconfigPaths | None = None,
        core: CoreThread | None = None,
        secret_fallback: Fallback = Fallback.NOT_REMEMBERING,
    ) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.kubeconfig = kubeconfig or KubeconfigPaths.from_process()
        self.core = core or CoreThread(WicketService())
        self.settings = AppSettings()
        self.secret_fallback = secret_fallback
        self._store: SecretStore | None = None
        self._to_end: set[asyncio.Task[None]] = set()

    @property
    def service(self) -> WicketService:
        return self.core.service

    @property
    def latest(self) -> ServiceSnapshot:
        return self.core.latest

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the core thread and read the settings (both off the GUI thread)."""
        if not self.core.running:
            await asyncio.to_thread(self.core.start)
        self.settings = await asyncio.to_thread(AppSettings.load, self.state_dir / CLUSTERS_FILE)

    async def restore(self) -> list[str]:
        """Bring back the demo (if enabled) and every saved cluster; returns the failures."""
        failures = []
        if self.settings.demo:
            try:
                await self.start_demo()
            except Exception as exc:
                failures.append(f"demo: {exc}")
        for cluster in list(self.settings.clusters):
            try:
                await self.connect(cluster.name)
            except Exception as exc:
                failures.append(f"{cluster.name}: {exc}")
        return failures

    def run_to_end(self, work: Coroutine[Any, Any, None]) -> None:
        """Run clean-up nobody waits for (a cancelled wizard's undo) as a task kept here:
        the loop holds tasks only weakly, and ``shutdown`` waits for it before the core
        it undoes things in stops."""
        spawn(work, self._to_end)

    async def wait_run_to_end(self) -> None:
        """Wait until the clean-up given to ``run_to_end`` so far has finished."""
        await asyncio.gather(*self._to_end, return_exceptions=True)

    async def shutdown(self) -> None:
        await self.wait_run_to_end()
        await self.core.stop_async()

    async def update_settings(self, change: Callable[[AppSettings], None]) -> None:
        path = self.state_dir / CLUSTERS_FILE
        self.settings = await asyncio.to_thread(AppSettings.update, path, change)

    # -- clusters ----------------------------------------------------------------------

    def cluster_config(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.settings.clusters if c.name == name), None)

    def known_clusters(self) -> list[str]:
        demo = self.settings.demo or self.latest.cluster(DEMO) is not None
        return ([DEMO] if demo else []) + [c.name for c in self.settings.clusters]

    def is_connected(self, name: str) -> bool:
        """Whether the cluster has a local endpoint (from the snapshot: no locking)."""
        return any(e.cluster == name for e in self.latest.endpoints)

    async def connect(self, name: str) -> None:
        if name == DEMO:
            await self.start_demo()
            return
        cfg = self.cluster_config(name)
        if cfg is None:
            raise ConfigError(f"no cluster {name!r}")
        if self.service.component(f"endpoint:{name}") is not None:
            return
        client = await self.client_for(cfg.relay)
        inspect = await self._inspect_settings(cfg) if cfg.mode == "inspect" else None
        await self.core.call(
            self.service.start_endpoint(client, name, port=cfg.port, mode=cfg.mode, inspect=inspect)
        )

    async def _inspect_settings(self, cfg: ClusterConfig) -> InspectSettings:
        """What a saved inspect cluster needs: its apiserver's CA and name, the token
        kubectl presents (kept next to Wicket's CA, as ``wicket connect`` keeps it) and
        the upstream token from the secret store, if the wizard stored one."""
        if not (cfg.cluster_ca and cfg.server_name):
            raise ConfigError(f"{cfg.name}: inspect mode needs the cluster's CA and server name")
        inspect_dir = self.state_dir / "inspect"
        token_file = inspect_dir / f"endpoint-token-{cfg.name}"
        token = await asyncio.to_thread(endpoint_token, token_file)
        upstream = await (await self.secret_store()).get(upstream_token_key(cfg.name))
        return InspectSettings(
            state_dir=inspect_dir,
            endpoint_token=token,
            cluster_ca_pem=cfg.cluster_ca.encode(),
            server_name=cfg.server_name,
            upstream_authorization=f"Bearer {upstream}" if upstream else None,
        )

    async def toggle(self, name: str) -> None:
        """Connect the cluster if it has no local endpoint, else disconnect it."""
        if self.is_connected(name):
            await self.disconnect(name)
        else:
            await self.connect(name)

    async def disconnect(self, name: str) -> None:
        if name == DEMO:
            await self.stop_demo()
        else:
            await self.core.call(self.service.remove(f"endpoint:{name}"))

    async def forget(self, name: str) -> None:
        """Disconnect, and drop the cluster's contexts, secret and settings entry."""
        await self.disconnect(name)
        await self.update_settings(lambda s: s.drop(name))
        await asyncio.to_thread(remove_cluster_contexts, self.kubeconfig, name)
        store = await self.secret_store()
        await store.delete(upstream_token_key(name))

    # -- the demo ----------------------------------------------------------------------

    async def start_demo(self) -> DemoStack:
        """Start the demo stack (its context goes into the user's kubeconfig)."""
        demo_dir = self.state_dir / DEMO
        target = Path(self.kubeconfig.default_file)
        return await self.core.call(_start_demo(self.service, demo_dir, target))

    async def stop_demo(self) -> None:
        await self.core.call(_stop_demo(self.service))

    @property
    def demo_context(self) -> str:
        return DEMO_CONTEXT

    # -- the embedded relay and relay clients -----------------------------------------

    async def ensure_relay(self, host: str = "127.0.0.1", port: int = 0) -> Relay:
        relay = self.service.component("relay")
        if isinstance(relay, Relay):
            return relay
        config = RelayConfig(state_dir=self.state_dir / "relay", host=host, port=port)
        return await self.core.call(self.service.start_relay(config))

    async def client_for(self, relay: str) -> RelayClient:
        """The client session to ``relay`` (``embedded`` or an address), started if needed."""
        name = "client" if relay == EMBEDDED else f"client@{relay}"
        existing = self.service.component(name)
        if isinstance(existing, RelayClient):
            return existing
        if relay != EMBEDDED:
            raise ConfigError(f"no session to relay {relay}; add the cluster again")
        embedded = await self.ensure_relay()
        state_dir = self.state_dir / "client"
        token = await asyncio.to_thread(_embedded_client_token, embedded, state_dir)
        return await self._start_client(name, state_dir, token)

    async def remote_client(self, relay_token: str) -> RelayClient:
        """Enroll at a remote relay with a client token (or reuse the enrolled identity)."""
        token = parse(relay_token.strip())
        name = f"client@{token.relay}"
        existing = self.service.component(name)
        if isinstance(existing, RelayClient):
            return existing
        state_dir = self.state_dir / "clients" / _client_dir_name(token.relay)
        enrolled = await asyncio.to_thread(load_enrollment, state_dir, Role.CLIENT)
        return await self._start_client(name, state_dir, None if enrolled else token)

    async def _start_client(self, name: str, state_dir: Path, token: Token | None) -> RelayClient:
        async def start() -> RelayClient:
            client = await self.service.start_client(state_dir, token, name=name)
            try:
                await client.wait_online(PROBE_TIMEOUT)
            except TimeoutError:
                await self.service.remove(name)
                raise TunnelError(
                    f"no session to the relay: {client.last_error or client.state}"
                ) from None
            return client

        return await self.core.call(start())

    async def issue_join_token(self, cluster: str, address: str | None = None) -> str:
        """A one-time agent enrollment token for ``cluster`` at the embedded relay."""
        relay = await self.ensure_relay()
        relay_address = address or relay.address
        return await asyncio.to_thread(
            relay.state.join_token, cluster, relay_address, None, utcnow()
        )

    async def revoke_join_token(self, token: str, cluster: str) -> None:
        """Undo ``issue_join_token``: revoke the token and forget the cluster at the relay."""
        relay = self.service.component("relay")
        if not isinstance(relay, Relay):
            return

        def undo() -> None:
            with contextlib.suppress(Exception):
                relay.state.tokens().revoke(parse(token).token_id)
            relay.state.unregister_cluster(cluster)

        await asyncio.to_thread(undo)

    # -- endpoints and the probe -------------------------------------------------------

    async def start_endpoint(self, name: str, client: RelayClient, port: int) -> int:
        endpoint = await self.core.call(self.service.start_endpoint(client, name, port=port))
        return endpoint.port

    async def remove_component(self, name: str) -> None:
        await self.core.call(self.service.remove(name))

    async def probe_version(
        self, port: int, ca_pem: bytes, server_name: str, auth: ProbeAuth
    ) -> VersionProbe:
        """``GET /version`` through the local endpoint, verifying the cluster's CA."""
        return await self.core.call(_get_version(port, ca_pem, server_name, auth))

    # -- kubeconfig and secrets --------------------------------------------------------

    async def load_kubeconfig(self) -> MergedView:
        return await asyncio.to_thread(load_merged, self.kubeconfig)

    async def use_context(self, name: str) -> None:
        await asyncio.to_thread(use_context, self.kubeconfig, name)

    async def write_contexts(self, spec: ClusterSpec) -> None:
        await asyncio.to_thread(add_cluster_contexts, self.kubeconfig, spec)

    async def remove_contexts(self, name: str) -> None:
        await asyncio.to_thread(remove_cluster_contexts, self.kubeconfig, name)

    async def secret_store(self) -> SecretStore:
        if self._store is None:
            self._store = await asyncio.to_thread(open_secret_store, self.secret_fallback)
        return self._store

    async def save_cluster(self, cfg: ClusterConfig) -> None:
        await self.update_settings(lambda s: s.put(cfg))


# -- on the core loop ----------------------------------------------------------------

DEMO_PARTS: tuple[str, ...] = ("relay", "agent", "client", "endpoint")


async def _start_demo(service: WicketService, state_dir: Path, kubeconfig: Path) -> DemoStack:
    existing = service.component(DEMO)
    if isinstance(existing, DemoStack):
        return existing
    stack = DemoStack(state_dir, kubeconfig=kubeconfig)
    await service.add(DEMO, stack, lambda: None)
    assert stack.relay and stack.agent and stack.client and stack.endpoint
    client = stack.client
    snapshots: dict[str, Callable[[], object]] = {
        "relay": stack.relay.snapshot,
        "agent": stack.agent.snapshot,
        "client": client.snapshot,
        "endpoint": stack.endpoint.snapshot,
    }
    for part in DEMO_PARTS:
        await service.add(f"{DEMO}/{part}", _Passive(), snapshots[part])
    return stack


async def _stop_demo(service: WicketService) -> None:
    for part in DEMO_PARTS:
        await service.remove(f"{DEMO}/{part}")
    await service.remove(DEMO)


def _embedded_client_token(relay: Relay, state_dir: Path) -> Token | None:
    """A client token for the embedded relay unless this app enrolled there already."""
    ca_fingerprint = relay.state.ca().fingerprint
    if load_enrollment(state_dir, Role.CLIENT, ca_fingerprint) is not None:
        use_relay(state_dir, Role.CLIENT, ca_fingerprint, relay.address)
        return None
    return parse(relay.state.client_token(CLIENT_NAME, relay.address, utcnow()))


async def _get_version(port: int, ca_pem: bytes, server_name: str, auth: ProbeAuth) -> VersionProbe:
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    if auth.cert_file and auth.key_file:
        context.load_cert_chain(auth.cert_file, auth.key_file)
    headers = [
        "GET /version HTTP/1.1",
        f"Host: {server_name}",
        "Accept: application/json",
        "User-Agent: wicket-desktop",
        "Connection: close",
    ]
    if auth.token:
        headers.append(f"Authorization: Bearer {auth.token}")
    async with asyncio.timeout(PROBE_TIMEOUT):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=server_name
        )
        try:
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
            raw = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise TunnelError("the apiserver's answer to /version is not HTTP")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return VersionProbe(int(status_line[1]), body.decode(errors="replace"))


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
