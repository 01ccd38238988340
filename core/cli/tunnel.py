"""``wicket relay``, ``wicket agent`` and ``wicket connect``: the tunnel, headless.

Tokens are read from a file or stdin (``-``), never from the command line, so they stay
out of ``/proc/*/cmdline`` and shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError, TokenError
from core.pki.tokens import Token, TokenKind, parse, split_relay_address
from core.tunnel.relay_state import RelayState, utcnow

log = logging.getLogger("wicket.cli")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = sub.add_parser("relay", help="run the relay (or issue its tokens)")
    relay.add_argument("--listen", default="127.0.0.1:7443", metavar="HOST:PORT")
    relay.add_argument("--state-dir", type=Path, required=True)
    relay.add_argument(
        "--public-host", default=None, metavar="ADDR", help="where public endpoints listen"
    )
    relay.add_argument(
        "--server-name",
        action="append",
        default=[],
        help="extra DNS name or IP for the relay certificate (repeatable)",
    )
    relay.set_defaults(func=_run_relay)
    tokens = relay.add_subparsers(dest="relay_command", metavar="TOKEN-COMMAND")
    join = tokens.add_parser("join-token", help="print a one-time agent enrollment token")
    join.add_argument("--state-dir", type=Path, required=True)
    join.add_argument("--cluster", required=True)
    join.add_argument("--address", default=None, metavar="HOST:PORT")
    join.add_argument("--public-port", type=int, default=None)
    join.set_defaults(func=_join_token)
    client = tokens.add_parser("client-token", help="print a one-time desktop client token")
    client.add_argument("--state-dir", type=Path, required=True)
    client.add_argument("--name", required=True)
    client.add_argument("--address", default=None, metavar="HOST:PORT")
    client.set_defaults(func=_client_token)

    agent = sub.add_parser("agent", help="run the agent next to the apiserver")
    agent.add_argument("--token-file", required=True, help="join token file, or - for stdin")
    agent.add_argument("--target", required=True, metavar="HOST:PORT")
    agent.add_argument("--state-dir", type=Path, required=True)
    agent.set_defaults(func=_run_agent)

    connect = sub.add_parser("connect", help="a local endpoint for kubectl")
    connect.add_argument("--token-file", required=True, help="client token file, or - for stdin")
    connect.add_argument("--cluster", required=True)
    connect.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    connect.add_argument("--state-dir", type=Path, default=None)
    connect.set_defaults(func=_run_connect)


# -- helpers ---------------------------------------------------------------------------


def host_port(text: str) -> tuple[str, int]:
    try:
        return split_relay_address(text)
    except TokenError as exc:
        raise ConfigError(f"{text!r}: expected HOST:PORT") from exc


def read_token(source: str, kind: TokenKind) -> Token:
    """A token from a file or stdin; the error never repeats the token's text."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {source}: {exc.strerror}") from exc
    token = parse(text.strip())
    if token.kind != kind:
        raise TokenError(f"this is a {token.kind.value} token; a {kind.value} token is needed")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_until_signal(
    start: Callable[[], Awaitable[Any]],
    stop: Callable[[], Awaitable[Any]],
    until: Callable[[], Awaitable[Any]] | None = None,
) -> int:
    """Start, serve until SIGINT/SIGTERM (or ``until`` returns), stop cleanly."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await start()
        waiters = [asyncio.create_task(stopping.wait())]
        if until is not None:
            waiters.append(asyncio.create_task(until()))  # type: ignore[arg-type]
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await stop()
        for task in done:
            if task is not waiters[0] and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return 0

    return asyncio.run(main())


# -- commands --------------------------------------------------------------------------


def _join_token(args: argparse.Namespace) -> int:
    state = RelayState(args.state_dir)
    print(state.join_token(args.cluster, args.address, args.public_port, utcnow()))
    return 0


def _client_token(args: argparse.Namespace) -> int:
    state = RelayState(args.state_dir)
    print(state.client_token(args.name, args.address, utcnow()))
    return 0


def _run_relay(args: argparse.Namespace) -> int:
    from core.aio.relay import Relay, RelayConfig
    from core.aio.status import StatusServer

    host, port = host_port(args.listen)
    relay = Relay(
        RelayConfig(
            state_dir=args.state_dir,
            host=host,
            port=port,
            public_host=args.public_host,
            server_names=tuple(args.server_name),
        )
    )
    status = StatusServer("relay", relay.snapshot)

    async def start() -> None:
        await relay.start()
        await status.start()

    async def stop() -> None:
        await status.stop()
        await relay.stop()

    return run_until_signal(start, stop)


def _run_agent(args: argparse.Namespace) -> int:
    from core.aio.agent import Agent
    from core.aio.status import StatusServer

    token = read_token(args.token_file, TokenKind.JOIN)
    host, port = host_port(args.target)
    agent = Agent(args.state_dir, host, port, token=token)
    status = StatusServer("agent", agent.snapshot)

    async def start() -> None:
        await agent.start()
        await status.start()

    async def stop() -> None:
        await status.stop()
        await agent.stop()

    async def until() -> None:
        assert agent.task is not None
        await agent.task  # returns only by failing (a refused token, a broken state dir)

    return run_until_signal(start, stop, until)


def _run_connect(args: argparse.Namespace) -> int:
    from core.aio.endpoint import LocalEndpoint, RelayClient
    from core.aio.status import StatusServer

    token = read_token(args.token_file, TokenKind.CLIENT)
    host, port = host_port(args.listen)
    if not is_loopback(host):
        log.warning(
            "local endpoint on non-loopback %s: anyone who reaches it reaches %s",
            host,
            args.cluster,
        )
    state_dir = args.state_dir or _default_client_dir()
    client = RelayClient(state_dir, token)
    endpoint = LocalEndpoint(client, args.cluster, host, port)
    status = StatusServer("connect", endpoint.snapshot)

    async def start() -> None:
        await endpoint.start()
        await client.start()
        await status.start()
        print(f"local endpoint for {args.cluster}: https://{endpoint.address}", flush=True)

    async def stop() -> None:
        await status.stop()
        await endpoint.stop()
        await client.stop()

    async def until() -> None:
        assert client.task is not None
        await client.task

    return run_until_signal(start, stop, until)


def _default_client_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wicket" / "client"
