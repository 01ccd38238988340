"""``wicket kubeconfig``: Wicket's contexts in the user's kubeconfig, for scripts.

A thin layer over ``core.kube``: parse arguments, call one operation, print one line
(or the context list). Errors are ``KubeconfigError``s, which ``core.cli.main`` prints
and turns into exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import Any

from core.errors import KubeconfigError
from core.kube import (
    Change,
    ClusterSpec,
    Credentials,
    ExecCredential,
    KubeconfigPaths,
    Mode,
    UserRef,
    WriteOptions,
    add_cluster_contexts,
    load_merged,
    remove_cluster_contexts,
    use_context,
)
from core.paths import wicket_command


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", metavar="FILE", help="use only this kubeconfig file")
    common.add_argument(
        "--lock-timeout",
        type=float,
        default=WriteOptions.lock_timeout,
        metavar="SECONDS",
        help=f"wait this long for <file>.lock (default: {WriteOptions.lock_timeout:g})",
    )
    parser = subparsers.add_parser("kubeconfig", help="manage Wicket's kubeconfig contexts")
    sub = parser.add_subparsers(dest="kubeconfig_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", parents=[common], help="add or update a cluster's contexts")
    add.add_argument("--cluster", required=True, metavar="NAME")
    add.add_argument("--port", required=True, type=int, help="local tunnel port")
    add.add_argument("--public-server", metavar="URL", help="also add wicket-NAME-public")
    ca = add.add_mutually_exclusive_group(required=True)
    ca.add_argument("--ca-file", metavar="FILE", help="CA certificate (PEM)")
    ca.add_argument("--ca-data-file", metavar="FILE", help="base64 PEM, as in kubeconfig")
    add.add_argument("--tls-server-name", required=True, metavar="NAME")
    add.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.PASSTHROUGH.value)
    creds = add.add_mutually_exclusive_group(required=True)
    creds.add_argument("--user", metavar="EXISTING", help="reference an existing user entry")
    creds.add_argument(
        "--exec-credential",
        action="store_true",
        help="a Wicket user entry running `wicket credential` (secret in the keyring)",
    )
    add.add_argument("--wicket-command", metavar="PATH", help="absolute path of `wicket`")
    add.set_defaults(func=_add)

    remove = sub.add_parser("remove", parents=[common], help="remove a cluster's contexts")
    remove.add_argument("--cluster", required=True, metavar="NAME")
    remove.set_defaults(func=_remove)

    use = sub.add_parser("use", parents=[common], help="switch the current context")
    use.add_argument("context", metavar="CONTEXT")
    use.set_defaults(func=_use)

    listing = sub.add_parser("list", parents=[common], help="list contexts")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_list)


def _options(args: argparse.Namespace) -> WriteOptions:
    return WriteOptions(lock_timeout=args.lock_timeout)


def _paths(args: argparse.Namespace) -> KubeconfigPaths:
    return KubeconfigPaths.from_process(args.kubeconfig)


def _add(args: argparse.Namespace) -> int:
    credentials: Credentials
    if args.user:
        credentials = UserRef(args.user)
    else:
        credentials = ExecCredential(args.wicket_command or wicket_command())
    spec = ClusterSpec(
        name=args.cluster,
        port=args.port,
        ca_pem=_read_ca(args.ca_file, args.ca_data_file),
        tls_server_name=args.tls_server_name,
        credentials=credentials,
        mode=Mode(args.mode),
        public_server=args.public_server,
    )
    change = add_cluster_contexts(_paths(args), spec, options=_options(args))
    _report(change, f"contexts for cluster {spec.name!r}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    change = remove_cluster_contexts(_paths(args), args.cluster, options=_options(args))
    _report(change, f"removed contexts of cluster {args.cluster!r}")
    if change.cleared_current_context:
        print("current-context was one of them and is now unset")
    return 0


def _use(args: argparse.Namespace) -> int:
    change = use_context(_paths(args), args.context, options=_options(args))
    _report(change, f"switched to context {args.context!r}")
    return 0


def _list(args: argparse.Namespace) -> int:
    view = load_merged(_paths(args))
    if args.json:
        rows = [
            {
                "name": ctx.name,
                "cluster": ctx.cluster,
                "user": ctx.user,
                "namespace": ctx.namespace,
                "server": ctx.server,
                "source": ctx.source,
                "current": ctx.name == view.current_context,
                "wicket": ctx.wicket_cluster is not None,
                "wicket_cluster": ctx.wicket_cluster,
            }
            for ctx in view.contexts
        ]
        doc = {"current_context": view.current_context, "files": view.files, "contexts": rows}
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    width = max([len(ctx.name) for ctx in view.contexts] + [4])
    print(f"CURRENT  WICKET  {'NAME':<{width}}  SERVER")
    for ctx in view.contexts:
        current = "*" if ctx.name == view.current_context else ""
        wicket = "yes" if ctx.wicket_cluster is not None else ""
        print(f"{current:<7}  {wicket:<6}  {ctx.name:<{width}}  {ctx.server or ''}")
    return 0


def _report(change: Change, what: str) -> None:
    if change.written:
        print(f"{what}: wrote {', '.join(change.written)}")
    else:
        print(f"{what}: already up to date, nothing written")


def _read_ca(pem_file: str | None, data_file: str | None) -> bytes:
    path = pem_file or data_file or ""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read: {exc.strerror}") from None
    if pem_file:
        return raw
    try:
        return base64.b64decode(b"".join(raw.split()), validate=True)
    except binascii.Error:
        raise KubeconfigError(f"{path}: not base64 data") from None
