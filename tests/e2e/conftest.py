"""One demo stack for the whole suite: kubectl → endpoint → relay → agent → demo apiserver.

A second one (``inspect_stack``) has its local endpoint in inspect mode, for
``test_kubectl_inspect.py``; ``inspect_service`` publishes it through ``WicketService``.

The stack runs on the session's event loop (tests use ``loop_scope="session"``), so
tests may also look inside it (snapshots, the pod working dirs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.demo.embedded import DemoStack
from core.mode import Mode
from core.service import WicketService
from tests.demo.fixtures import (
    kubectl_through,
    protocol,
    skip_without_kubectl,
    stack_fixture,
)
from tests.demo.kubectl import Kubectl

__all__ = ["inspect_kubectl", "inspect_service", "inspect_stack", "kubectl", "protocol", "stack"]

skip_without_kubectl()

stack = stack_fixture("stack", "The demo stack, its local endpoint in passthrough mode.")


@pytest.fixture
def kubectl(stack: DemoStack, protocol: str, tmp_path: Path) -> Kubectl:
    """The real kubectl through the tunnel, speaking ``protocol`` for upgrades."""
    return kubectl_through(stack, protocol, tmp_path)


# -- inspect mode ----------------------------------------------------------------------------


class _Running:
    """A component that is already running (the stack owns it), for ``WicketService.add``."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


inspect_stack = stack_fixture(
    "inspect_stack", "The same demo stack, its local endpoint in inspect mode.", Mode.INSPECT
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def inspect_service(inspect_stack: DemoStack) -> AsyncIterator[WicketService]:
    """A service publishing the inspect stack's endpoint (tests read ``refresh()``)."""
    assert inspect_stack.endpoint is not None
    service = WicketService()
    await service.add("endpoint:demo", _Running(), inspect_stack.endpoint.snapshot)
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def inspect_kubectl(inspect_stack: DemoStack, protocol: str, tmp_path: Path) -> Kubectl:
    """The real kubectl through the inspect endpoint, speaking ``protocol`` for upgrades."""
    return kubectl_through(inspect_stack, protocol, tmp_path)
