"""``wicket relay-bundle``: print the manifests that run a Wicket relay in a cluster.

A Namespace, a ServiceAccount without an API token, a PersistentVolumeClaim for the
relay's state (its CA, keys and token registry), one Deployment (Recreate), a Service of
type LoadBalancer for the relay port and the public endpoints' ports, and a
PodDisruptionBudget. Tokens are then issued inside the pod:
``kubectl exec -n NAMESPACE deploy/wicket-relay -- wicket relay join-token --state-dir
/var/lib/wicket --cluster NAME --address HOST:PORT``.
"""

from __future__ import annotations

import argparse
import sys

from core.cli import add_command
from core.kube.bundle import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    RELAY_PORT,
    RelayOptions,
    build_relay_bundle,
    parse_port_range,
)


def run(args: argparse.Namespace) -> int:
    public = list(args.public_port)
    for text in args.public_port_range:
        public += parse_port_range(text)
    bundle = build_relay_bundle(
        RelayOptions(
            namespace=args.namespace,
            image=args.image,
            storage_class=args.storage_class,
            port=args.port,
            server_names=tuple(args.server_name),
            public_ports=tuple(sorted(set(public))),
        )
    )
    sys.stdout.write(bundle.to_yaml())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        sub,
        "relay-bundle",
        __doc__,
        allow_abbrev=False,
        help="print Kubernetes manifests that run a Wicket relay",
    )
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace to create")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="relay image reference")
    parser.add_argument("--storage-class", help="StorageClass for the state PVC")
    parser.add_argument(
        "--port", type=int, default=RELAY_PORT, help=f"relay port (default {RELAY_PORT})"
    )
    parser.add_argument(
        "--server-name", action="append", default=[], metavar="NAME",
        help="DNS name or IP clients reach the relay by, for its certificate (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--public-port", action="append", type=int, default=[], metavar="PORT",
        help="a public endpoint port to expose (repeatable; turns on --public-host)",
    )  # fmt: skip
    parser.add_argument(
        "--public-port-range", action="append", default=[], metavar="FIRST-LAST",
        help="public endpoint ports FIRST to LAST (repeatable)",
    )  # fmt: skip
    parser.set_defaults(func=run)
