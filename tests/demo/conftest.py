"""Fixtures: a demo apiserver per test and the real kubectl pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.demo import DemoApiServer
from tests.demo.fixtures import protocol, skip_without_kubectl, started
from tests.demo.kubectl import Kubectl, KubectlFactory

__all__ = ["demo", "kubectl", "kubectl_for", "protocol"]

skip_without_kubectl()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoApiServer]:
    async with started(DemoApiServer(tmp_path / "state", tls=True)) as server:
        yield server


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
