"""The ``tunnel`` fixture: relay, agent, connect and a target as processes, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.tunnel.harness import Tunnel


@pytest.fixture
async def tunnel(tmp_path: Path) -> AsyncIterator[Tunnel]:
    t = Tunnel(tmp_path)
    try:
        await t.start_all()
        yield t
    finally:
        t.close()
