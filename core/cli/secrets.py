"""``wicket credential``: the kubectl exec credential plugin.

kubectl runs ``wicket credential --cluster NAME`` (from the ``users[].user.exec`` entry
Wicket writes) and reads an ``ExecCredential`` on stdout. The token never sits in the
kubeconfig, in argv or in the environment. It comes from, in turn: the running Wicket
(app or ``wicket up``) over the credential socket, the keyring, the encrypted file.

``KUBERNETES_EXEC_INFO`` is honoured: the reply uses the apiVersion kubectl asked for,
and ``spec.interactive`` alone decides whether the plugin may ask for the passphrase of
the encrypted file on the terminal (``WICKET_PASSPHRASE_FILE`` works either way). Wicket
writes ``interactiveMode: IfAvailable``, so kubectl says yes when its stdin is a terminal
it does not need itself (and hands it to the plugin), and no otherwise: from a GUI, a
script, a pipe. Run by hand, without ``KUBERNETES_EXEC_INFO``, the plugin asks when its
stdin is a terminal.
Failures go to stderr with exit status 1, name the one thing to do, and never name the
token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from core.cli import add_command
from core.errors import ConfigError, SecretBackendUnavailable, SecretStoreError
from core.secrets import SecretStoreState, encrypted_file_store
from core.secrets.passphrase import passphrase_from_environment
from core.secrets.socket import ask
from core.secrets.store import default_secrets_file, secure_keyring_store, upstream_token_key
from core.secrets.wire import Reply

START_WICKET = "start Wicket (wicket up, or the app) and run kubectl again"
ADD_AGAIN = "add the cluster again (wicket cluster add, or the app's wizard)"

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


def _from_keyring(key: str) -> tuple[str | None, str]:
    """The token in a secure keyring, and what to say when it is not there."""
    store = secure_keyring_store()
    if isinstance(store, SecretStoreState):
        return None, f"no secure keyring ({store.detail})"
    return store.get_sync(key), "not in the keyring"


def _from_file(key: str, path: Path, interactive: bool) -> tuple[str | None, str]:
    """The token in the encrypted file, and what to say when it is not there."""
    if not path.exists():
        return None, f"no {path}"
    passphrase = passphrase_from_environment(path, interactive=interactive)
    if passphrase is None:
        raise SecretBackendUnavailable(
            f"it may be in the passphrase-encrypted {path}, and kubectl gave this plugin no "
            "terminal to ask for its passphrase on: start Wicket (wicket up, or the app), or "
            "run kubectl in a terminal (its user entry needs interactiveMode: IfAvailable, as "
            "Wicket writes it)"
        )
    return encrypted_file_store(passphrase, path).get_sync(key), f"not in {path}"


def _running_said(reply: Reply | None) -> tuple[str, str]:
    """What the running Wicket's answer tells the user, and the one thing to do next."""
    if reply is None:
        return "no running Wicket answered", START_WICKET
    if reply.error is not None:
        return f"the running Wicket answered {reply.error.value!r}", START_WICKET
    return "the running Wicket holds none", ADD_AGAIN


def find_token(cluster: str, interactive: bool) -> tuple[str | None, str]:
    """The token, or None and the message that says where it was sought and what to do."""
    reply = ask(cluster)
    if reply is not None and reply.token:
        return reply.token, ""
    key = upstream_token_key(cluster)
    token, keyring = _from_keyring(key)
    if token:
        return token, ""
    token, file = _from_file(key, default_secrets_file(), interactive)
    if token:
        return token, ""
    running, todo = _running_said(reply)
    return None, f"no token stored for cluster {cluster!r}: {running}, {keyring}, {file}; {todo}"


def run(args: argparse.Namespace) -> int:
    info = parse_exec_info(os.environ.get("KUBERNETES_EXEC_INFO"), sys.stdin.isatty())
    try:
        token, missing = find_token(args.cluster, info.interactive)
    except SecretStoreError as exc:
        print(
            f"wicket credential: cannot read the token of {args.cluster!r}: {exc}", file=sys.stderr
        )
        return 1
    if not token:
        print(f"wicket credential: {missing}", file=sys.stderr)
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
