"""Many writers at once lose nothing: tokens issued by racing processes, used exactly once.

Issue 12: ten ``wicket relay client-token`` commands started together used to leave
five of eleven tokens on disk (each rewrote the whole ``tokens.json``), and a CLI's
write could undo the running relay's ``consume``. Every test here runs on both engines;
in a fleet, the relays racing for one token are processes of their own (issue 18).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.aio.dial import enroll
from core.aio.relay import Relay, RelayConfig
from core.errors import AuthError
from core.format import utcnow
from core.pki.identity import Role
from core.pki.tokens import Token, TokenKind, parse
from core.protocol.mux import MuxConfig
from core.registry.tokens import TokenRegistry
from tests.support.registry import Registry

REPO = Path(__file__).resolve().parents[2]
COMMANDS = 20
ENROLLING = 6  # agents enrolling against the relay while the commands run
ROUNDS = 50
WORKERS = 4  # connections racing in each round, as separate processes would
RACERS = 4  # processes racing for the same tokens, as the relays of a fleet
RACED_TOKENS = 200
QUIET_MUX = MuxConfig(keepalive_interval=None)
ROLES = {TokenKind.JOIN: Role.AGENT, TokenKind.CLIENT: Role.CLIENT}


@pytest.fixture
async def relay(registry: Registry) -> AsyncIterator[Relay]:
    # Half the enrollments below are refused on purpose: keep them clear of the throttle.
    relay = Relay(
        RelayConfig(
            state_dir=registry.state_dir,
            store=registry.location,
            auth_failure_burst=1000,
            max_preauth_per_source=256,
        )
    )
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def _command(registry: Registry, n: int) -> str:
    """``wicket relay join-token`` or ``client-token`` as a process of its own."""
    state_dir = registry.state_dir
    state = ("--state-dir", str(state_dir), *registry.store_args())
    if n % 2:
        args = ["relay", *state, "join-token", *state, "--cluster", f"c{n}"]
    else:
        args = ["relay", *state, "client-token", *state, "--name", f"u{n}", "--all-clusters"]
    if n % 4 < 2:  # the others read the address from relay.json
        args += ["--address", parse_address(state_dir)]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "core.cli", *args),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def parse_address(state_dir: Path) -> str:
    return str(json.loads((state_dir / "relay.json").read_text())["address"])


async def _enroll(token: Token, directory: Path) -> bool:
    """True if the relay enrolled us; False for its one refusal, "invalid token"."""
    try:
        await enroll(token, directory, ROLES[token.kind], QUIET_MUX)
    except AuthError as exc:
        assert "invalid_token" in str(exc), exc
        return False
    return True


async def test_racing_commands_and_enrollments_lose_no_token(
    relay: Relay, registry: Registry, tmp_path: Path
) -> None:
    early = [
        parse(relay.state.join_token(f"early{n}", relay.address, None, utcnow()))
        for n in range(ENROLLING)
    ]
    started = time.monotonic()
    printed, enrolled = await asyncio.gather(
        asyncio.gather(*(_command(registry, n) for n in range(COMMANDS))),
        asyncio.gather(*(_enroll(t, tmp_path / f"early{n}") for n, t in enumerate(early))),
    )
    issued_in = time.monotonic() - started
    assert all(enrolled)
    tokens = [parse(text) for text in printed]

    # Every printed token is on disk exactly once, beside the early ones (all used).
    records = relay.state.tokens().records()
    ids = [r.token_id for r in records]
    assert sorted(ids) == sorted([t.token_id for t in tokens + early])
    assert len(set(ids)) == len(ids) == COMMANDS + ENROLLING
    assert {r.token_id for r in records if r.used_at} == {t.token_id for t in early}
    assert set(relay.state.clusters()) >= {t.name for t in tokens if t.kind == TokenKind.JOIN}

    # Every printed token works exactly once: two enrollments race for each.
    results = await asyncio.gather(
        *(_enroll(t, tmp_path / f"{t.token_id}-{k}") for t in tokens for k in range(2))
    )
    assert [results[i] + results[i + 1] for i in range(0, len(results), 2)] == [1] * COMMANDS
    assert all(r.used_at for r in relay.state.tokens().records())
    identities = relay.state.store.identities()
    assert sorted(i.token_id for i in identities) == sorted(ids)  # one each
    assert not await _enroll(tokens[0], tmp_path / "again")  # and never again
    print(f"\n{COMMANDS} commands + {ENROLLING} enrollments: {issued_in:.2f} s")


def _round(
    registries: list[TokenRegistry], used: list[Token], now: dt.datetime
) -> tuple[list[Token], list[str], int]:
    """Each worker issues one token of each kind; then every worker tries to consume every
    new token, and a few old ones, and revokes one of its own (used: that changes nothing).
    Returns the new tokens, the ids each consume won, and how many old ones worked again."""
    barrier = threading.Barrier(len(registries))
    issued: list[Token] = []
    wins: list[str] = []
    replayed: list[str] = []

    def work(i: int, registry: TokenRegistry) -> None:
        mine = [
            registry.issue(kind, f"w{i}", relay="r.test:1", ca_fingerprint="ab" * 32, now=now)
            for kind in TokenKind
        ]
        issued.extend(mine)
        barrier.wait()
        for token in issued[i:] + issued[:i] + used[-8:]:
            with contextlib.suppress(AuthError):
                registry.consume(token.token_id, token.secret, now)
                (replayed if token in used else wins).append(token.token_id)
        registry.revoke(mine[0].token_id)

    threads = [threading.Thread(target=work, args=(i, r)) for i, r in enumerate(registries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return issued, wins, len(replayed)


def test_a_used_token_never_becomes_usable_again(registry: Registry) -> None:
    """Rounds of racing issue, consume and revoke, each worker on its own connection (as a
    process has); after every round each new token was won exactly once, and every token
    ever used is still refused."""
    now = utcnow()
    stores = [registry.open(now) for _ in range(WORKERS + 1)]
    registries = [TokenRegistry(store) for store in stores[:WORKERS]]
    checker = TokenRegistry(stores[-1])  # a process that only looks
    used: list[Token] = []
    started = time.monotonic()
    for round_ in range(ROUNDS):
        issued, wins, replayed = _round(registries, used, now)
        assert len(issued) == WORKERS * len(TokenKind)
        assert sorted(wins) == sorted(t.token_id for t in issued), f"round {round_}"
        assert replayed == 0, f"round {round_}"
        used += issued
        records = checker.records()
        assert len(records) == len(used)
        assert all(r.used_at is not None for r in records), f"round {round_}"
        for token in used:
            with pytest.raises(AuthError):
                checker.consume(token.token_id, token.secret, now)
    print(f"\n{ROUNDS} rounds, {len(used)} tokens: {time.monotonic() - started:.2f} s")


_CONSUMER = """
    import json, sys, time
    from pathlib import Path
    from core.format import utcnow
    from core.registry.location import StoreLocation
    from core.registry.tokens import TokenRegistry
    from core.errors import AuthError
    url, password_file, state_dir, tokens = json.loads(sys.argv[1])
    location = StoreLocation(url, password_file and Path(password_file))
    registry = TokenRegistry(location.open(Path(state_dir), utcnow()))
    print("ready", flush=True)
    sys.stdin.readline()
    started, won = time.time(), []
    for token_id, secret in tokens:
        try:
            registry.consume(token_id, secret, utcnow())
            won.append(token_id)
        except AuthError:
            pass
    print(json.dumps([started, time.time(), won]), flush=True)
"""


def test_relays_racing_for_tokens_use_each_once(registry: Registry) -> None:
    """What the relays of a fleet do: processes of their own, each with its connection,
    try every token at the same moment (each in its own order); every token is won by
    exactly one of them."""
    tokens = TokenRegistry(registry.open())
    issued = [
        tokens.issue(TokenKind.CLIENT, f"c{n}", relay="r.test:1", ca_fingerprint="ab" * 32,
                     now=utcnow())
        for n in range(RACED_TOKENS)
    ]  # fmt: skip
    pairs = [(t.token_id, t.secret_text) for t in issued]
    location = registry.location
    password_file = str(location.password_file) if location.password_file else None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for _ in range(RACERS):
        random.shuffle(pairs)
        arg = json.dumps([location.url, password_file, str(registry.state_dir), pairs])
        command = [sys.executable, "-c", textwrap.dedent(_CONSUMER), arg]
        pipe = subprocess.PIPE
        procs.append(
            subprocess.Popen(command, cwd=REPO, env=env, text=True, stdin=pipe, stdout=pipe)
        )
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # all connected: go
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert all(proc.returncode == 0 for proc in procs)
    wins = [won for _, _, won in results]
    assert sorted(w for won in wins for w in won) == sorted(t.token_id for t in issued)
    # A real race: every racer began before any had gone through all the tokens.
    assert max(started for started, _, _ in results) < min(ended for _, ended, _ in results)
    print(f"\n{RACERS} processes, {RACED_TOKENS} tokens: wins {[len(w) for w in wins]}")
