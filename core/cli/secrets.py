"""``wicket credential``: the kubectl exec credential plugin.

kubectl runs ``wicket credential --cluster NAME`` (from the ``users[].user.exec`` entry
Wicket writes) and reads an ``ExecCredential`` on stdout. The token comes from the
secret store, so it never sits in the kubeconfig, in argv or in the environment.

``KUBERNETES_EXEC_INFO`` is honoured: the reply uses the apiVersion kubectl asked for,
and ``spec.interactive`` decides whether the plugin may ask for the passphrase of the
encrypted-file fallback on the terminal. Failures go to stderr with exit status 1, and
never name the token.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass

from core.cli import add_command
from core.errors import ConfigError, SecretBackendUnavailable, SecretStoreError
from core.secrets import StateKind, encrypted_file_store, keyring_store, probe_keyring
from core.secrets.store import SecretStore, default_secrets_file, upstream_token_key

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


@dataclass(frozen=True)
class ExecInfo:
    api_version: str
    interactive: bool


def parse_exec_info(raw: str | None, stdin_is_tty: bool) -> ExecInfo:
    """Read ``KUBERNETES_EXEC_INFO``; without it, reply v1 and be interactive on a tty."""
    if not raw:
        return ExecInfo(EXEC_API_VERSIONS[0], stdin_is_tty)
    try:
        info = json.loads(raw)
        api_version = info["apiVersion"]
        interactive = bool(info.get("spec", {}).get("interactive", False))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError("KUBERNETES_EXEC_INFO is not an ExecCredential") from None
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(f"unsupported ExecCredential apiVersion {api_version!r}")
    return ExecInfo(api_version, interactive)


def exec_credential(token: str, api_version: str = EXEC_API_VERSIONS[0]) -> str:
    """The JSON kubectl expects on stdout."""
    body = {"apiVersion": api_version, "kind": "ExecCredential", "status": {"token": token}}
    return json.dumps(body)


def open_store_for_plugin(interactive: bool) -> SecretStore:
    """The keyring if usable; else the encrypted file, if a terminal can give a passphrase."""
    backend, state = probe_keyring()
    if backend is not None and state.kind in (StateKind.SECURE, StateKind.LOCKED):
        return keyring_store(backend, state)
    path = default_secrets_file()
    if not path.exists():
        raise SecretBackendUnavailable(f"no secure keyring ({state.detail}) and no {path}")
    if not interactive:
        raise SecretBackendUnavailable(
            f"the token is in the passphrase-encrypted {path}, and kubectl runs this plugin "
            "without a terminal (set interactiveMode: IfAvailable, or unlock a keyring)"
        )
    try:
        passphrase = getpass.getpass(f"Passphrase for {path}: ", stream=sys.stderr)
    except (EOFError, KeyboardInterrupt):
        raise SecretStoreError(f"no passphrase was given for {path}") from None
    return encrypted_file_store(passphrase, path, state.detail)


def run(args: argparse.Namespace) -> int:
    info = parse_exec_info(os.environ.get("KUBERNETES_EXEC_INFO"), sys.stdin.isatty())
    try:
        store = open_store_for_plugin(info.interactive)
        token = store.get_sync(upstream_token_key(args.cluster))
    except SecretStoreError as exc:
        print(
            f"wicket credential: cannot read the token of {args.cluster!r}: {exc}", file=sys.stderr
        )
        return 1
    if not token:
        print(
            f"wicket credential: no token stored for cluster {args.cluster!r} "
            f"({store.state.describe()}); connect it again in Wicket",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(exec_credential(token, info.api_version) + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        sub,
        "credential",
        __doc__,
        help="kubectl exec credential plugin: print a cluster's token as an ExecCredential",
    )
    parser.add_argument("--cluster", required=True, help="the Wicket cluster name")
    parser.set_defaults(func=run)
