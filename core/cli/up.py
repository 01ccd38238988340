"""``wicket up``: the desktop configuration, running without a window.

For WSL, remote boxes and tests: the clusters ``wicket cluster add`` (or the app's
wizard) configured come up on their saved local ports, the embedded relay on its saved
address, and changes to the configuration are picked up while it runs. It stops
cleanly on SIGINT/SIGTERM. While it runs, ``wicket credential`` (kubectl's plugin)
gets the tokens from it over the user-only credential socket. ``--relay-port`` moves
the embedded relay (agents then need new join tokens); without it, a taken port is an
error that says so.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core.cli import add_command
from core.cli.tunnel import run_until_signal
from core.errors import ConfigError
from core.kube import KubeconfigPaths
from core.service import WicketService
from core.service.config import DEFAULT_RELAY_LISTEN, default_state_dir
from core.service.desktop import Desktop
from core.service.instance import InstanceLock

log = logging.getLogger("wicket.up")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(sub, "up", __doc__, help="run the configured clusters without a window")
    parser.add_argument("--state-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--relay-port",
        type=int,
        metavar="P",
        help="move the embedded relay to port P (0: any free port) and save it",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    with InstanceLock.acquire("up"):  # the app and `wicket up` exclude each other
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    listen = None
    if args.relay_port is not None:
        if not 0 <= args.relay_port <= 65535:
            raise ConfigError(f"--relay-port {args.relay_port}: not a port")
        listen = f"{DEFAULT_RELAY_LISTEN.rpartition(':')[0]}:{args.relay_port}"
    service = WicketService()
    desktop = Desktop(
        args.state_dir or default_state_dir(),
        KubeconfigPaths.from_process(),
        service,
        relay_listen=listen,
    )

    async def start() -> None:
        await service.start()
        try:
            await desktop.start(strict=True)
        except BaseException:
            await service.stop()
            raise
        for cfg in desktop.config.clusters:
            state = desktop.status(cfg.name)
            print(f"{cfg.name}: 127.0.0.1:{cfg.port} ({state})", flush=True)
        print(f"wicket up: {len(desktop.config.clusters)} cluster(s); Ctrl+C stops", flush=True)

    async def stop() -> None:
        await desktop.stop()
        await service.stop()

    return run_until_signal(start, stop, loop=args.loop, tls_over_streams=True)
