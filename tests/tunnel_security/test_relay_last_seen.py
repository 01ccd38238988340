"""The relay records when each identity's sessions began and ended (``wicket relay
list``), off its event loop (core.aio.lastseen), and the legitimate path never notices."""

from __future__ import annotations

import asyncio
import datetime as dt

from core.aio.endpoint import RelayClient
from core.format import utcnow
from core.pki.tokens import parse
from core.registry.store import ALL_CLUSTERS

from .conftest import PROMPT, World


async def _last_seen(world: World, name: str) -> dt.datetime | None:
    """The registry's record, read the way ``wicket relay list`` does (another store)."""
    [ident] = [i for i in world.relay.state.identities() if i.name == name]
    return ident.last_seen


async def _until_seen_after(world: World, name: str, after: dt.datetime) -> dt.datetime:
    async with asyncio.timeout(PROMPT):
        while True:
            seen = await _last_seen(world, name)
            if seen is not None and seen >= after:
                return seen
            await asyncio.sleep(0.02)


async def test_a_sessions_begin_and_end_are_recorded(world: World) -> None:
    relay = world.relay
    token = parse(relay.state.client_token("bob", relay.address, utcnow(), scope=ALL_CLUSTERS))
    before = utcnow().replace(microsecond=0)
    client = RelayClient(world.root / "bob", token)
    await client.start()
    try:
        await client.wait_online(PROMPT)
        began = await _until_seen_after(world, "bob", before)
    finally:
        await client.stop()
    ended = await _until_seen_after(world, "bob", began + dt.timedelta(microseconds=1))
    assert before <= began < ended <= utcnow()
    assert await _last_seen(world, "prod") is not None  # the world's agent, too
    await world.check()
