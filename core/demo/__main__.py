"""Run the demo apiserver standalone until SIGINT/SIGTERM.

``python -m core.demo --listen 127.0.0.1:PORT --state-dir DIR [--plain]`` prints the
path of a kubeconfig for it (``KUBECONFIG=<path> kubectl get pods``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from core.demo.apiserver import DemoApiServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.demo", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default: any port)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--plain", action="store_true", help="plain HTTP, no authentication")
    parser.add_argument("--no-websocket", action="store_true", help="refuse WebSocket upgrades")
    parser.add_argument("--auth", choices=["token", "cert"], default="token")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    server = DemoApiServer(
        args.state_dir,
        host.strip("[]") or "127.0.0.1",
        int(port),
        tls=not args.plain,
        websocket=not args.no_websocket,
    )
    await server.start()
    try:
        path = server.write_kubeconfig(args.state_dir / "kubeconfig", auth=args.auth)
        print(path, flush=True)
        print(f"demo apiserver on {server.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_run(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
