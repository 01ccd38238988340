"""The agent bundle: manifests that run a Wicket agent inside the private cluster.

The agent only dials out to the relay and forwards bytes to the apiserver, so the pod
gets no Kubernetes API credentials (no service-account token), no capabilities, a
read-only root filesystem and the runtime's default seccomp profile. The join token
lives in a Secret mounted as a file: never in the Deployment, an env var or argv.

The state dir (the agent's enrolled key and certificate) is a small PersistentVolumeClaim
by default. A join token enrolls exactly once (docs/tokens.md), so an ``emptyDir`` would
lose the identity on the first reschedule and the agent could not come back without a
new token. ``StateVolume.EMPTY_DIR`` remains for clusters without a StorageClass, with
that cost (re-run ``wicket agent-bundle`` with a fresh token after a reschedule). One
replica with the Recreate strategy suits both: a ReadWriteOnce volume cannot be shared
during a rolling update, and two agents with one identity would fight over the relay.
"""

from __future__ import annotations

import enum
import io
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML

from core import __version__
from core.errors import ConfigError, TokenError

JOIN_TOKEN_PREFIX = "wicket-join-v1."  # noqa: S105 (a prefix, not a secret)
DEFAULT_NAMESPACE = "wicket-system"
DEFAULT_IMAGE = f"ghcr.io/kubewicket/wicket:{__version__}"
NAME = "wicket-agent"
TOKEN_DIR = "/etc/wicket"  # noqa: S105 (a mount path)
STATE_DIR = "/var/lib/wicket"
TARGET = "kubernetes.default.svc:443"
UID = 10001
_MAX_TOKEN = 4096
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")


class StateVolume(enum.Enum):
    PVC = "pvc"
    """Survives reschedules: the enrolled identity is kept (the default)."""
    EMPTY_DIR = "emptydir"
    """Needs no storage, but a rescheduled agent must enroll again with a new token."""


def parse_join_token(text: str) -> str:
    """The token from a file's text: one line of printable ASCII with the v1 prefix.

    A trailing newline (as editors and ``echo`` leave) is dropped; anything else is a
    :class:`TokenError` whose message never repeats the token.
    """
    token = text[:-1] if text.endswith("\n") else text
    token = token[:-1] if token.endswith("\r") else token
    if not token:
        raise TokenError("the join token is empty")
    if len(token) > _MAX_TOKEN:
        raise TokenError(f"the join token is longer than {_MAX_TOKEN} characters")
    if not _TOKEN_RE.fullmatch(token):
        raise TokenError("the join token must be one line of printable ASCII without spaces")
    if not token.startswith(JOIN_TOKEN_PREFIX) or token == JOIN_TOKEN_PREFIX:
        raise TokenError(f"not a Wicket join token (expected it to start {JOIN_TOKEN_PREFIX!r})")
    return token


def _check_inputs(cluster: str, namespace: str, image: str) -> None:
    if not _DNS_LABEL.fullmatch(namespace):
        raise ConfigError(f"namespace {namespace!r} is not a valid DNS-1123 label")
    if not cluster or not _LABEL_VALUE.fullmatch(cluster):
        raise ConfigError(
            f"cluster name {cluster!r} must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    if len(image) > 512 or not _IMAGE_RE.fullmatch(image):
        raise ConfigError(f"image reference {image!r} is not valid")


@dataclass(frozen=True)
class AgentBundle:
    """Manifests in apply order, and the equivalent command outside Kubernetes."""

    manifests: list[dict[str, Any]]
    command: list[str] = field(default_factory=list)

    def command_line(self) -> str:
        return shlex.join(self.command)

    def to_yaml(self) -> str:
        """Multi-document YAML for ``kubectl apply -f -``, headed by the plain command."""
        out = io.StringIO()
        out.write("# Wicket agent bundle. Apply with: kubectl apply -f <this file>\n")
        out.write(f"# Outside Kubernetes run: {self.command_line()}\n")
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        yaml.representer.ignore_aliases = lambda _data: True  # no &id001 anchors
        yaml.dump_all(self.manifests, out)
        return out.getvalue()


def _labels(cluster: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/managed-by": "wicket",
    }


def agent_args(token_file: str, target: str, state_dir: str) -> list[str]:
    return ["agent", "--token-file", token_file, "--target", target, "--state-dir", state_dir]


def _health_probe(extra: list[str], period: int, failures: int) -> dict[str, Any]:
    """``wicket agent-health`` reads the agent's heartbeat in the state dir (see README)."""
    command = ["wicket", "agent-health", "--state-dir", STATE_DIR, *extra]
    return {
        "exec": {"command": command},
        "initialDelaySeconds": 10,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(image: str) -> dict[str, Any]:
    return {
        "name": "agent",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": agent_args(f"{TOKEN_DIR}/token", TARGET, STATE_DIR),
        "env": [{"name": "HOME", "value": STATE_DIR}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "livenessProbe": _health_probe([], period=20, failures=3),
        "readinessProbe": _health_probe(["--require-connected"], period=10, failures=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
        ],
    }


def _state_claim(
    namespace: str, labels: dict[str, str], storage_class: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "64Mi"}},  # provisioners round up
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{NAME}-state", "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def _deployment(cluster: str, namespace: str, image: str, state: StateVolume) -> dict[str, Any]:
    labels = _labels(cluster)
    selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    state_source: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": f"{NAME}-state"}}
        if state is StateVolume.PVC
        else {"emptyDir": {"sizeLimit": "16Mi"}}
    )
    pod_spec = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(image)],
        "volumes": [
            # 0440 + fsGroup: the agent's group may read the token; others may not.
            {
                "name": "token",
                "secret": {
                    "secretName": f"{NAME}-join",
                    "defaultMode": 0o440,
                    "items": [{"key": "token", "path": "token"}],
                },
            },
            {"name": "state", **state_source},
            {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_agent_bundle(
    token: str,
    cluster: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    image: str = DEFAULT_IMAGE,
    state: StateVolume = StateVolume.PVC,
    storage_class: str | None = None,
) -> AgentBundle:
    """Manifests for one agent, in apply order: Namespace, Secret, ServiceAccount, the
    state PVC (unless ``EMPTY_DIR``) and the Deployment."""
    token = parse_join_token(token)
    _check_inputs(cluster, namespace, image)
    if storage_class is not None and not _DNS_SUBDOMAIN.fullmatch(storage_class):
        raise ConfigError(f"storage class {storage_class!r} is not a valid name")
    labels = _labels(cluster)
    meta = {"namespace": namespace, "labels": labels}
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{NAME}-join", **meta},
            "type": "Opaque",
            "stringData": {"token": token},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, **meta},
            "automountServiceAccountToken": False,
        },
    ]
    if state is StateVolume.PVC:
        manifests.append(_state_claim(namespace, labels, storage_class))
    manifests.append(_deployment(cluster, namespace, image, state))
    command = [
        "wicket",
        *agent_args("./wicket-join-token", "APISERVER_HOST:6443", "./wicket-agent-state"),
    ]
    return AgentBundle(manifests, command)
