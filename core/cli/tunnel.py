"""``wicket relay``, ``wicket agent`` and ``wicket connect``: the tunnel, headless.

Tokens are read from a file or stdin (``-``), never from the command line, so they stay
out of ``/proc/*/cmdline`` and shell history.

``wicket connect --mode inspect`` runs an inspecting endpoint (docs/inspect.md): it needs
the apiserver's CA (``--cluster-ca``) and certificate name (``--server-name``), and
optionally the credential it sends upstream (``--upstream-token-file``). kubectl then
trusts Wicket's CA (``<state-dir>/inspect/ca.pem``) and presents the endpoint's own
token (``--endpoint-token-file``, created 0600 when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import fsutil
from core.aio.eventloop import (
    LoopKind,
    freeze_startup_heap,
    loop_factory,
    raise_open_files_limit,
    resolve,
)
from core.aio.lifecycle import in_order
from core.errors import ConfigError, TokenError
from core.format import utcnow
from core.mode import Mode
from core.paths import data_dir
from core.pki.identity import Role
from core.pki.tokens import Token, TokenKind, parse, split_relay_address
from core.registry.location import StoreLocation
from core.registry.state import RelayState
from core.registry.store import ALL_CLUSTERS, FleetStore, Scope

if TYPE_CHECKING:
    from core.aio.endpoint import InspectSettings

log = logging.getLogger("wicket.cli")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = sub.add_parser("relay", help="run the relay (or issue its tokens)")
    relay.add_argument("--listen", default="127.0.0.1:7443", metavar="HOST:PORT")
    relay.add_argument("--state-dir", type=Path, default=None, help="required to run the relay")
    _store_options(relay, default=None)
    relay.add_argument(
        "--public-host", default=None, metavar="ADDR", help="where public endpoints listen"
    )
    relay.add_argument(
        "--advertise", default=None, metavar="HOST:PORT",
        help="with --store: where agents reach this member of the fleet (default: the "
        "--listen address; needed when that is 0.0.0.0 or ::)",
    )  # fmt: skip
    relay.add_argument(
        "--server-name",
        action="append",
        default=[],
        help="extra DNS name or IP for the relay certificate (repeatable)",
    )
    _limits(relay)
    relay.set_defaults(func=_run_relay)
    _relay_commands(relay.add_subparsers(dest="relay_command", metavar="COMMAND"))

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
    connect.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        default=Mode.PASSTHROUGH.value,
        help="passthrough (kubectl's TLS end to end, the default) or inspect (Wicket ends "
        "kubectl's TLS and records every request)",
    )
    inspect = connect.add_argument_group("inspect mode")
    inspect.add_argument(
        "--cluster-ca", type=Path, metavar="FILE", help="the apiserver's CA certificates (PEM)"
    )
    inspect.add_argument(
        "--server-name", metavar="NAME", help="the name on the apiserver's certificate"
    )
    inspect.add_argument(
        "--upstream-token-file",
        metavar="FILE",
        help="bearer token sent to the apiserver (file, or - for stdin; default: none)",
    )
    inspect.add_argument(
        "--endpoint-token-file",
        type=Path,
        metavar="FILE",
        help="the token kubectl must present (created, mode 0600, when missing; "
        "default: <state-dir>/inspect/endpoint-token-<cluster>)",
    )
    inspect.add_argument(
        "--credential-is-callers-own",
        action="store_true",
        help="the upstream token is the caller's own: let kubectl --as (Impersonate-*) through",
    )
    connect.set_defaults(func=_run_connect)


#: ``wicket relay``'s quotas (docs/security.md): each below the agent session's stream
#: limit, so no one peer, and not the public, can take a whole cluster.
_LIMITS = (
    ("--max-streams-per-client", int, 1024, "concurrent relayed streams of one client identity"),
    ("--max-public-per-source", int, 64, "public-endpoint connections per source address"),
    ("--max-public", int, 1024, "public-endpoint connections in total"),
    ("--public-idle-timeout", float, 10.0, "close a public connection that sent nothing for this"
     " many seconds"),
)  # fmt: skip


def _limits(relay: argparse.ArgumentParser) -> None:
    limits = relay.add_argument_group("limits")
    for flag, kind, default, what in _LIMITS:
        metavar = "SECONDS" if kind is float else "N"
        help_text = f"{what} (default {default:g})"
        limits.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)
    limits.add_argument(
        "--public-allow", action="append", default=[], type=_network, metavar="CIDR",
        help="admit public-endpoint connections from this network only (repeatable; "
        "default: from anywhere: the apiserver authenticates them)",
    )  # fmt: skip


def _store_options(parser: argparse.ArgumentParser, default: object) -> None:
    """``--store`` and its password (the subcommands take them too: ``SUPPRESS`` there,
    so that one given before the subcommand is not reset by the subcommand's default)."""
    parser.add_argument(
        "--store", default=default, metavar="URL",
        help="the registry in PostgreSQL, shared by a fleet of relays: "
        "postgresql://USER@HOST:PORT/DATABASE, never with a password in it "
        "(default: <state-dir>/registry.db)",
    )  # fmt: skip
    parser.add_argument(
        "--store-password-file", type=Path, default=default, metavar="FILE",
        help="the database password (a file, mode 0600); without it libpq's PGPASSWORD "
        "or passfile",
    )  # fmt: skip
    parser.add_argument(
        "--ca-key-file", type=Path, default=default, metavar="FILE",
        help="with --store: 32 random bytes (raw or base64, mode 0600) that seal the "
        "fleet CA's private key in the database (AES-256-GCM); give every member the "
        "same file. Without it the CA key is stored IN THE CLEAR in the database, and "
        "whoever can read the database can issue identities",
    )  # fmt: skip


def _registry_options(parser: argparse.ArgumentParser) -> None:
    """Where a token/registry command finds the registry: the state dir, or ``--store``
    (a fleet's commands need no state dir)."""
    parser.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS,
        help="the relay's state directory (required without --store)",
    )  # fmt: skip
    _store_options(parser, default=argparse.SUPPRESS)


def _relay_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    join = commands.add_parser("join-token", help="print a one-time agent enrollment token")
    _registry_options(join)
    join.add_argument("--cluster", required=True)
    join.add_argument("--address", default=None, metavar="HOST:PORT")
    join.add_argument("--public-port", type=int, default=None)
    _out(join)
    join.set_defaults(func=_join_token)
    client = commands.add_parser("client-token", help="print a one-time desktop client token")
    _registry_options(client)
    client.add_argument("--name", required=True)
    client.add_argument("--address", default=None, metavar="HOST:PORT")
    _scope_options(client)
    _out(client)
    client.set_defaults(func=_client_token)
    listing = commands.add_parser("list", help="issued identities: scopes, last seen, revoked")
    _registry_options(listing)
    listing.set_defaults(func=_list_identities)
    revoke = commands.add_parser("revoke", help="revoke a client or agent (its session ends)")
    _registry_options(revoke)
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", metavar="NAME")
    who.add_argument("--agent", metavar="NAME", help="the agent of cluster NAME")
    revoke.set_defaults(func=_revoke)
    rescope = commands.add_parser(
        "scope", help="change a client's scope (its live sessions follow within a second)"
    )
    _registry_options(rescope)
    rescope.add_argument("name", metavar="CLIENT", help="the client's name")
    _scope_options(rescope)
    rescope.set_defaults(func=_set_scope)
    members = commands.add_parser("members", help="a fleet's live members (--store)")
    _registry_options(members)
    members.set_defaults(func=_members)


def _scope_options(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--cluster", action="append", default=None, dest="clusters", metavar="NAME",
        help="a cluster this client may reach (repeatable)",
    )  # fmt: skip
    scope.add_argument("--all-clusters", action="store_true", help="every cluster, now and later")


def _out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE",
        help="write the token to FILE (mode 0600) instead of printing it",
    )  # fmt: skip


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network (CIDR)") from exc


# -- helpers ---------------------------------------------------------------------------


def host_port(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets); ``any_port`` admits port 0 (pick a free one)."""
    if any_port:
        host, sep, port = text.rpartition(":")
        if sep and host and port == "0":
            return host.strip("[]"), 0
    try:
        host, port_number = split_relay_address(text)
    except TokenError as exc:
        raise ConfigError(f"{text!r}: expected HOST:PORT") from exc
    return host.strip("[]"), port_number


def read_token(source: str, kind: TokenKind) -> Token:
    """A token from a file or stdin; the error never repeats the token's text."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {source}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the token file {source} is not a token (not text)") from exc
    token = parse(text.strip())
    if token.kind != kind:
        raise TokenError(f"this is a {token.kind.value} token; a {kind.value} token is needed")
    return token


def read_secret(source: str, what: str) -> str:
    """A one-line secret from a file or stdin; errors never repeat its text."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(f"cannot read the {what} file {source}: {reason}") from exc
    secret = text.strip()
    if not secret or not secret.isascii() or not secret.isprintable() or " " in secret:
        raise ConfigError(f"the {what} file {source} holds no single printable token")
    return secret


def endpoint_token(path: Path) -> str:
    """The inspect endpoint's credential: read from ``path``, or created there (0600)."""
    from core.pki import files

    if path.exists():
        return read_secret(str(path), "endpoint token")
    token = secrets.token_urlsafe(32)
    files.write_private(path, (token + "\n").encode())
    log.info("new endpoint token for kubectl in %s", path)
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
    *,
    loop: LoopKind = "asyncio",
    auto_uvloop: bool = False,
    tls_over_streams: bool = False,
) -> int:
    """Start, serve until SIGINT/SIGTERM (or ``until`` returns), stop cleanly.

    ``loop`` is the ``--loop`` choice (core.aio.eventloop); ``auto_uvloop`` whether
    ``auto`` means uvloop here; ``tls_over_streams`` that the process may run TLS over
    mux streams, which uvloop cannot.
    """
    try:
        kind = resolve(loop, auto_uvloop=auto_uvloop, tls_over_streams=tls_over_streams)
    except ValueError as exc:
        raise ConfigError(f"--loop {loop}: {exc}") from exc

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await start()
        freeze_startup_heap()
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

    log.debug("event loop: %s", kind)
    raise_open_files_limit()
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main())


# -- commands --------------------------------------------------------------------------


def _relay_state(args: argparse.Namespace) -> RelayState:
    return RelayState(args.state_dir, _location(args))


def _location(args: argparse.Namespace) -> StoreLocation:
    return StoreLocation(args.store, args.store_password_file, args.ca_key_file)


def _join_token(args: argparse.Namespace) -> int:
    with contextlib.closing(_relay_state(args)) as state:
        token = state.join_token(args.cluster, args.address, args.public_port, utcnow())
    return _give(token, args.out)  # committed before it is shown


def _client_token(args: argparse.Namespace) -> int:
    scope = ALL_CLUSTERS if args.all_clusters else frozenset(args.clusters)
    with contextlib.closing(_relay_state(args)) as state:
        token = state.client_token(args.name, args.address, utcnow(), scope=scope)
    return _give(token, args.out)


def _give(token: str, out: Path | None) -> int:
    """Print the token, or write it to ``out`` (0600, never readable by others)."""
    if out is None:
        print(token)
        return 0
    try:
        fsutil.replace_atomic(out, (token + "\n").encode())
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
    print(f"token written to {out} (mode 0600)", file=sys.stderr)
    return 0


def _list_identities(args: argparse.Namespace) -> int:
    with contextlib.closing(_relay_state(args)) as state:
        identities = state.identities()
    print(f"{'ROLE':<7} {'NAME':<24} {'SCOPE':<24} {'LAST SEEN':<21} STATE")
    for ident in identities:
        scope = "-" if ident.role == Role.AGENT else _scope(ident.scope)
        seen = ident.last_seen.strftime("%Y-%m-%d %H:%M:%SZ") if ident.last_seen else "never"
        state_word = "revoked" if ident.revoked else "active"
        print(f"{ident.role.value:<7} {ident.name:<24} {scope:<24} {seen:<21} {state_word}")
    return 0


def _scope(scope: Scope) -> str:
    return "all clusters" if scope is None else ",".join(sorted(scope)) or "none"


def _revoke(args: argparse.Namespace) -> int:
    role, name = (Role.CLIENT, args.client) if args.client else (Role.AGENT, args.agent)
    with contextlib.closing(_relay_state(args)) as state:
        count = state.revoke(role, name)
    if not count:
        raise ConfigError(f"no unrevoked {role.value} identity named {name} here")
    print(f"revoked {count} identit{'y' if count == 1 else 'ies'} of {role.value} {name}")
    return 0


def _set_scope(args: argparse.Namespace) -> int:
    scope = ALL_CLUSTERS if args.all_clusters else frozenset(args.clusters)
    with contextlib.closing(_relay_state(args)) as state:
        count = state.set_scope(args.name, scope)
    if not count:
        raise ConfigError(f"no client named {args.name} here (no client token of that name)")
    print(f"client {args.name} now reaches {_scope(scope)} ({count} token{'s' * (count != 1)})")
    return 0


def _members(args: argparse.Namespace) -> int:
    with contextlib.closing(_relay_state(args)) as state:
        store = state.store
        if not isinstance(store, FleetStore):
            raise ConfigError("wicket relay members: a fleet's store is needed (--store)")
        members = store.members()
    print(f"{'MEMBER':<17} {'ADVERTISED':<32} {'STARTED':<21} LAST HEARTBEAT")
    for member in members:
        started = member.started.strftime("%Y-%m-%d %H:%M:%SZ")
        beat = member.heartbeat.strftime("%H:%M:%S.%f")[:-3]
        print(f"{member.member_id:<17} {member.advertise:<32} {started:<21} {beat}")
    return 0


def host_port_text(text: str) -> str:
    """``text`` if it is a ``HOST:PORT`` (``ConfigError`` if not)."""
    host_port(text)
    return text


def _run_relay(args: argparse.Namespace) -> int:
    from core.aio.relay import Relay, RelayConfig
    from core.aio.status import StatusServer

    if args.state_dir is None:
        raise ConfigError("wicket relay: --state-dir is required")
    host, port = host_port(args.listen, any_port=True)
    relay = Relay(
        RelayConfig(
            state_dir=args.state_dir,
            store=_location(args),
            advertise=None if args.advertise is None else host_port_text(args.advertise),
            host=host,
            port=port,
            public_host=args.public_host,
            server_names=tuple(args.server_name),
            max_streams_per_client=args.max_streams_per_client,
            max_public_per_source=args.max_public_per_source,
            max_public=args.max_public,
            public_allow=tuple(args.public_allow),
            public_idle_timeout=args.public_idle_timeout,
        )
    )
    status = StatusServer("relay", relay.snapshot)

    start, stop = in_order(relay, status)
    return run_until_signal(start, stop, loop=args.loop, auto_uvloop=True)


def _run_agent(args: argparse.Namespace) -> int:
    from core.aio.agent import Agent
    from core.aio.health import Heartbeat
    from core.aio.status import StatusServer

    token = read_token(args.token_file, TokenKind.JOIN)
    host, port = host_port(args.target)
    agent = Agent(args.state_dir, host, port, token=token)
    status = StatusServer("agent", agent.snapshot)
    heartbeat = Heartbeat(args.state_dir, lambda: agent.state)

    start, stop = in_order(agent, status, heartbeat)

    async def until() -> None:
        assert agent.task is not None
        await agent.task  # returns only by failing (a refused token, a broken state dir)

    return run_until_signal(start, stop, until, loop=args.loop, auto_uvloop=True)


def _inspect_settings(args: argparse.Namespace, state_dir: Path) -> InspectSettings:
    from core.aio.endpoint import InspectSettings

    if args.cluster_ca is None or not args.server_name:
        raise ConfigError("--mode inspect needs --cluster-ca FILE and --server-name NAME")
    if {args.upstream_token_file, args.token_file} == {"-"}:
        raise ConfigError("only one of --token-file and --upstream-token-file can be stdin")
    try:
        ca_pem = args.cluster_ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster CA {args.cluster_ca}: {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ConfigError(f"{args.cluster_ca}: no PEM certificate in it")
    upstream = None
    if args.upstream_token_file is not None:
        upstream = "Bearer " + read_secret(args.upstream_token_file, "upstream token")
    inspect_dir = state_dir / "inspect"
    token_file = args.endpoint_token_file or inspect_dir / f"endpoint-token-{args.cluster}"
    return InspectSettings(
        state_dir=inspect_dir,
        endpoint_token=endpoint_token(token_file),
        cluster_ca_pem=ca_pem,
        server_name=args.server_name,
        upstream_authorization=upstream,
        credential_is_callers_own=args.credential_is_callers_own,
    )


def _run_connect(args: argparse.Namespace) -> int:
    from core.aio.endpoint import LocalEndpoint, RelayClient
    from core.aio.status import StatusServer

    if args.mode == Mode.PASSTHROUGH and (
        args.cluster_ca or args.server_name or args.upstream_token_file or args.endpoint_token_file
    ):
        raise ConfigError("the inspect-mode options need --mode inspect")
    token = read_token(args.token_file, TokenKind.CLIENT)
    host, port = host_port(args.listen, any_port=True)
    if not is_loopback(host):
        log.warning(
            "local endpoint on non-loopback %s: anyone who reaches it reaches %s",
            host,
            args.cluster,
        )
    state_dir = args.state_dir or _default_client_dir()
    inspect = _inspect_settings(args, state_dir) if args.mode == Mode.INSPECT else None
    client = RelayClient(state_dir, token)
    endpoint = LocalEndpoint(client, args.cluster, host, port, mode=args.mode, inspect=inspect)
    status = StatusServer("connect", endpoint.snapshot)

    start_all, stop = in_order(endpoint, client, status)

    async def start() -> None:
        await start_all()
        print(f"local endpoint for {args.cluster}: {endpoint.url}", flush=True)
        if inspect is not None:
            ca = inspect.state_dir / "ca.pem"
            print(f"inspect mode: kubectl trusts {ca} and presents the endpoint token", flush=True)

    async def until() -> None:
        assert client.task is not None
        await client.task

    return run_until_signal(
        start, stop, until, loop=args.loop, tls_over_streams=inspect is not None
    )


def _default_client_dir() -> Path:
    return data_dir("client")
