"""Fixtures: a demo apiserver per test and the real kubectl pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.demo import DemoApiServer
from tests.demo.kubectl import KUBECTL, PROTOCOLS, Kubectl, KubectlFactory

if not KUBECTL.exists():  # pragma: no cover
    pytest.skip("the real kubectl is not installed (make test-deps)", allow_module_level=True)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoApiServer]:
    server = DemoApiServer(tmp_path / "state", tls=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def kubectl_for(tmp_path: Path) -> KubectlFactory:
    counter = iter(range(1000))

    def make(server: DemoApiServer, protocol: str = "websocket", auth: str = "token") -> Kubectl:
        n = next(counter)
        config = server.write_kubeconfig(tmp_path / f"kubeconfig-{n}", auth=auth)
        return Kubectl(tmp_path / f"home-{n}", config, protocol)

    return make


@pytest.fixture
def kubectl(demo: DemoApiServer, kubectl_for: KubectlFactory, protocol: str) -> Kubectl:
    return kubectl_for(demo, protocol)
