"""Managing the configured clusters: the steps ``wicket cluster`` and the app share.

These are blocking functions (files, the registry, the kubeconfig, a keyring); the
runtime and the app call them in worker threads. None of them needs a running Wicket:
the relay's registry and the configuration file are safe to change from several
processes at once, and a running Wicket picks the change up (``core.service.desktop``).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError, KubeconfigError, SecretBackendUnavailable, SecretStoreError
from core.format import utcnow
from core.kube import (
    ClusterSpec,
    Credentials,
    ExecCredential,
    KubeconfigPaths,
    MergedView,
    UserRef,
    add_cluster_contexts,
    remove_cluster_contexts,
)
from core.kube.bundle import agent_args, build_agent_bundle
from core.kube.model import check_cluster_name, context_names
from core.mode import Mode
from core.paths import wicket_command
from core.pki.identity import Role
from core.pki.tokens import parse
from core.registry.state import RelayState
from core.secrets import upstream_token_key
from core.service.config import (
    DEFAULT_RELAY_LISTEN,
    ClusterConfig,
    DesktopConfig,
    config_path,
    describe_storage,
    relay_dir,
)
from core.service.vault import TokenVault

log = logging.getLogger("wicket.clusters")

AGENT_TOKEN_FILE = "./wicket-join-token"  # noqa: S105 (a file name)
AGENT_STATE_DIR = "./wicket-agent-state"


def check_new_name(name: str, config: DesktopConfig, reserved: tuple[str, ...] = ()) -> None:
    """A valid cluster name that the configuration does not have yet."""
    check_cluster_name(name)
    if name in reserved or config.cluster(name) is not None:
        raise ConfigError(f"Wicket already has a cluster called {name!r}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (for a saved address picked before the listener runs)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def embedded_relay_address(state_dir: Path) -> str:
    """The embedded relay's saved address; picked (a free port) and saved if none yet."""
    path = config_path(state_dir)
    config = DesktopConfig.load(path)
    if config.relay_listen and not config.relay_listen.endswith(":0"):
        return config.relay_listen
    host = DEFAULT_RELAY_LISTEN.rpartition(":")[0]
    address = f"{host}:{free_port(host)}"

    def save(c: DesktopConfig) -> None:
        if not c.relay_listen or c.relay_listen.endswith(":0"):
            c.relay_listen = address

    return DesktopConfig.update(path, save).relay_listen


def issue_join_token(state_dir: Path, cluster: str, address: str | None = None) -> str:
    """A one-time agent token for ``cluster`` at the embedded relay (running or not)."""
    relay_address = address or embedded_relay_address(state_dir)
    with contextlib.closing(RelayState(relay_dir(state_dir))) as state:
        return state.join_token(cluster, relay_address, None, utcnow())


def revoke_join_token(state_dir: Path, token: str, cluster: str) -> None:
    """Undo :func:`issue_join_token`: revoke the token, forget the cluster at the relay."""
    with contextlib.closing(RelayState(relay_dir(state_dir))) as state:
        with contextlib.suppress(Exception):
            state.tokens().revoke(parse(token).token_id)
        state.unregister_cluster(cluster)


def unregister_embedded(state_dir: Path, cluster: str) -> int:
    """Forget ``cluster`` at the embedded relay and revoke its agents' identities
    (the relay refuses them from now on); returns how many were revoked."""
    if not (relay_dir(state_dir) / "registry.db").exists():
        return 0
    with contextlib.closing(RelayState(relay_dir(state_dir))) as state:
        state.unregister_cluster(cluster)
        return state.revoke_identities(Role.AGENT, cluster)


@dataclass(frozen=True)
class AgentInstructions:
    """How to run a cluster's agent: a command line, or manifests."""

    token: str
    command: str
    manifests: str


def agent_instructions(
    token: str, cluster: str, target: str, token_file: str = AGENT_TOKEN_FILE
) -> AgentInstructions:
    argv = ["wicket", *agent_args(token_file, target, AGENT_STATE_DIR)]
    yaml = build_agent_bundle(token, cluster).to_yaml()
    return AgentInstructions(token, shlex.join(argv), yaml)


def join_token_used(state_dir: Path, token: str) -> bool:
    """Whether the agent enrolled with ``token`` already (or it is no longer usable)."""
    with contextlib.closing(RelayState(relay_dir(state_dir))) as state:
        record = state.store.token(parse(token).token_id)
        return record is None or not record.usable(utcnow())


#: The name kubectl verifies an inspect endpoint's certificate with (Wicket's CA is
#: name-constrained to loopback; the endpoint's certificate names 127.0.0.1).
INSPECT_SERVER_NAME = "127.0.0.1"


def sync_contexts(
    kubeconfig: KubeconfigPaths, cfg: ClusterConfig, inspect_ca: bytes = b""
) -> str | None:
    """Make the cluster's kubectl contexts match ``cfg`` (through core.kube); returns the
    local context's name.

    Passthrough: kubectl trusts the cluster's CA and uses the configured user, or
    Wicket's exec credential plugin; with a public server, ``wicket-NAME-public`` is the
    same at the relay's public endpoint (plain TCP to the apiserver), else it is removed.
    Inspect: kubectl's TLS ends at Wicket, so the context trusts Wicket's CA
    (``inspect_ca``, known once the endpoint ran) and the plugin hands kubectl the
    endpoint's token (``Desktop.token_of``); a configured user's own credential would be
    refused by the endpoint. The apiserver would refuse that token too, so an inspect
    cluster has no public context (:func:`public_context_server`). Without
    ``inspect_ca`` yet, the old contexts are removed rather than left pointing at the
    wrong CA."""
    if cfg.mode is Mode.INSPECT and not inspect_ca:
        remove_cluster_contexts(kubeconfig, cfg.name)
        return None
    plugin = ExecCredential(wicket_command())
    if cfg.mode is Mode.INSPECT:
        spec = ClusterSpec(cfg.name, cfg.port, inspect_ca, INSPECT_SERVER_NAME, plugin, cfg.mode)
    else:
        credentials: Credentials = UserRef(cfg.user) if cfg.user else plugin
        ca = cfg.cluster_ca.encode()
        spec = ClusterSpec(
            cfg.name,
            cfg.port,
            ca,
            cfg.server_name,
            credentials,
            cfg.mode,
            public_context_server(cfg),
        )
    add_cluster_contexts(kubeconfig, spec)
    return context_names(cfg.name)[0]


def public_context_server(cfg: ClusterConfig) -> str | None:
    """The server of the cluster's ``wicket-NAME-public`` context; None: it has none
    (no public server, or inspect mode)."""
    if cfg.mode is Mode.INSPECT or not cfg.public_server:
        return None
    return cfg.public_server


def written_public_server(view: MergedView, name: str) -> str | None:
    """The server of the public context Wicket wrote for cluster ``name`` (None: none)."""
    context = view.context(context_names(name)[1])
    if context is None or context.wicket_cluster != name:
        return None
    return context.server


def remove_contexts(kubeconfig: KubeconfigPaths, name: str) -> None:
    remove_cluster_contexts(kubeconfig, name)


@dataclass
class Removal:
    """What removing a cluster did, and what stayed behind (and why)."""

    revoked: int = 0
    problems: list[str] = field(default_factory=list)


def remove_cluster(
    state_dir: Path, kubeconfig: KubeconfigPaths, vault: TokenVault, cfg: ClusterConfig
) -> Removal:
    """Everything but the configuration entry (the caller drops it, which stops a
    running endpoint): at the embedded relay the cluster's registration and its agents'
    identities (revoked), its kubectl contexts, its stored token."""
    removal = Removal()
    if cfg.embedded:
        removal.revoked = unregister_embedded(state_dir, cfg.name)
    try:
        remove_cluster_contexts(kubeconfig, cfg.name)
    except KubeconfigError as exc:
        removal.problems.append(f"the kubectl contexts stay: {exc}")
    try:
        vault.store_sync(cfg.secrets).delete_sync(upstream_token_key(cfg.name))
    except SecretBackendUnavailable as exc:  # it holds nothing Wicket could read
        log.info("%s: no token to delete in %s (%s)", cfg.name, describe_storage(cfg.secrets), exc)
    except SecretStoreError as exc:
        removal.problems.append(f"its token stays in {describe_storage(cfg.secrets)}: {exc}")
    return removal
