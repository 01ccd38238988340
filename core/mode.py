"""How a local endpoint carries kubectl's TLS, in one enum.

The endpoint (``core.aio``), the service, the demo, the kubeconfig entries
(``core.kube``) and the desktop app all speak of it, so it lives below all of them.
"""

from __future__ import annotations

import enum

from core.errors import ConfigError


class Mode(enum.StrEnum):
    """End to end (``passthrough``), or terminated and re-originated by Wicket (``inspect``)."""

    PASSTHROUGH = "passthrough"
    INSPECT = "inspect"


def mode_of(value: str) -> Mode:
    """``value`` as a ``Mode``; anything else is a configuration error, said plainly."""
    try:
        return Mode(value)
    except ValueError:
        raise ConfigError(f"unknown endpoint mode {value!r} (passthrough or inspect)") from None
