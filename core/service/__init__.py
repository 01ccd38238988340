"""The service façade the desktop app and the CLI both use (never imports Qt)."""

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
    "ClusterView",
    "EndpointView",
    "ServiceEvent",
    "ServiceSnapshot",
    "SessionView",
    "StreamView",
    "WicketService",
]
