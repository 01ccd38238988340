"""The service façade the desktop app and the CLI both use (never imports Qt).

It is also the GUI's only door into the running parts: the few ``core.aio`` and
``core.demo`` names the app needs (to type-check a component, configure a relay or an
inspect endpoint, find an enrolled identity, run the demo) are re-exported here, so an
import contract can forbid the GUI everything else below this package.
"""

from core.aio.dial import load_enrollment, use_relay
from core.aio.endpoint import InspectSettings, RelayClient
from core.aio.relay import Relay, RelayConfig
from core.demo.embedded import CONTEXT as DEMO_CONTEXT
from core.demo.embedded import DemoStack
from core.service.model import (
    ClusterView,
    EndpointView,
    ServiceEvent,
    ServiceSnapshot,
    SessionView,
    StreamView,
)
from core.service.service import WicketService

__all__ = [
    "DEMO_CONTEXT",
    "ClusterView",
    "DemoStack",
    "EndpointView",
    "InspectSettings",
    "Relay",
    "RelayClient",
    "RelayConfig",
    "ServiceEvent",
    "ServiceSnapshot",
    "SessionView",
    "StreamView",
    "WicketService",
    "load_enrollment",
    "use_relay",
]
