"""What the windows ask of the core, as coroutines for the GUI loop.

A thin Qt-side adapter: ``Backend`` owns the ``CoreThread`` and a
:class:`core.service.Desktop` on it (the configuration, the embedded relay, the relay
clients and the endpoints: the same runtime as ``wicket up``). Each method hands the
work to the core loop (``core.call``) or to a worker thread, so nothing here blocks the
thread that paints.

State directory (``$XDG_DATA_HOME/wicket/app``)::

    clusters.json   the desktop configuration (core.service.config)
    inspect/        Wicket's CA and the endpoint tokens of inspect-mode clusters
    relay/          the embedded relay (CA, registry, its address)
    client/         this app's identity at the embedded relay
    clients/<n>/    its identities at external relays
    demo/           the built-in demo stack
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ConfigError
from core.service import (
    CONFIG_FILE,
    DEMO,
    DEMO_CONTEXT,
    EMBEDDED,
    AgentInstructions,
    ClusterConfig,
    ClusterSetup,
    DemoStack,
    Desktop,
    DesktopConfig,
    KubeconfigPaths,
    MergedView,
    Mode,
    SecretStorage,
    ServiceSnapshot,
    TokenVault,
    WicketService,
    default_state_dir,
    headless_passphrase,
    load_merged,
    use_context,
)
from gui.aio import spawn
from gui.core_thread import CoreThread

T = TypeVar("T")

#: The names the app and its tests knew these by before the configuration moved to core.
CLUSTERS_FILE = CONFIG_FILE
AppSettings = DesktopConfig

__all__ = [
    "CLUSTERS_FILE",
    "DEMO",
    "EMBEDDED",
    "AppSettings",
    "Backend",
    "ClusterConfig",
]


class Backend:
    """The GUI's handle on the core and on the user's files (coroutines only)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        kubeconfig: KubeconfigPaths | None = None,
        core: CoreThread | None = None,
    ) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.kubeconfig = kubeconfig or KubeconfigPaths.from_process()
        self.core = core or CoreThread(WicketService())
        self.passphrase: str | None = None  # the encrypted file's, once the user gave it
        self.vault = TokenVault(self._passphrase)
        self.desktop = Desktop(self.state_dir, self.kubeconfig, self.core.service, vault=self.vault)
        self._to_end: set[asyncio.Task[None]] = set()

    def _passphrase(self) -> str | None:
        return self.passphrase or headless_passphrase()

    @property
    def service(self) -> WicketService:
        return self.core.service

    @property
    def latest(self) -> ServiceSnapshot:
        return self.core.latest

    @property
    def settings(self) -> DesktopConfig:
        """The configuration as the runtime last read it."""
        return self.desktop.config

    async def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the core loop (a ``ClusterSetup``'s steps, say)."""
        return await self.core.call(work)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the core thread and read the configuration (both off the GUI thread)."""
        if not self.core.running:
            await asyncio.to_thread(self.core.start)
        self.desktop.config = await asyncio.to_thread(
            DesktopConfig.load, self.state_dir / CLUSTERS_FILE
        )

    async def restore(self) -> list[str]:
        """Bring back the demo (if enabled) and every configured cluster, and watch the
        configuration from now on; returns what failed (the clusters stay configured)."""
        failures = []
        if self.settings.demo:
            try:
                await self.start_demo()
            except Exception as exc:
                failures.append(f"demo: {exc}")
        await self.core.call(self.desktop.start())
        failures += [f"{name}: {why}" for name, why in self.desktop.problems.items()]
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
        if self.core.running:
            await self.core.call(self.desktop.stop())
        await self.core.stop_async()

    async def update_settings(self, change: Callable[[DesktopConfig], None]) -> None:
        await self.core.call(self.desktop.update(change))

    # -- clusters ----------------------------------------------------------------------

    def cluster_config(self, name: str) -> ClusterConfig | None:
        return self.settings.cluster(name)

    def known_clusters(self) -> list[str]:
        demo = self.settings.demo or self.latest.cluster(DEMO) is not None
        return ([DEMO] if demo else []) + [c.name for c in self.settings.clusters]

    def is_connected(self, name: str) -> bool:
        """Whether the cluster has a local endpoint (from the snapshot: no locking)."""
        return any(e.cluster == name for e in self.latest.endpoints)

    def status(self, name: str) -> str:
        """Why the cluster is as it is (a failed start, a relay session's last error)."""
        return self.desktop.status(name)

    async def connect(self, name: str) -> None:
        if name == DEMO:
            await self.start_demo()
        else:
            await self.core.call(self.desktop.connect(name))

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
            await self.core.call(self.desktop.disconnect(name))

    async def remove_cluster(self, name: str) -> list[str]:
        """Remove the cluster: endpoint, contexts, secret, and at the embedded relay its
        registration and agent identities (revoked). Returns what could not be removed."""
        return await self.core.call(self.desktop.remove(name))

    async def forget(self, name: str) -> None:
        """Remove the cluster (the older name of :meth:`remove_cluster`)."""
        problems = await self.remove_cluster(name)
        if problems:
            raise ConfigError(f"{name} removed, but " + "; ".join(problems))

    async def edit_cluster(
        self,
        name: str,
        *,
        mode: Mode | str | None = None,
        port: int | None = None,
        public_server: str | None = None,
    ) -> None:
        """Change the cluster's endpoint mode or local port (it restarts with them), or
        its public server ("": none; the ``wicket-NAME-public`` context follows)."""
        new_mode = Mode(mode) if mode is not None else None
        edit = self.desktop.edit(name, mode=new_mode, port=port, public_server=public_server)
        await self.core.call(edit)

    async def agent_instructions(self, name: str) -> AgentInstructions:
        """The agent's command line and manifests again (a fresh join token when the
        one shown before was used)."""
        return await self.core.call(self.desktop.agent_instructions(name))

    async def move_relay(self, port: int = 0) -> str:
        """When the embedded relay's saved port is taken (``restore`` says so): listen
        on ``port`` (0: any free one) and save it; returns the new address."""
        return await self.core.call(self.desktop.move_relay(port))

    # -- adding a cluster --------------------------------------------------------------

    def begin_setup(self, name: str) -> ClusterSetup:
        """A setup for the wizard to drive (its steps run through :meth:`call`)."""
        return ClusterSetup(self.desktop, name)

    async def unlock_encrypted_file(self, passphrase: str) -> None:
        """Open the encrypted secrets file with ``passphrase`` (a dialog's): raises
        ``SecretPassphraseError`` if it is wrong; kept for this session when right."""
        self.passphrase = passphrase
        try:
            await self.vault.store(SecretStorage.ENCRYPTED_FILE)
        except Exception:
            self.passphrase = None
            raise

    async def secret_storage_state(self, storage: SecretStorage) -> str:
        """Whether ``storage`` can be used now, in a sentence for the wizard."""
        try:
            store = await self.vault.store(storage)
        except Exception as exc:
            return f"unavailable: {exc}"
        return store.state.describe()

    # -- the demo ----------------------------------------------------------------------

    async def start_demo(self) -> DemoStack:
        """Start the demo stack (its context goes into the user's kubeconfig)."""
        return await self.core.call(self.desktop.start_demo())

    async def stop_demo(self) -> None:
        await self.core.call(self.desktop.stop_demo())

    @property
    def demo_context(self) -> str:
        return DEMO_CONTEXT

    # -- kubeconfig --------------------------------------------------------------------

    async def load_kubeconfig(self) -> MergedView:
        return await asyncio.to_thread(load_merged, self.kubeconfig)

    async def use_context(self, name: str) -> None:
        await asyncio.to_thread(use_context, self.kubeconfig, name)
