"""The agent bundle: valid manifests, a locked-down pod, the token only in its Secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from core import __version__
from core.errors import ConfigError, TokenError
from core.kube.bundle import DEFAULT_IMAGE, StateVolume, build_agent_bundle, parse_join_token

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).parents[2]
TOKEN = "wicket-join-v1.eyJyZWxheSI6InJlbGF5LmV4YW1wbGUifQ.c2lnbmF0dXJl"
K8S_VERSION = "1.32"


def _docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe", pure=True).load_all(text) if doc is not None]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


@pytest.mark.parametrize("state", list(StateVolume))
def test_manifests_validate_against_the_kubernetes_schema(state: StateVolume) -> None:
    bundle = build_agent_bundle(TOKEN, "prod", state=state, storage_class="fast-ssd")
    docs = _docs(bundle.to_yaml())
    kinds = ["Namespace", "Secret", "ServiceAccount", "PersistentVolumeClaim", "Deployment"]
    if state is StateVolume.EMPTY_DIR:
        kinds.remove("PersistentVolumeClaim")
    assert [d["kind"] for d in docs] == kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_state_survives_reschedules_by_default() -> None:
    """A join token enrolls once, so the enrolled identity must outlive the pod."""
    kinds = _by_kind(build_agent_bundle(TOKEN, "prod").manifests)
    claim = kinds["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"], "the cluster's default class"
    volumes = {v["name"]: v for v in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    no_pvc = _by_kind(build_agent_bundle(TOKEN, "p", state=StateVolume.EMPTY_DIR).manifests)
    assert "PersistentVolumeClaim" not in no_pvc
    pod = no_pvc["Deployment"]["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["state"] == {
        "name": "state",
        "emptyDir": {"sizeLimit": "16Mi"},
    }


def test_pod_is_locked_down() -> None:
    deployment = _by_kind(build_agent_bundle(TOKEN, "prod").manifests)["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["exec"]["command"][:2] == ["wicket", "agent-health"]
    assert container["readinessProbe"]["exec"]["command"][:2] == ["wicket", "agent-health"]
    assert container["args"] == [
        "agent",
        "--token-file",
        "/etc/wicket/token",
        "--target",
        "kubernetes.default.svc:443",
        "--state-dir",
        "/var/lib/wicket",
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["token"]["secret"]["defaultMode"] == 0o440
    service_account = _by_kind(build_agent_bundle(TOKEN, "prod").manifests)["ServiceAccount"]
    assert service_account["automountServiceAccountToken"] is False


def test_token_is_only_in_the_secret() -> None:
    bundle = build_agent_bundle(TOKEN + "\n", "prod", namespace="tunnels", image="reg/w:1")
    assert len(bundle.manifests) == 5
    kinds = _by_kind(bundle.manifests)
    assert kinds["Secret"]["stringData"] == {"token": TOKEN}
    assert kinds["Secret"]["metadata"]["namespace"] == "tunnels"
    for kind, doc in kinds.items():
        if kind != "Secret":
            assert TOKEN not in json.dumps(doc), kind
    assert TOKEN not in bundle.command_line()
    assert bundle.to_yaml().count(TOKEN) == 1
    assert "&id" not in bundle.to_yaml()


def test_default_image_follows_the_version() -> None:
    assert f"ghcr.io/kubewicket/wicket:{__version__}" == DEFAULT_IMAGE
    deployment = _by_kind(build_agent_bundle(TOKEN, "prod").manifests)["Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == DEFAULT_IMAGE


def test_plain_command_for_outside_kubernetes() -> None:
    bundle = build_agent_bundle(TOKEN, "prod")
    assert bundle.command[:2] == ["wicket", "agent"]
    assert "--token-file" in bundle.command
    assert bundle.command_line() in bundle.to_yaml()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "\n",
        "wicket-join-v1.",
        "wicket-join-v2.abc",
        "abc",
        "wicket-join-v1.abc def",
        "wicket-join-v1.abc\nsecond-line",
        "wicket-join-v1.abc\n\n",
        "wicket-join-v1.abc\t",
        "wicket-join-v1.abcé",
        "wicket-join-v1.abc\x00",
        "wicket-join-v1." + "a" * 5000,
        " wicket-join-v1.abc",
    ],
)
def test_bad_tokens_are_rejected_without_echoing_them(bad: str) -> None:
    with pytest.raises(TokenError) as caught:
        parse_join_token(bad)
    if len(bad) > len("wicket-join-v1."):
        assert bad.strip() not in str(caught.value)


def test_crlf_and_newline_endings_are_accepted() -> None:
    assert parse_join_token(TOKEN + "\r\n") == TOKEN
    assert parse_join_token(TOKEN + "\n") == TOKEN


@pytest.mark.parametrize(
    ("cluster", "namespace", "image"),
    [
        ("", "wicket-system", DEFAULT_IMAGE),
        ("bad name", "wicket-system", DEFAULT_IMAGE),
        ("prod", "Wicket_System", DEFAULT_IMAGE),
        ("prod", "wicket-system", "reg/img:1 --privileged"),
    ],
)
def test_bad_names_are_rejected(cluster: str, namespace: str, image: str) -> None:
    with pytest.raises(ConfigError):
        build_agent_bundle(TOKEN, cluster, namespace=namespace, image=image)


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "agent-bundle", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_cli_reads_the_token_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "join-token"
    token_file.write_text(TOKEN + "\n")
    proc = _cli(
        "--token-file", str(token_file), "--cluster", "edge-1", "--namespace", "wk",
        "--state-volume", "emptydir",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kinds = _by_kind(_docs(proc.stdout))
    assert "PersistentVolumeClaim" not in kinds
    assert kinds["Secret"]["stringData"]["token"] == TOKEN
    assert kinds["Deployment"]["metadata"]["namespace"] == "wk"
    assert kinds["Deployment"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "edge-1"


def test_cli_reads_the_token_from_stdin() -> None:
    proc = _cli("--token-file", "-", "--image", "registry.local/wicket:dev", stdin=TOKEN)
    assert proc.returncode == 0, proc.stderr
    kinds = _by_kind(_docs(proc.stdout))
    assert kinds["Secret"]["stringData"]["token"] == TOKEN
    image = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/wicket:dev"


def test_cli_refuses_a_bad_token_and_a_missing_file(tmp_path: Path) -> None:
    proc = _cli("--token-file", "-", stdin="not-a-token-secret-value")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "not a Wicket join token" in proc.stderr
    assert "not-a-token-secret-value" not in proc.stderr
    proc = _cli("--token-file", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert "cannot read the token file" in proc.stderr
    proc = _cli("--token", TOKEN)
    assert proc.returncode == 2, "there is no way to pass the token in argv"
    proc = _cli("--token-file", TOKEN)
    assert proc.returncode == 1
    assert "not the token" in proc.stderr
    assert TOKEN not in proc.stderr


def test_containerfile_lists_every_headless_dependency() -> None:
    """The image installs the wheel with --no-deps, so the core deps are listed by hand."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    containerfile = (ROOT / "packaging" / "Containerfile").read_text()
    gui_only = ("PySide6", "qasync")
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=;\[ ]", requirement, maxsplit=1)[0]
        if name.startswith(gui_only):
            assert f'"{name}' not in containerfile, f"{name} must not be installed"
            continue
        spec = requirement.split(";")[0].strip()
        assert f'"{spec}"' in containerfile, f"{spec} missing from packaging/Containerfile"
    assert "--no-deps" in containerfile
    assert re.search(r"^USER 10001", containerfile, re.MULTILINE)
