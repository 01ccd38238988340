"""Prefill for the wizard: what a private cluster's own kubeconfig says about it.

A user who has an admin kubeconfig for the private cluster already has the apiserver
address, its CA and often a token; the wizard reads them from it (in a worker thread)
so nobody retypes a CA. Only the file the user picked is read, never written.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from core.errors import KubeconfigError
from core.service import host_port


@dataclass(frozen=True)
class SourceContext:
    """One context of the private cluster's kubeconfig, resolved to what Wicket needs."""

    name: str
    server: str
    target: str  # host:port the agent dials
    ca_pem: bytes | None
    tls_server_name: str
    token: str | None


def _by_name(doc: dict[str, Any], kind: str, body: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in doc.get(kind) or []:
        if isinstance(item, dict) and isinstance(item.get(body), dict):
            out.setdefault(str(item.get("name")), item[body])
    return out


def _target(server: str) -> tuple[str, str]:
    url = urlsplit(server)
    if url.scheme != "https" or not url.hostname:
        raise KubeconfigError(f"server {server!r} is not an https URL")
    host = url.hostname
    port = url.port or 443
    return host_port(host, port), host


def read_source_kubeconfig(path: Path) -> tuple[list[SourceContext], str]:
    """The file's contexts and its current context (raises ``KubeconfigError``)."""
    path = path.expanduser()
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read: {exc.strerror}") from None
    except YAMLError as exc:
        raise KubeconfigError(f"{path}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig")
    clusters = _by_name(doc, "clusters", "cluster")
    users = _by_name(doc, "users", "user")
    out = []
    for name, ctx in _by_name(doc, "contexts", "context").items():
        cluster = clusters.get(str(ctx.get("cluster")))
        if cluster is None or not cluster.get("server"):
            continue
        server = str(cluster["server"])
        try:
            target, host = _target(server)
        except KubeconfigError:
            continue
        out.append(
            SourceContext(
                name,
                server,
                target,
                _ca(cluster, path.parent),
                str(cluster.get("tls-server-name") or host),
                _token(users.get(str(ctx.get("user"))), path.parent),
            )
        )
    if not out:
        raise KubeconfigError(f"{path}: no context with an https server")
    return out, str(doc.get("current-context") or "")


def _ca(cluster: dict[str, Any], base: Path) -> bytes | None:
    data = cluster.get("certificate-authority-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError("certificate-authority-data is not base64") from None
    file = cluster.get("certificate-authority")
    if file:
        return (base / os.path.expanduser(str(file))).read_bytes()
    return None


def _token(user: dict[str, Any] | None, base: Path) -> str | None:
    if not user:
        return None
    if user.get("token"):
        return str(user["token"])
    file = user.get("tokenFile")
    if file:
        return (base / str(file)).read_text().strip() or None
    return None
