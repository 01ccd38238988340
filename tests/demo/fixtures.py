"""Fixture code shared by tests/demo (a bare demo apiserver) and tests/e2e (the stack).

Each conftest imports what it serves by name: pytest finds fixtures in a conftest's
namespace, so ``from tests.demo.fixtures import protocol`` makes ``protocol`` a fixture
there. Session-wide stacks are built by :func:`stack_fixture`, named explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import pytest_asyncio

from core.demo.embedded import DemoStack
from core.mode import Mode
from tests.demo.kubectl import KUBECTL, PROTOCOLS, Kubectl


class _Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_T = TypeVar("_T", bound=_Startable)


def skip_without_kubectl() -> None:
    """Skip the calling test module when ``make test-deps`` has not installed kubectl."""
    if not KUBECTL.exists():  # pragma: no cover
        pytest.skip("the real kubectl is not installed (make test-deps)", allow_module_level=True)


@contextlib.asynccontextmanager
async def started(part: _T) -> AsyncIterator[_T]:
    """``part`` started for the block and stopped after it, whatever the block raised."""
    await part.start()
    try:
        yield part
    finally:
        await part.stop()


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    """The upgrade protocol kubectl speaks (every kubectl test runs with both)."""
    value: str = request.param
    return value


def stack_fixture(name: str, doc: str, mode: Mode = Mode.PASSTHROUGH) -> Any:
    """A session fixture ``name``: one demo stack for the whole suite, ``mode`` endpoint."""

    async def fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoStack]:
        stack = DemoStack(tmp_path_factory.mktemp(f"e2e-{name}"), port=0, mode=mode)
        async with started(stack):
            yield stack

    fixture.__doc__ = doc
    return pytest_asyncio.fixture(fixture, scope="session", loop_scope="session", name=name)


def kubectl_through(stack: DemoStack, protocol: str, tmp_path: Path) -> Kubectl:
    """The real kubectl with the stack's kubeconfig, speaking ``protocol`` for upgrades."""
    return Kubectl(tmp_path / "home", stack.kubeconfig_path, protocol)
