"""The built-in demo stack as parts of the service's snapshot (the app's first screen)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.demo.embedded import DemoStack
from core.mode import Mode
from core.service.service import WicketService
from core.service.status import Passive

DEMO = "demo"
DEMO_PARTS: tuple[str, ...] = ("relay", "agent", "client", "endpoint")


async def start_demo(
    service: WicketService, state_dir: Path, kubeconfig: Path, mode: Mode = Mode.PASSTHROUGH
) -> DemoStack:
    """Start the stack once; its relay, agent, client and endpoint show as ``demo/<part>``.
    Its context (``wicket-demo``) follows ``mode``: in inspect mode it trusts Wicket's
    CA and presents the endpoint's token."""
    existing = service.component(DEMO)
    if isinstance(existing, DemoStack):
        return existing
    stack = DemoStack(state_dir, kubeconfig=kubeconfig, mode=mode)
    await service.add(DEMO, stack, lambda: None)
    assert stack.relay and stack.agent and stack.client and stack.endpoint
    snapshots: dict[str, Callable[[], object]] = {
        "relay": stack.relay.snapshot,
        "agent": stack.agent.snapshot,
        "client": stack.client.snapshot,
        "endpoint": stack.endpoint.snapshot,
    }
    for part in DEMO_PARTS:
        await service.add(f"{DEMO}/{part}", Passive(), snapshots[part])
    return stack


async def stop_demo(service: WicketService) -> None:
    for part in DEMO_PARTS:
        await service.remove(f"{DEMO}/{part}")
    await service.remove(DEMO)
