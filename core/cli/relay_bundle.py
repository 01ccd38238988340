"""``wicket relay-bundle``: print the manifests that run a Wicket relay in a cluster.

A Namespace, a ServiceAccount without an API token, a PersistentVolumeClaim for the
relay's state (its CA, keys and token registry), one Deployment (Recreate), a Service of
type LoadBalancer for the relay port and the public endpoints' ports, and a
PodDisruptionBudget. With ``--store-secret`` (and ``--replicas N``) a relay fleet on your
PostgreSQL instead: N members, no state volume (packaging/README.md). Tokens are then
issued inside the pod:
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
            replicas=args.replicas,
            store_secret=args.store_secret,
            ca_key_secret=args.ca_key_secret,
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
    fleet = parser.add_argument_group("a relay fleet (PostgreSQL: the database is yours)")
    fleet.add_argument(
        "--replicas", type=int, default=1, metavar="N",
        help="run N relays as one fleet (above 1 needs --store-secret)",
    )  # fmt: skip
    fleet.add_argument(
        "--store-secret", metavar="NAME",
        help="a Secret with keys url (postgresql://USER@HOST:PORT/DATABASE, no password "
        "in it) and password: the members share their registry there; no state volume",
    )  # fmt: skip
    fleet.add_argument(
        "--ca-key-secret", metavar="NAME",
        help="a Secret whose key 'key' (32 random bytes, raw or base64) seals the fleet "
        "CA's private key in the database (--ca-key-file; without it the key is stored "
        "in the clear there)",
    )  # fmt: skip
    parser.set_defaults(func=run)
