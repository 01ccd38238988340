"""``wicket agent-bundle``: print the manifests that run an agent in a private cluster.

The join token is read from a file (or ``-`` for stdin), never from argv, where every
user on the machine could read it in ``/proc/*/cmdline``. The output is multi-document
YAML for ``kubectl apply -f -``; it contains the token (in its Secret only), so treat
it like the token itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import add_command
from core.errors import ConfigError
from core.kube.bundle import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    JOIN_TOKEN_PREFIX,
    StateVolume,
    build_agent_bundle,
)

_MAX_TOKEN_FILE = 64 * 1024


def read_token_file(name: str) -> str:
    """The token text from ``name`` (``-`` is stdin); parsing is the bundle's job."""
    if name.startswith(JOIN_TOKEN_PREFIX):  # pasted the token itself: don't echo it
        raise ConfigError("--token-file takes a file holding the token, not the token")
    try:
        if name == "-":
            text = sys.stdin.read(_MAX_TOKEN_FILE)
        else:
            with Path(name).open(encoding="ascii", errors="replace") as f:
                text = f.read(_MAX_TOKEN_FILE)
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {name}: {exc.strerror}") from None
    return text


def run(args: argparse.Namespace) -> int:
    bundle = build_agent_bundle(
        read_token_file(args.token_file),
        args.cluster,
        namespace=args.namespace,
        image=args.image,
        state=StateVolume(args.state_volume),
        storage_class=args.storage_class,
    )
    sys.stdout.write(bundle.to_yaml())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        sub,
        "agent-bundle",
        __doc__,
        allow_abbrev=False,  # no "--token" as a prefix of --token-file
        help="print Kubernetes manifests that run a Wicket agent (token from a file)",
    )
    parser.add_argument(
        "--token-file", required=True, metavar="FILE", help="join token file, or - for stdin"
    )
    parser.add_argument("--cluster", default="default", help="cluster name (label on objects)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace to create")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="agent image reference")
    parser.add_argument(
        "--state-volume",
        choices=[v.value for v in StateVolume],
        default=StateVolume.PVC.value,
        help="where the agent keeps its enrolled identity (default: pvc; emptydir loses it "
        "on reschedule, and a join token enrolls only once)",
    )
    parser.add_argument("--storage-class", help="StorageClass for the state PVC")
    parser.set_defaults(func=run)
