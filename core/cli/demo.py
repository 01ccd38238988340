"""``wicket demo``: a demo cluster behind a real Wicket tunnel, for trying kubectl.

Runs relay, agent, demo apiserver, a client session and a local endpoint in this
process (``core.demo.embedded.DemoStack``) until SIGINT/SIGTERM, and writes a
kubeconfig with the context ``wicket-demo``: its own file unless ``--kubeconfig`` names
another one (never ``~/.kube/config`` unless named explicitly). ``--mode inspect`` makes
the endpoint an inspecting one (``wicket status`` then lists every request); the
default is ``passthrough``.
"""

from __future__ import annotations

import argparse
import getpass
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.tunnel import run_until_signal
from core.errors import ConfigError

if TYPE_CHECKING:
    from core.demo.embedded import DemoStack


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run a demo cluster through a local Wicket tunnel (try kubectl with it)",
        description=(
            "Run a demo Kubernetes apiserver behind relay, agent and a local endpoint, "
            "all in this process, until interrupted. Its pods run commands on THIS "
            "machine as the current user."
        ),
    )
    demo.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="FILE",
        help="put the wicket-demo context into FILE (default: <state-dir>/kubeconfig)",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the demo keeps its state (default: $XDG_DATA_HOME/wicket/demo)",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=None,
        help="local endpoint port (default: the last run's, if free)",
    )
    demo.add_argument(
        "--mode",
        choices=("passthrough", "inspect"),
        default="passthrough",
        help="local endpoint mode: passthrough (TLS end to end, the default) or inspect "
        "(Wicket ends kubectl's TLS and records every request)",
    )
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from core.aio.status import StatusServer
    from core.demo.embedded import DemoStack

    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"invalid port {args.port}")
    stack = DemoStack(args.state_dir, port=args.port, kubeconfig=args.kubeconfig, mode=args.mode)
    status = StatusServer("demo", stack.snapshot)

    async def start() -> None:
        await stack.start()
        try:
            await status.start()
        except BaseException:
            await stack.stop()
            raise
        print(_instructions(stack), flush=True)

    async def stop() -> None:
        await status.stop()
        await stack.stop()

    return run_until_signal(start, stop, stack.wait, loop=args.loop, tls_over_streams=True)


def _instructions(stack: DemoStack) -> str:
    from core.demo.embedded import CONTEXT

    kubectl = "kubectl" if stack.kubeconfig_is_current else f"kubectl --context {CONTEXT}"
    kind = "local inspect endpoint" if stack.mode == "inspect" else "local endpoint"
    lines = [
        f"Wicket demo running: kubectl → {stack.server_url} ({kind}) → relay → "
        "agent → demo apiserver",
        f"WARNING: the demo's pods are this machine: commands run here as {_user()}.",
        "",
    ]
    if stack.mode == "inspect":
        lines += ["Every request is recorded: see them with `wicket status`.", ""]
    lines += [
        "Use it from another terminal:",
        "",
        f"  export KUBECONFIG={shlex.quote(str(stack.kubeconfig_path))}",
        "",
        "Things to try:",
        f"  {kubectl} get pods",
        f"  {kubectl} exec web -- uname -a",
        f"  {kubectl} exec -it web -- sh",
        f"  {kubectl} logs -f ticker",
        f"  {kubectl} get pods -w",
        f"  {kubectl} attach -i chat",
        f"  {kubectl} port-forward pod/web 8080:80   # then open http://127.0.0.1:8080",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the current user"
