"""What Wicket wants in a kubeconfig, as plain data (no YAML, no I/O).

A cluster gets the context ``wicket-<name>`` (the local tunnel endpoint) and, when the
cluster has a public endpoint, ``wicket-<name>-public``, each with a cluster entry of the
same name. Every entry carries an ownership marker in its ``extensions``: a name prefix
alone is not proof, because a user may have written a ``wicket-`` entry by hand, and
Wicket must never overwrite what it did not write.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509

from core.errors import KubeconfigError
from core.mode import Mode

PREFIX = "wicket-"
OWNER_EXTENSION = "wicket.dev/owner"
EXEC_API_VERSION = "client.authentication.k8s.io/v1"

Kind = Literal["clusters", "contexts", "users"]
#: The key holding each entry's body, per list.
BODY_KEY: Mapping[Kind, str] = {"clusters": "cluster", "contexts": "context", "users": "user"}
KINDS: tuple[Kind, ...] = ("clusters", "contexts", "users")

_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_DNS_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


@dataclass(frozen=True)
class UserRef:
    """Use an existing user entry (e.g. a client-certificate user) by name."""

    name: str


@dataclass(frozen=True)
class ExecCredential:
    """A Wicket-owned exec plugin user that runs ``<command> credential --cluster NAME``.

    The secret stays in the OS keyring; the kubeconfig only names the command. Its
    ``interactiveMode: IfAvailable`` lets kubectl hand the plugin its terminal when it has
    one, and say so (``spec.interactive``), so the plugin may ask for the encrypted file's
    passphrase there; run from a GUI or a script, kubectl says no and the plugin never asks.
    """

    command: str


Credentials = UserRef | ExecCredential


@dataclass(frozen=True)
class ClusterSpec:
    """Everything Wicket writes for one cluster.

    ``ca_pem`` is the cluster's CA in passthrough mode and Wicket's CA in inspect mode;
    either way it is the CA the client must trust at ``127.0.0.1:<port>``.
    """

    name: str
    port: int
    ca_pem: bytes
    tls_server_name: str
    credentials: Credentials
    mode: Mode = Mode.PASSTHROUGH
    public_server: str | None = None

    def __post_init__(self) -> None:
        check_cluster_name(self.name)
        if not 0 < self.port < 65536:
            raise KubeconfigError(f"port {self.port} is out of range")
        if not _HOST.fullmatch(self.tls_server_name):
            raise KubeconfigError(f"invalid tls-server-name {self.tls_server_name!r}")
        try:
            x509.load_pem_x509_certificates(self.ca_pem)
        except ValueError as exc:
            raise KubeconfigError(f"the CA is not a PEM certificate: {exc}") from None
        if self.public_server is not None:
            problem = public_server_problem(self.public_server)
            if problem is not None:
                raise KubeconfigError(f"public server {self.public_server!r}: {problem}")
        creds = self.credentials
        if isinstance(creds, ExecCredential) and not os.path.isabs(creds.command):
            raise KubeconfigError(f"exec command must be an absolute path: {creds.command!r}")
        if isinstance(creds, UserRef) and not creds.name:
            raise KubeconfigError("the user reference is empty")


@dataclass(frozen=True)
class Entry:
    """One named entry of a kubeconfig list, with its body as plain data."""

    kind: Kind
    name: str
    body: dict[str, Any]


def check_cluster_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise KubeconfigError(
            f"invalid cluster name {name!r}: letters, digits, '.', '_', '-'; at most 63"
        )


def public_server_problem(url: str) -> str | None:
    """Why ``url`` cannot be a cluster's public server, or None if it can.

    A relay's public endpoint is a TCP port in front of the apiserver, so the URL is
    ``https://HOST`` or ``https://HOST:PORT`` and nothing more: a path, query, fragment or
    user name would mean nothing to it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if url != url.strip() or parts.scheme != "https":
        return "not an https:// URL"
    host = parts.hostname
    if not host:
        return "no host in it"
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        return "only https://HOST[:PORT] (no user, path, query or fragment)"
    if port == 0:
        return "port 0 is not a port"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _DNS_NAME.fullmatch(host):
            return f"{host!r} is not a host name or IP address"
    return None


def context_names(name: str) -> tuple[str, str]:
    """The local and public context names of a cluster."""
    return f"{PREFIX}{name}", f"{PREFIX}{name}-public"


def candidate_names(name: str) -> dict[Kind, tuple[str, ...]]:
    """Every entry name Wicket may own for a cluster, whatever the spec says now."""
    local, public = context_names(name)
    return {"clusters": (local, public), "contexts": (local, public), "users": (local,)}


def owner_marker(cluster: str, mode: Mode) -> dict[str, Any]:
    """The ``extensions`` item that makes an entry Wicket's (see :func:`owner_of`)."""
    return {
        "name": OWNER_EXTENSION,
        "extension": {"managed-by": "wicket", "cluster": cluster, "mode": mode.value},
    }


def marker(spec: ClusterSpec) -> dict[str, Any]:
    return owner_marker(spec.name, spec.mode)


def owner_of(entry_name: str, body: Mapping[str, Any] | None) -> str | None:
    """The Wicket cluster owning an entry, or ``None`` for a foreign entry."""
    if not entry_name.startswith(PREFIX) or not isinstance(body, Mapping):
        return None
    extensions = body.get("extensions")
    if not isinstance(extensions, list):
        return None
    for ext in extensions:
        if not isinstance(ext, Mapping) or ext.get("name") != OWNER_EXTENSION:
            continue
        value = ext.get("extension")
        if isinstance(value, Mapping) and value.get("managed-by") == "wicket":
            cluster = value.get("cluster")
            return cluster if isinstance(cluster, str) else None
    return None


def desired_entries(spec: ClusterSpec) -> tuple[Entry, ...]:
    """The entries a spec asks for; anything else Wicket owns for it goes away."""
    local, public = context_names(spec.name)
    ca_data = base64.b64encode(spec.ca_pem).decode("ascii")
    endpoints = [(local, f"https://127.0.0.1:{spec.port}")]
    if spec.public_server is not None:
        endpoints.append((public, spec.public_server))
    creds = spec.credentials
    user = local if isinstance(creds, ExecCredential) else creds.name
    entries: list[Entry] = []
    for name, server in endpoints:
        cluster = {
            "server": server,
            "certificate-authority-data": ca_data,
            "tls-server-name": spec.tls_server_name,
            "extensions": [marker(spec)],
        }
        context = {"cluster": name, "user": user, "extensions": [marker(spec)]}
        entries += [Entry("clusters", name, cluster), Entry("contexts", name, context)]
    if isinstance(creds, ExecCredential):
        exec_ = {
            "apiVersion": EXEC_API_VERSION,
            "command": creds.command,
            "args": ["credential", "--cluster", spec.name],
            "interactiveMode": "IfAvailable",
            "provideClusterInfo": False,
        }
        entries.append(Entry("users", local, {"exec": exec_, "extensions": [marker(spec)]}))
    return tuple(entries)


@dataclass(frozen=True)
class ContextInfo:
    """A context of the merged view; ``wicket_cluster`` is set on Wicket's own."""

    name: str
    cluster: str
    user: str
    namespace: str
    server: str | None
    source: str
    wicket_cluster: str | None


@dataclass(frozen=True)
class MergedView:
    """The kubeconfig as kubectl sees it: first definition of each name wins."""

    files: tuple[str, ...]
    contexts: tuple[ContextInfo, ...]
    current_context: str
    current_context_source: str | None
    cluster_sources: Mapping[str, str]
    user_sources: Mapping[str, str]

    def context(self, name: str) -> ContextInfo | None:
        return next((ctx for ctx in self.contexts if ctx.name == name), None)
