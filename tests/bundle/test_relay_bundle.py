"""The relay bundle: valid manifests, the relay's container arguments exactly what
``wicket relay`` accepts (parsed by the real argparse), a locked-down pod whose state
survives reschedules, a LoadBalancer for the relay and public ports, and a PDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from core.cli import build_parser
from core.errors import ConfigError
from core.kube.bundle import RelayOptions, build_relay_bundle, parse_port_range
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
