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

The relay bundle (:func:`build_relay_bundle`, ``wicket relay-bundle``) runs the relay
itself in a cluster, with the same pod hardening and the same code: its state (CA, keys,
token registry) on a PVC, one replica with Recreate for the same reasons, a Service of
type LoadBalancer for the relay port and the public endpoints' ports, and a
PodDisruptionBudget.

With ``store_secret`` (``--store-secret``; ``--replicas N``) it runs a relay fleet
instead: N members on the user's PostgreSQL (its URL, without the password, and the
password, from that Secret's ``url`` and ``password`` keys: as an env var expanded into
``--store`` and as libpq's ``PGPASSWORD``, never in the manifest or argv), each
advertising its pod IP (downward API) to the agents. The registry and the fleet's CA are
in the database, so the state dir is an ``emptyDir`` (no ReadWriteOnce volume): the
members are interchangeable, spread over nodes (preferred anti-affinity), and replaced
with RollingUpdate, one new member up and ready before an old one stops (``maxSurge``
1, ``maxUnavailable`` 0: the fleet keeps N members through a rollout; an old member's
clean stop takes it off the member list, and the agents' sessions to it move). The
CA key file (``--ca-key-secret``) is copied to a memory ``emptyDir`` as 0600 by an init
container: the relay refuses a key file that others may read, and a Secret volume is
always group-readable (0440 with ``fsGroup``) or root's.
"""

from __future__ import annotations

import enum
import io
import ipaddress
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
RELAY_NAME = "wicket-relay"
RELAY_PORT = 7443
#: Public endpoint ports one bundle may expose (a Service lists each port).
MAX_PUBLIC_PORTS = 100
TOKEN_DIR = "/etc/wicket"  # noqa: S105 (a mount path)
STATE_DIR = "/var/lib/wicket"
#: Where a fleet member reads the CA key file (a 0600 copy of the Secret's ``key``).
CA_KEY_DIR = "/var/run/wicket/ca-key"
CA_KEY_SECRET_DIR = "/var/run/wicket/ca-key-secret"  # noqa: S105 (a mount path)
#: The env vars a fleet member's arguments use (``$(NAME)``: expanded by the kubelet).
STORE_URL_ENV = "WICKET_STORE_URL"
POD_IP_ENV = "POD_IP"
#: Members at most in one bundle (the control protocol lists at most 64).
MAX_REPLICAS = 64
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
class Bundle:
    """Manifests in apply order, and the equivalent command outside Kubernetes."""

    manifests: list[dict[str, Any]]
    command: list[str] = field(default_factory=list)
    what: str = "agent"

    def command_line(self) -> str:
        return shlex.join(self.command)

    def to_yaml(self) -> str:
        """Multi-document YAML for ``kubectl apply -f -``, headed by the plain command."""
        out = io.StringIO()
        out.write(f"# Wicket {self.what} bundle. Apply with: kubectl apply -f <this file>\n")
        out.write(f"# Outside Kubernetes run: {self.command_line()}\n")
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        yaml.representer.ignore_aliases = lambda _data: True  # no &id001 anchors
        yaml.dump_all(self.manifests, out)
        return out.getvalue()


AgentBundle = Bundle


def _labels(cluster: str, name: str = NAME) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
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


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
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
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
        ],
    }


def _state_claim(
    namespace: str,
    labels: dict[str, str],
    storage_class: str | None,
    name: str = NAME,
    size: str = "64Mi",  # provisioners round up
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-state", "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def _selector(labels: dict[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def _pod_spec(name: str, container: dict[str, Any], volumes: list[Any]) -> dict[str, Any]:
    """Non-root, no service-account token, seccomp ``RuntimeDefault``: every Wicket pod."""
    return {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    }


def _one_replica(
    name: str, namespace: str, labels: dict[str, str], pod: dict[str, Any]
) -> dict[str, Any]:
    """A Deployment of one pod, replaced with Recreate (its state is a RWO volume)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(labels)},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _deployment(cluster: str, namespace: str, image: str, state: StateVolume) -> dict[str, Any]:
    state_source: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": f"{NAME}-state"}}
        if state is StateVolume.PVC
        else {"emptyDir": {"sizeLimit": "16Mi"}}
    )
    volumes = [
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
    ]
    pod = _pod_spec(NAME, _container(image), volumes)
    return _one_replica(NAME, namespace, _labels(cluster), pod)


def _namespace_and_account(
    namespace: str, name: str, labels: dict[str, str]
) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "automountServiceAccountToken": False,
        },
    ]


def _check_storage_class(storage_class: str | None) -> None:
    if storage_class is not None and not _DNS_SUBDOMAIN.fullmatch(storage_class):
        raise ConfigError(f"storage class {storage_class!r} is not a valid name")


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
    _check_storage_class(storage_class)
    labels = _labels(cluster)
    namespace_doc, account = _namespace_and_account(namespace, NAME, labels)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{NAME}-join", "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "stringData": {"token": token},
    }
    manifests: list[dict[str, Any]] = [namespace_doc, secret, account]
    if state is StateVolume.PVC:
        manifests.append(_state_claim(namespace, labels, storage_class))
    manifests.append(_deployment(cluster, namespace, image, state))
    command = [
        "wicket",
        *agent_args("./wicket-join-token", "APISERVER_HOST:6443", "./wicket-agent-state"),
    ]
    return Bundle(manifests, command)


# -- the relay -----------------------------------------------------------------------


@dataclass(frozen=True)
class RelayOptions:
    """What ``wicket relay-bundle`` sets; the defaults make a relay on 7443 with no public
    endpoints."""

    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    storage_class: str | None = None
    port: int = RELAY_PORT
    server_names: tuple[str, ...] = ()
    public_ports: tuple[int, ...] = ()
    #: Members of a fleet (more than 1 needs ``store_secret``).
    replicas: int = 1
    #: A Secret with the store's ``url`` (no password in it) and ``password``: a fleet.
    store_secret: str | None = None
    #: A Secret whose ``key`` seals the fleet CA's private key (``--ca-key-file``).
    ca_key_secret: str | None = None

    @property
    def fleet(self) -> bool:
        return self.store_secret is not None


def relay_args(state_dir: str, port: int, public: bool, server_names: tuple[str, ...]) -> list[str]:
    """``wicket relay``'s arguments (the same options its ``--help`` lists)."""
    args = ["relay", "--state-dir", state_dir, "--listen", f"0.0.0.0:{port}"]
    if public:
        args += ["--public-host", "0.0.0.0"]
    for name in server_names:
        args += ["--server-name", name]
    return args


def fleet_args(options: RelayOptions, store: str, advertise: str, ca_key: str | None) -> list[str]:
    """A fleet member's arguments beyond ``relay_args``: its store, the address it
    advertises to agents, and the CA key file if the CA key is sealed."""
    args = ["--store", store, "--advertise", advertise]
    return args + (["--ca-key-file", ca_key] if ca_key else [])


def parse_port_range(text: str) -> tuple[int, ...]:
    """``A-B`` (inclusive) as ports; ConfigError for a bad or too long range."""
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise ConfigError(f"{text!r} is not a port range (FIRST-LAST, e.g. 30000-30009)")
    return tuple(range(int(first), int(last) + 1))


def _check_relay(options: RelayOptions) -> None:
    ports = (options.port, *options.public_ports)
    for port in ports:
        if not 1024 <= port <= 65535:
            raise ConfigError(
                f"port {port}: the relay runs without capabilities, so its ports are 1024-65535"
            )
    if len(set(ports)) != len(ports):
        raise ConfigError("the relay port and the public ports must all differ")
    if len(options.public_ports) > MAX_PUBLIC_PORTS:
        raise ConfigError(f"at most {MAX_PUBLIC_PORTS} public ports in one bundle")
    for name in options.server_names:
        if not _DNS_SUBDOMAIN.fullmatch(name.lower()) and not _is_ip(name):
            raise ConfigError(f"server name {name!r} is neither a DNS name nor an IP address")
    _check_fleet(options)


def _check_fleet(options: RelayOptions) -> None:
    if not 1 <= options.replicas <= MAX_REPLICAS:
        raise ConfigError(f"--replicas {options.replicas}: 1 to {MAX_REPLICAS}")
    if not options.fleet:
        if options.replicas > 1:
            raise ConfigError(
                "--replicas above 1 is a relay fleet: it needs --store-secret (the members "
                "share their registry in PostgreSQL)"
            )
        if options.ca_key_secret is not None:
            raise ConfigError("--ca-key-secret is for a fleet's store: give --store-secret")
        return
    if options.storage_class is not None:
        raise ConfigError("--storage-class: a fleet keeps its state in the store, no volume")
    for secret in (options.store_secret, options.ca_key_secret):
        if secret is not None and not _DNS_SUBDOMAIN.fullmatch(secret):
            raise ConfigError(f"secret name {secret!r} is not a valid name (DNS-1123)")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _relay_container(options: RelayOptions) -> dict[str, Any]:
    public = bool(options.public_ports)
    ports = [{"name": "relay", "containerPort": options.port, "protocol": "TCP"}]
    ports += [{"containerPort": p, "protocol": "TCP"} for p in options.public_ports]
    probe = {"tcpSocket": {"port": "relay"}, "timeoutSeconds": 5}
    args = relay_args(STATE_DIR, options.port, public, options.server_names)
    env: list[dict[str, Any]] = [{"name": "HOME", "value": STATE_DIR}]
    mounts: list[dict[str, Any]] = []
    if options.fleet:
        ca_key = f"{CA_KEY_DIR}/key" if options.ca_key_secret else None
        advertise = f"$({POD_IP_ENV}):{options.port}"
        args += fleet_args(options, f"$({STORE_URL_ENV})", advertise, ca_key)
        env += _fleet_env(options)
        if ca_key:
            mounts.append({"name": "ca-key", "mountPath": CA_KEY_DIR, "readOnly": True})
    return {
        "name": "relay",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "ports": ports,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 20,
                          "failureThreshold": 3},
        "readinessProbe": {**probe, "initialDelaySeconds": 2, "periodSeconds": 10,
                           "failureThreshold": 2},
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
            *mounts,
        ],
    }  # fmt: skip


def _fleet_env(options: RelayOptions) -> list[dict[str, Any]]:
    """The pod IP (downward API) and the store's URL and password (the Secret)."""
    secret = options.store_secret

    def from_secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    return [
        {"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        from_secret(STORE_URL_ENV, "url"),
        from_secret("PGPASSWORD", "password"),  # libpq reads it; never in argv
    ]


def _ca_key_copier(options: RelayOptions) -> dict[str, Any]:
    """An init container that copies the CA key from its Secret as a 0600 file of the
    relay's user (the relay refuses a key file others may read)."""
    return {
        "name": "ca-key",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["install", "-m", "0600", f"{CA_KEY_SECRET_DIR}/key", f"{CA_KEY_DIR}/key"],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "32Mi"},
        },
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "ca-key-secret", "mountPath": CA_KEY_SECRET_DIR, "readOnly": True},
            {"name": "ca-key", "mountPath": CA_KEY_DIR},
        ],
    }


def _fleet_pod(options: RelayOptions, labels: dict[str, str]) -> dict[str, Any]:
    """A member's pod: state in an emptyDir, spread over nodes, the CA key copied."""
    volumes: list[dict[str, Any]] = [{"name": "state", "emptyDir": {"sizeLimit": "64Mi"}}]
    if options.ca_key_secret:
        volumes += [
            {
                "name": "ca-key-secret",
                "secret": {
                    "secretName": options.ca_key_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": "key", "path": "key"}],
                },
            },
            {"name": "ca-key", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ]
    pod = _pod_spec(RELAY_NAME, _relay_container(options), volumes)
    if options.ca_key_secret:
        pod["initContainers"] = [_ca_key_copier(options)]
    term = {"labelSelector": {"matchLabels": _selector(labels)},
            "topologyKey": "kubernetes.io/hostname"}  # fmt: skip
    pod["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }
    return pod


def _fleet_deployment(options: RelayOptions, labels: dict[str, str]) -> dict[str, Any]:
    """N interchangeable members, rolled one at a time with a new one ready first."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": RELAY_NAME, "namespace": options.namespace, "labels": labels},
        "spec": {
            "replicas": options.replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": _selector(labels)},
            "template": {"metadata": {"labels": labels}, "spec": _fleet_pod(options, labels)},
        },
    }


def _relay_service(options: RelayOptions, labels: dict[str, str]) -> dict[str, Any]:
    ports = [{"name": "relay", "port": options.port, "targetPort": "relay", "protocol": "TCP"}]
    ports += [
        {"name": f"public-{p}", "port": p, "targetPort": p, "protocol": "TCP"}
        for p in options.public_ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": RELAY_NAME, "namespace": options.namespace, "labels": labels},
        "spec": {
            "type": "LoadBalancer",
            # the relay sees each client's own address (--public-allow, per-source limits)
            "externalTrafficPolicy": "Local",
            "selector": _selector(labels),
            "ports": ports,
        },
    }


def _disruption_budget(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """At most one relay pod down for a voluntary disruption: ``minAvailable: 1``
    would block every node drain of a lone relay, since a second relay cannot start
    while the first holds the ReadWriteOnce state volume; a fleet's drains go one member
    at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": RELAY_NAME, "namespace": namespace, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(labels)}},
    }


def build_relay_bundle(options: RelayOptions) -> Bundle:
    """Manifests for the relay, in apply order: Namespace, ServiceAccount, the state PVC,
    the Deployment, the LoadBalancer Service and the PodDisruptionBudget."""
    _check_inputs(RELAY_NAME, options.namespace, options.image)
    _check_storage_class(options.storage_class)
    _check_relay(options)
    labels = _labels(RELAY_NAME, RELAY_NAME)
    if options.fleet:
        workload = [_fleet_deployment(options, labels)]
    else:
        claim = _state_claim(options.namespace, labels, options.storage_class, RELAY_NAME, "256Mi")
        claim_name = {"claimName": f"{RELAY_NAME}-state"}
        volumes = [{"name": "state", "persistentVolumeClaim": claim_name}]
        pod = _pod_spec(RELAY_NAME, _relay_container(options), volumes)
        workload = [claim, _one_replica(RELAY_NAME, options.namespace, labels, pod)]
    manifests = [
        *_namespace_and_account(options.namespace, RELAY_NAME, labels),
        *workload,
        _relay_service(options, labels),
        _disruption_budget(options.namespace, labels),
    ]
    args = relay_args("./wicket-relay-state", options.port, bool(options.public_ports),
                      options.server_names)  # fmt: skip
    if options.fleet:  # each member: the same store, its own address
        key = "./ca-key" if options.ca_key_secret else None
        args += fleet_args(options, "postgresql://USER@HOST:5432/DATABASE",
                           f"THIS-HOST:{options.port}", key)  # fmt: skip
    return Bundle(manifests, ["wicket", *args], what="relay")
