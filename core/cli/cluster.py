"""``wicket cluster add|list|remove|set``: the desktop configuration, headless.

The same clusters the app's wizard adds (``$XDG_DATA_HOME/wicket/app/clusters.json``,
see core.service.config); a running app or ``wicket up`` picks every change up within
a second. Tokens are read from files, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

from core.cli import add_command
from core.cli.tunnel import host_port, read_secret, read_token
from core.errors import (
    ConfigError,
    WicketError,
)
from core.kube import KubeconfigPaths
from core.mode import Mode
from core.pki import files
from core.pki.tokens import Token, TokenKind
from core.secrets import passphrase_from_environment, upstream_token_key
from core.service import WicketService, clusters
from core.service.config import (
    EMBEDDED,
    ClusterConfig,
    DesktopConfig,
    check_public_server,
    cluster_doc,
    config_path,
    default_state_dir,
)
from core.service.desktop import Desktop
from core.service.vault import TokenVault

PUBLIC_HELP = (
    "the relay's public endpoint of this cluster, https://HOST[:PORT]: kubectl gets a "
    "wicket-NAME-public context too (passthrough mode)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(sub, "cluster", __doc__, help="add, list, remove or change clusters")
    parser.add_argument("--state-dir", type=Path, default=None, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    add = commands.add_parser("add", help="add a cluster (and print its agent command)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--target", required=True, metavar="HOST:PORT", help="as the agent sees it")
    add.add_argument("--ca-file", required=True, type=Path, metavar="FILE", help="apiserver CA")
    add.add_argument("--server-name", metavar="NAME", help="default: the target's host")
    add.add_argument("--upstream-token-file", metavar="FILE", help="the token kubectl uses")
    add.add_argument("--relay-token-file", metavar="FILE", help="client token of an external relay")
    add.add_argument("--port", type=int, default=0, metavar="P", help="local port (default: any)")
    add.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.PASSTHROUGH.value)
    add.add_argument("--join-token-out", type=Path, metavar="FILE", help="the agent's token")
    add.add_argument("--public-server", default="", metavar="URL", help=PUBLIC_HELP)
    add.set_defaults(func=_add)
    listing = commands.add_parser("list", help="the configured clusters")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    remove = commands.add_parser("remove", help="remove a cluster and everything it left")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=_remove)
    change = commands.add_parser("set", help="change a cluster's mode, port or public server")
    change.add_argument("name", metavar="NAME")
    change.add_argument("--mode", choices=[m.value for m in Mode])
    change.add_argument("--port", type=int, metavar="P")
    public = change.add_mutually_exclusive_group()
    public.add_argument("--public-server", metavar="URL", help=PUBLIC_HELP + '; "": none')
    public.add_argument(
        "--no-public-server",
        dest="public_server",
        action="store_const",
        const="",
        help="no public server: remove the wicket-NAME-public context",
    )
    change.set_defaults(func=_set)


def _vault() -> TokenVault:
    """The stores; the encrypted file's passphrase from WICKET_PASSPHRASE_FILE, or asked
    on the terminal when there is one."""
    return TokenVault(lambda: passphrase_from_environment(interactive=sys.stdin.isatty()))


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _load(args: argparse.Namespace) -> DesktopConfig:
    return DesktopConfig.load(config_path(_state_dir(args)))


def _known(args: argparse.Namespace, name: str) -> ClusterConfig:
    cfg = _load(args).cluster(name)
    if cfg is None:
        raise ConfigError(f"no cluster {name!r} (wicket cluster list shows them)")
    return cfg


# -- add -------------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    state_dir, paths = _state_dir(args), KubeconfigPaths.from_process()
    clusters.check_new_name(args.name, _load(args))
    cfg = _new_cluster(args, state_dir)
    upstream = None
    if args.upstream_token_file:
        upstream = read_secret(args.upstream_token_file, "upstream token")
    vault = _vault()
    try:
        if upstream is not None:
            cfg = replace(cfg, secrets=vault.usable())
            vault.store_sync(cfg.secrets).set_sync(upstream_token_key(cfg.name), upstream)
        context = clusters.sync_contexts(paths, cfg)
        DesktopConfig.update(config_path(state_dir), lambda c: c.put(cfg))
    except WicketError:
        clusters.remove_cluster(state_dir, paths, vault, cfg)  # nothing half-added stays
        raise
    _print_contexts(cfg, context)
    if cfg.relay == EMBEDDED:
        _print_agent(state_dir, cfg, args.join_token_out)
    return 0


def _new_cluster(args: argparse.Namespace, state_dir: Path) -> ClusterConfig:
    """The cluster the flags describe (enrolled at its external relay, if one is given)."""
    host, _ = host_port(args.target)
    try:
        ca_pem = args.ca_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the CA file {args.ca_file}: {exc}") from exc
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ConfigError(f"{args.ca_file}: no PEM certificate in it")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a port")
    relay = EMBEDDED
    if args.relay_token_file:
        relay = _enroll_remote(state_dir, read_token(args.relay_token_file, TokenKind.CLIENT))
    port = args.port or clusters.free_port()
    server_name = args.server_name or host
    return ClusterConfig(
        args.name,
        relay,
        port,
        Mode(args.mode),
        ca_pem,
        server_name,
        args.target,
        public_server=_public_server(args.public_server),
    )


def _public_server(url: str) -> str:
    """``--public-server URL`` checked, so the error names the option."""
    try:
        check_public_server(url)
    except ConfigError as exc:
        raise ConfigError(f"--public-server: {exc}") from None
    return url


def _print_contexts(cfg: ClusterConfig, context: str | None) -> None:
    if context is not None:
        print(f"cluster {cfg.name}: kubectl --context {context} (local port {cfg.port})")
    else:
        print(
            f"cluster {cfg.name}: inspect endpoint on local port {cfg.port}; no kubectl "
            "context is written for inspect mode yet (see docs/inspect.md)"
        )
    if context is not None and clusters.public_context_server(cfg):
        print(f"cluster {cfg.name}: kubectl --context {context}-public ({cfg.public_server})")
    elif cfg.public_server and cfg.mode is Mode.INSPECT:
        print(
            f"cluster {cfg.name}: no public context in inspect mode (kubectl's token is the "
            f"local endpoint's, which the apiserver refuses); {cfg.public_server} is kept"
        )


def _enroll_remote(state_dir: Path, token: Token) -> str:
    """Enroll at the external relay now (a refused token is an error here, not later)."""

    async def enroll() -> str:
        service = WicketService()
        try:
            return await Desktop(state_dir, KubeconfigPaths.from_process(), service).enroll_remote(
                token
            )
        finally:
            await service.stop()

    return asyncio.run(enroll())


def _print_agent(state_dir: Path, cfg: ClusterConfig, out: Path | None) -> None:
    token = clusters.issue_join_token(state_dir, cfg.name)
    token_file = str(out) if out else clusters.AGENT_TOKEN_FILE
    files.write_private(Path(token_file), (token + "\n").encode())
    command = clusters.agent_instructions(token, cfg.name, cfg.target, token_file).command
    print(f"join token written to {token_file} (0600); run the agent next to the apiserver:")
    print(command)


# -- list, remove, set -----------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.json:
        rows = [
            {k: v for k, v in cluster_doc(c).items() if k != "cluster_ca"} for c in config.clusters
        ]
        json.dump({"relay": config.relay_listen, "clusters": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'NAME':<16} {'RELAY':<22} {'PORT':>5}  {'MODE':<11} {'SECRETS':<14} PUBLIC")
    for c in config.clusters:
        print(
            f"{c.name:<16} {c.relay:<22} {c.port:>5}  {c.mode.value:<11} "
            f"{c.secrets.value:<14} {c.public_server or '-'}"
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    cfg = _known(args, args.name)
    paths = KubeconfigPaths.from_process()
    removal = clusters.remove_cluster(state_dir, paths, _vault(), cfg)
    DesktopConfig.update(config_path(state_dir), lambda c: c.drop(cfg.name))
    revoked = f"; {removal.revoked} agent identity revoked" if removal.revoked else ""
    print(f"cluster {cfg.name} removed{revoked}")
    for problem in removal.problems:
        print(f"wicket: {problem}", file=sys.stderr)
    return 1 if removal.problems else 0


def _set(args: argparse.Namespace) -> int:
    cfg = _known(args, args.name)
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: not a port")
    public = cfg.public_server if args.public_server is None else args.public_server
    changed = replace(
        cfg,
        mode=Mode(args.mode) if args.mode else cfg.mode,
        port=args.port if args.port is not None else cfg.port,
        public_server=_public_server(public),
    )
    context = clusters.sync_contexts(KubeconfigPaths.from_process(), changed)
    DesktopConfig.update(config_path(_state_dir(args)), lambda c: c.put(changed))
    _print_contexts(changed, context)
    return 0
