"""One demo stack for the whole suite: kubectl → endpoint → relay → agent → demo apiserver.

The stack runs on the session's event loop (tests use ``loop_scope="session"``), so
tests may also look inside it (snapshots, the pod working dirs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.demo.embedded import DemoStack
from tests.demo.kubectl import KUBECTL, PROTOCOLS, Kubectl

if not KUBECTL.exists():  # pragma: no cover
    pytest.skip("the real kubectl is not installed (make test-deps)", allow_module_level=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoStack]:
    demo = DemoStack(tmp_path_factory.mktemp("e2e-stack"), port=0)
    await demo.start()
    try:
        yield demo
    finally:
        await demo.stop()


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def kubectl(stack: DemoStack, protocol: str, tmp_path: Path) -> Kubectl:
    """The real kubectl through the tunnel, speaking ``protocol`` for upgrades."""
    return Kubectl(tmp_path / "home", stack.kubeconfig_path, protocol)
