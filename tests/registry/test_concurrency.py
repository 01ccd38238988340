"""Many writers at once lose nothing: tokens issued by racing processes, used exactly once.

Issue 12: ten ``wicket relay client-token`` commands started together used to leave
five of eleven tokens on disk (each rewrote the whole ``tokens.json``), and a CLI's
write could undo the running relay's ``consume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
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
from core.registry.sqlite import SqliteStore
from core.registry.tokens import TokenRegistry

REPO = Path(__file__).resolve().parents[2]
COMMANDS = 20
ENROLLING = 6  # agents enrolling against the relay while the commands run
ROUNDS = 50
WORKERS = 4  # connections racing in each round, as separate processes would
QUIET_MUX = MuxConfig(keepalive_interval=None)
ROLES = {TokenKind.JOIN: Role.AGENT, TokenKind.CLIENT: Role.CLIENT}


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    # Half the enrollments below are refused on purpose: keep them clear of the throttle.
    relay = Relay(
        RelayConfig(
            state_dir=tmp_path / "relay", auth_failure_burst=1000, max_preauth_per_source=256
        )
    )
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def _command(state_dir: Path, n: int) -> str:
    """``wicket relay join-token`` or ``client-token`` as a process of its own."""
    state = ("--state-dir", str(state_dir))
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


async def test_racing_commands_and_enrollments_lose_no_token(relay: Relay, tmp_path: Path) -> None:
    state_dir = relay.config.state_dir
    early = [
        parse(relay.state.join_token(f"early{n}", relay.address, None, utcnow()))
        for n in range(ENROLLING)
    ]
    started = time.monotonic()
    printed, enrolled = await asyncio.gather(
        asyncio.gather(*(_command(state_dir, n) for n in range(COMMANDS))),
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


def test_a_used_token_never_becomes_usable_again(tmp_path: Path) -> None:
    """Rounds of racing issue, consume and revoke, each worker on its own connection (as a
    process has); after every round each new token was won exactly once, and every token
    ever used is still refused."""
    tmp_path.chmod(0o700)
    now = utcnow()
    stores = [SqliteStore.open(tmp_path, now) for _ in range(WORKERS + 1)]
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
    for store in stores:
        store.close()
    print(f"\n{ROUNDS} rounds, {len(used)} tokens: {time.monotonic() - started:.2f} s")
