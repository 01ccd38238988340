"""The service façade the desktop app and the CLI both use (never imports Qt).

It is also the GUI's only door into the rest of core: the few names the app needs from
``core.aio``, ``core.demo``, ``core.kube``, ``core.format``, ``core.resources`` and
``core.version`` (to type-check a component, read the kubeconfig, run the desktop
configuration, find the icons) are re-exported here, so
an import contract can forbid the GUI everything else. ``cli_main`` is here for the
launcher, which hands a sub-command (``wicket up``, ``wicket cluster``…) to the CLI.
"""

from core.aio.dial import load_enrollment, use_relay
from core.aio.endpoint import InspectSettings, RelayClient
from core.aio.relay import Relay, RelayConfig
from core.cli import main as cli_main
from core.demo.embedded import CONTEXT as DEMO_CONTEXT
from core.demo.embedded import DemoStack
from core.format import host_port, human_bytes
from core.kube import KubeconfigPaths, MergedView, Mode, load_merged, use_context
from core.pki.tokens import TokenKind
from core.pki.tokens import parse as parse_token
from core.resources import APP_ID, resource_dir
from core.service.clusters import AgentInstructions
from core.service.config import (
    CONFIG_FILE,
    EMBEDDED,
    ClusterConfig,
    DesktopConfig,
    SecretStorage,
    default_state_dir,
    describe_storage,
)
from core.service.demo import DEMO
from core.service.desktop import Desktop
from core.service.files import save_user_file
from core.service.model import (
    ClusterView,
    EndpointView,
    ServiceEvent,
    ServiceSnapshot,
    SessionView,
    StreamView,
)
from core.service.probe import ProbeAuth, VersionProbe
from core.service.service import WicketService
from core.service.setup import ClusterSetup
from core.service.vault import TokenVault, headless_passphrase
from core.version import version_text

__all__ = [
    "APP_ID",
    "CONFIG_FILE",
    "DEMO",
    "DEMO_CONTEXT",
    "EMBEDDED",
    "AgentInstructions",
    "ClusterConfig",
    "ClusterSetup",
    "ClusterView",
    "DemoStack",
    "Desktop",
    "DesktopConfig",
    "EndpointView",
    "InspectSettings",
    "KubeconfigPaths",
    "MergedView",
    "Mode",
    "ProbeAuth",
    "Relay",
    "RelayClient",
    "RelayConfig",
    "SecretStorage",
    "ServiceEvent",
    "ServiceSnapshot",
    "SessionView",
    "StreamView",
    "TokenKind",
    "TokenVault",
    "VersionProbe",
    "WicketService",
    "cli_main",
    "default_state_dir",
    "describe_storage",
    "host_port",
    "human_bytes",
    "load_enrollment",
    "load_merged",
    "parse_token",
    "resource_dir",
    "headless_passphrase",
    "use_context",
    "use_relay",
    "save_user_file",
    "version_text",
]
