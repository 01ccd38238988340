"""The relay bundle: valid manifests, the relay's container arguments exactly what
``wicket relay`` accepts (parsed by the real argparse), a locked-down pod whose state
survives reschedules, a LoadBalancer for the relay and public ports, and a PDB."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from core.cli import build_parser
from core.errors import ConfigError
from core.kube.bundle import RelayOptions, build_relay_bundle, parse_port_range
from core.registry.location import StoreLocation
from tests.support.cli import run_wicket

pytestmark = pytest.mark.timeout(30)
K8S_VERSION = "1.32"
PUBLIC = RelayOptions(
    namespace="tunnels",
    image="registry.local/wicket:1",
    storage_class="fast-ssd",
    port=8443,
    server_names=("relay.example.com", "203.0.113.7"),
    public_ports=(30000, 30001, 30002),
)


def kinds(options: RelayOptions) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in build_relay_bundle(options).manifests}


def relay_container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("options", [RelayOptions(), PUBLIC], ids=["defaults", "public"])
def test_manifests_validate_against_the_kubernetes_schema(options: RelayOptions) -> None:
    docs = [d for d in YAML(typ="safe").load_all(build_relay_bundle(options).to_yaml()) if d]
    assert [d["kind"] for d in docs] == [
        "Namespace", "ServiceAccount", "PersistentVolumeClaim", "Deployment", "Service",
        "PodDisruptionBudget",
    ]  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("options", [RelayOptions(), PUBLIC], ids=["defaults", "public"])
def test_the_container_runs_a_real_relay_command_line(options: RelayOptions) -> None:
    docs = kinds(options)
    container = relay_container(docs)
    args = build_parser().parse_args(container["args"])  # SystemExit on an unknown flag
    assert (args.command, args.relay_command) == ("relay", None)
    assert args.listen == f"0.0.0.0:{options.port}"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.state_dir) == mounts["state"]
    assert args.server_name == list(options.server_names)
    assert args.public_host == ("0.0.0.0" if options.public_ports else None)
    assert build_relay_bundle(options).command[1:] == [
        "./wicket-relay-state" if a == mounts["state"] else a for a in container["args"]
    ]


def test_the_pod_is_locked_down_and_keeps_its_state() -> None:
    docs = kinds(PUBLIC)
    spec = docs["Deployment"]["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert docs["ServiceAccount"]["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = relay_container(docs)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] != 0
    assert set(container["resources"]) == {"requests", "limits"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "relay"}
    claim = docs["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    for doc in docs.values():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "tunnels"


def test_the_service_and_the_budget_select_the_relay_pod() -> None:
    docs = kinds(PUBLIC)
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = docs["Service"]["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["selector"].items() <= pod_labels.items()
    container_ports = {p["containerPort"] for p in relay_container(docs)["ports"]}
    assert [p["port"] for p in service["ports"]] == [8443, 30000, 30001, 30002]
    assert {p["port"] for p in service["ports"]} == container_ports
    assert service["ports"][0]["targetPort"] == "relay"
    budget = docs["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] == 1  # minAvailable 1 would block every node drain
    no_public = kinds(RelayOptions())["Service"]["spec"]["ports"]
    assert [p["port"] for p in no_public] == [7443]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (RelayOptions(port=443), "ports are 1024-65535"),
        (RelayOptions(public_ports=(7443,)), "must all differ"),
        (RelayOptions(public_ports=tuple(range(20000, 20101))), "at most 100"),
        (RelayOptions(server_names=("relay example",)), "neither a DNS name"),
        (RelayOptions(namespace="Tunnels"), "DNS-1123"),
        (RelayOptions(storage_class="bad class"), "storage class"),
        (RelayOptions(image="reg/img:1 --privileged"), "image reference"),
    ],
)
def test_bad_options_are_refused(options: RelayOptions, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        build_relay_bundle(options)


def test_port_ranges() -> None:
    assert parse_port_range("30000-30002") == (30000, 30001, 30002)
    for bad in ("30002-30000", "30000", "a-b", "-1-2"):
        with pytest.raises(ConfigError, match="not a port range"):
            parse_port_range(bad)


def test_cli(tmp_path: Path) -> None:
    proc = run_wicket(
        "relay-bundle", "--namespace", "wk", "--public-port-range", "30000-30001",
        "--public-port", "30005", "--server-name", "relay.example.com", "--port", "9443",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = {d["kind"]: d for d in YAML(typ="safe").load_all(proc.stdout) if d}
    ports = [p["port"] for p in docs["Service"]["spec"]["ports"]]
    assert ports == [9443, 30000, 30001, 30005]
    assert docs["Deployment"]["metadata"]["namespace"] == "wk"
    assert proc.stdout.startswith("# Wicket relay bundle.")
    bad = run_wicket("relay-bundle", "--port", "80")
    assert bad.returncode == 1 and "1024-65535" in bad.stderr and bad.stdout == ""


# -- a relay fleet (--replicas, --store-secret, --ca-key-secret) ----------------------

FLEET = RelayOptions(
    namespace="tunnels",
    server_names=("relay.example.com",),
    public_ports=(30000,),
    replicas=3,
    store_secret="wicket-db",
    ca_key_secret="wicket-ca-key",
)
URL = "postgresql://wicket@db.example:5432/wicket"
POD_IP = "10.1.2.3"


def expanded(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The container's args as the kubelet runs them: ``$(NAME)`` replaced by the value
    of env var NAME (here: what the Secret and the downward API would give)."""
    declared = {e["name"] for e in container["env"]}
    for name in re.findall(r"\$\((\w+)\)", " ".join(container["args"])):
        assert name in declared, f"$({name}) is not a declared env var"

    def value(match: re.Match[str]) -> str:
        return env[match.group(1)]

    return [re.sub(r"\$\((\w+)\)", value, arg) for arg in container["args"]]


@pytest.mark.parametrize(
    "options",
    [FLEET, dataclasses.replace(FLEET, replicas=1, ca_key_secret=None)],
    ids=["three-members", "one-on-postgresql"],
)
def test_a_fleets_manifests_validate_and_keep_no_state_volume(options: RelayOptions) -> None:
    docs = [d for d in YAML(typ="safe").load_all(build_relay_bundle(options).to_yaml()) if d]
    assert [d["kind"] for d in docs] == [
        "Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget",
    ]  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    text = build_relay_bundle(options).to_yaml()
    assert "persistentVolumeClaim" not in text and "ReadWriteOnce" not in text
    pod = kinds(options)["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(volumes["state"]) == {"name", "emptyDir"}  # the registry is in the store


def test_a_fleet_member_runs_a_real_relay_command_line_on_the_store() -> None:
    docs = kinds(FLEET)
    container = relay_container(docs)
    args = build_parser().parse_args(
        expanded(container, {"WICKET_STORE_URL": URL, "POD_IP": POD_IP})
    )
    assert (args.command, args.relay_command) == ("relay", None)
    assert (args.store, args.advertise) == (URL, f"{POD_IP}:7443")
    assert args.store_password_file is None  # libpq's PGPASSWORD, from the Secret
    assert StoreLocation(args.store).url == URL  # a URL with a password would be refused
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.ca_key_file) == f"{mounts['ca-key']}/key"
    assert str(args.state_dir) == mounts["state"]
    assert args.public_host == "0.0.0.0" and args.server_name == ["relay.example.com"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["WICKET_STORE_URL"] == {"secretKeyRef": {"name": "wicket-db", "key": "url"}}
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "wicket-db", "key": "password"}}
    command = build_relay_bundle(FLEET).command
    assert build_parser().parse_args(command[1:]).store.startswith("postgresql://")


def test_a_fleet_is_spread_rolled_with_a_new_member_first_and_copies_its_ca_key() -> None:
    docs = kinds(FLEET)
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # fmt: skip
    pod_labels = spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    (preferred,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    # The CA key: from the Secret to a memory emptyDir, 0600, by the relay's own user.
    (init,) = pod["initContainers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ca-key-secret"]["secret"]["secretName"] == "wicket-ca-key"
    assert volumes["ca-key"]["emptyDir"]["medium"] == "Memory"
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert init["command"] == ["install", "-m", "0600", f"{init_mounts['ca-key-secret']}/key",
                               f"{init_mounts['ca-key']}/key"]  # fmt: skip
    assert init["securityContext"]["runAsUser"] == pod["securityContext"]["runAsUser"]
    relay_mounts = {m["name"]: m for m in relay_container(docs)["volumeMounts"]}
    assert relay_mounts["ca-key"]["mountPath"] == init_mounts["ca-key"]
    assert relay_mounts["ca-key"]["readOnly"] is True and "ca-key-secret" not in relay_mounts
    without_key = kinds(dataclasses.replace(FLEET, ca_key_secret=None))
    without = without_key["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in without
    assert "--ca-key-file" not in relay_container(without_key)["args"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (RelayOptions(replicas=2), "needs --store-secret"),
        (RelayOptions(ca_key_secret="k"), "give --store-secret"),
        (dataclasses.replace(FLEET, storage_class="fast"), "no volume"),
        (dataclasses.replace(FLEET, store_secret="Bad_Name"), "not a valid name"),
        (dataclasses.replace(FLEET, replicas=0), "1 to 64"),
        (dataclasses.replace(FLEET, replicas=65), "1 to 64"),
    ],
)
def test_bad_fleet_options_are_refused(options: RelayOptions, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        build_relay_bundle(options)


def test_fleet_cli() -> None:
    proc = run_wicket("relay-bundle", "--replicas", "3", "--store-secret", "wicket-db",
                      "--ca-key-secret", "wicket-ca-key")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = {d["kind"]: d for d in YAML(typ="safe").load_all(proc.stdout) if d}
    assert docs["Deployment"]["spec"]["replicas"] == 3
    assert "PersistentVolumeClaim" not in docs
    bad = run_wicket("relay-bundle", "--replicas", "3")
    assert bad.returncode == 1 and "--store-secret" in bad.stderr and bad.stdout == ""
