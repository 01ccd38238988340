"""Adding a cluster step by step, with undo: what the app's wizard drives.

Each step that leaves something behind (a join token and the relay's registration, a
local endpoint, a stored token, kubectl contexts, the configuration entry) records how
to take it back; :meth:`ClusterSetup.cancel` undoes them newest first, so a cancelled
setup leaves nothing behind, and :meth:`ClusterSetup.commit` keeps them. Every method
runs on the desktop runtime's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from core.errors import WicketError
from core.mode import Mode
from core.service import clusters
from core.service.clusters import AgentInstructions
from core.service.config import EMBEDDED, ClusterConfig, SecretStorage
from core.service.demo import DEMO
from core.service.desktop import Desktop
from core.service.probe import ProbeAuth, VersionProbe, probe_version

log = logging.getLogger("wicket.setup")

Undo = Callable[[], Awaitable[object]]


class ClusterSetup:
    """One cluster being added; ``cfg`` grows as the steps run."""

    def __init__(self, desktop: Desktop, name: str) -> None:
        self.desktop = desktop
        self.cfg = ClusterConfig(name, EMBEDDED, 0)
        self.join_token: str | None = None
        self.port: int | None = None
        self._undo: list[tuple[str, Undo]] = []

    @property
    def name(self) -> str:
        return self.cfg.name

    def check_name(self) -> None:
        clusters.check_new_name(self.name, self.desktop.config, reserved=(DEMO,))

    # -- the relay and the agent -------------------------------------------------------

    async def embedded_join_token(self, address: str | None = None) -> str:
        """Issue the agent's one-time token at the embedded relay (started if needed)."""
        if self.join_token is None:
            relay = await self.desktop.ensure_relay()
            state_dir, name = self.desktop.state_dir, self.name
            token = await asyncio.to_thread(
                clusters.issue_join_token, state_dir, name, address or relay.address
            )
            self.join_token = token
            self._undo.append(
                (
                    "join token",
                    lambda: asyncio.to_thread(clusters.revoke_join_token, state_dir, token, name),
                )
            )
        return self.join_token

    async def remote_relay(self, client_token: str, join_token: str) -> None:
        """Use an external relay: enroll there (the session is kept up from now on;
        undone only if no configured cluster uses that relay)."""
        desktop = self.desktop
        relay = await desktop.enroll_remote(client_token)
        self.cfg = replace(self.cfg, relay=relay)
        self.join_token = join_token.strip()
        self._undo.append(("relay session", lambda: desktop.drop_unused_client(relay)))

    async def agent_instructions(self, target: str) -> AgentInstructions:
        self.cfg = replace(self.cfg, target=target)
        token = self.join_token
        if token is None:
            token = await self.embedded_join_token()
        return await asyncio.to_thread(clusters.agent_instructions, token, self.name, target)

    def agent_online(self) -> bool:
        cluster = self.desktop.service.latest.cluster(self.name)
        return cluster is not None and cluster.state == "online"

    # -- the endpoint and the test -----------------------------------------------------

    async def start_endpoint(self, port: int) -> int:
        """The local endpoint (once; a retried test reuses it)."""
        if self.port is None:
            self.port = await self.desktop.start_provisional(replace(self.cfg, port=port))
            self.cfg = replace(self.cfg, port=self.port)
            name = self.name
            self._undo.append(("endpoint", lambda: self.desktop.stop_provisional(name)))
        return self.port

    async def probe(self, ca_pem: bytes, server_name: str, auth: ProbeAuth) -> VersionProbe:
        """``GET /version`` through the endpoint; a failure names the real cause."""
        assert self.port is not None, "start the endpoint first"
        name = self.name
        return await probe_version(
            self.port,
            ca_pem,
            server_name,
            auth,
            last_refusal=lambda: self.desktop.last_refusal(name),
        )

    # -- the end -----------------------------------------------------------------------

    async def finish(
        self,
        ca_pem: bytes,
        server_name: str,
        *,
        token: str | None = None,
        user: str | None = None,
        storage: SecretStorage = SecretStorage.KEYRING,
        mode: Mode = Mode.PASSTHROUGH,
    ) -> str:
        """Store the token, write the contexts, save the cluster; returns the context.

        The test ran in passthrough (kubectl's own TLS to the apiserver); an inspect
        cluster switches once saved (``Desktop.edit``: its context then trusts Wicket's
        CA and presents the endpoint's token)."""
        self.cfg = replace(
            self.cfg,
            server_name=server_name,
            secrets=storage,
            cluster_ca=ca_pem.decode("ascii", errors="replace"),
            user="" if token is not None else user or "",
        )
        cfg, desktop = self.cfg, self.desktop
        if token is not None:
            await desktop.vault.set(cfg, token)
            self._undo.append(("secret", lambda: _forget_secret(desktop, cfg)))
        paths = desktop.kubeconfig
        context = await asyncio.to_thread(clusters.sync_contexts, paths, cfg)
        self._undo.append(
            ("contexts", lambda: asyncio.to_thread(clusters.remove_contexts, paths, cfg.name))
        )
        await desktop.confirm(cfg)
        self._undo.append(("settings", lambda: desktop.update(lambda c: c.drop(cfg.name))))
        if mode is Mode.INSPECT:
            await desktop.edit(cfg.name, mode=mode)
        return context or ""

    def commit(self) -> None:
        """Keep everything: the cluster is added (its join token is shown again by
        ``Desktop.agent_instructions`` while the agent has not used it)."""
        self._undo.clear()
        if self.join_token is not None and self.cfg.embedded:
            self.desktop.join_tokens[self.name] = self.join_token

    async def cancel(self) -> None:
        """Undo every step taken, newest first (each failure is logged, not raised)."""
        while self._undo:
            what, undo = self._undo.pop()
            try:
                await undo()
            except Exception as exc:
                log.warning("undoing the setup's %s failed: %s", what, exc)
        self.join_token = None
        self.port = None


async def _forget_secret(desktop: Desktop, cfg: ClusterConfig) -> None:
    with contextlib.suppress(WicketError):
        await desktop.vault.delete(cfg)
