"""The agent bundle through the real kubectl: ``apply --dry-run=client`` against the demo.

kubectl needs discovery to map every kind to a resource, then GETs each object (and its
namespace) to decide between "created" and "configured"; a client-side dry run sends
nothing else. The demo apiserver discovers core/v1 secrets, serviceaccounts and
persistentvolumeclaims and apps/v1 deployments, holds none of them and answers each GET
with a 404 ``Status``, and refuses every write with 405, so "created (dry run)" for
every object proves both the discovery and that no object was sent anywhere.

``--validate=true`` (kubectl's default, ``strict``) is not served, and the last test pins
that down: kubectl 1.33 first reads ``/openapi/v3`` to learn whether the server does
field validation, then falls back to client-side schema validation with ``/openapi/v2``
as gnostic protobuf. Neither is cheap and honest for the demo: v2 means generating the
protobuf OpenAPI document of every schema, and a v3 document that offers PATCH with
``fieldValidation`` (which makes kubectl skip client-side validation) would advertise
writes the demo refuses. The manifests are checked offline against the Kubernetes
schemas in ``tests/bundle/test_bundle.py`` instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.demo import DemoApiServer
from core.kube.bundle import StateVolume
from core.registry.state import RelayState
from tests.demo.kubectl import KUBECTL, Kubectl, Result, run_process

if not KUBECTL.exists():  # pragma: no cover
    pytest.skip("the real kubectl is not installed (make test-deps)", allow_module_level=True)

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).parents[2]
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
CREATED = [
    "namespace/wicket-system created (dry run)",
    "secret/wicket-agent-join created (dry run)",
    "serviceaccount/wicket-agent created (dry run)",
    "persistentvolumeclaim/wicket-agent-state created (dry run)",
    "deployment.apps/wicket-agent created (dry run)",
]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoApiServer]:
    async with DemoApiServer(tmp_path / "demo", tls=True) as server:
        yield server


@pytest.fixture
def kubectl(demo: DemoApiServer, tmp_path: Path) -> Kubectl:
    config = demo.write_kubeconfig(tmp_path / "kubeconfig", auth="token")
    return Kubectl(tmp_path / "home", config)


async def _bundle(tmp_path: Path, *args: str) -> bytes:
    """``wicket agent-bundle`` output for a real join token read from a file."""
    token = RelayState(tmp_path / "relay").join_token("prod", "relay.example.com:7443", None, NOW)
    token_file = tmp_path / "join-token"
    token_file.write_text(token + "\n")
    argv = [sys.executable, "-m", "core.cli", "agent-bundle", "--token-file", str(token_file)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = await run_process([*argv, *args], env, None, 30)
    assert result.returncode == 0, result.err
    assert token.encode() in result.stdout
    return result.stdout


def _verbs(result: Result) -> list[tuple[str, str]]:
    """(verb, path) of every request in kubectl's ``-v=6`` log."""
    found = re.findall(r'"Response" verb="(\w+)" url="https?://[^/"]+([^"?]*)', result.err)
    return [(verb, path) for verb, path in found]


@pytest.mark.parametrize("state", list(StateVolume))
async def test_dry_run_apply_creates_every_object(
    kubectl: Kubectl, tmp_path: Path, state: StateVolume
) -> None:
    bundle = await _bundle(tmp_path, "--state-volume", state.value)
    result = await kubectl.run(
        "apply", "--dry-run=client", "--validate=false", "-f", "-", "-v=6", stdin=bundle
    )
    assert result.returncode == 0, result.err
    expected = [line for line in CREATED if state is StateVolume.PVC or "persistent" not in line]
    assert result.out.splitlines() == expected
    requests = _verbs(result)
    assert {verb for verb, _ in requests} == {"GET"}, requests
    paths = {path for _, path in requests}
    assert {
        "/api/v1/namespaces/wicket-system",
        "/api/v1/namespaces/wicket-system/secrets/wicket-agent-join",
        "/api/v1/namespaces/wicket-system/serviceaccounts/wicket-agent",
        "/apis/apps/v1/namespaces/wicket-system/deployments/wicket-agent",
    } <= paths


async def test_dry_run_leaves_nothing_behind(kubectl: Kubectl, tmp_path: Path) -> None:
    bundle = await _bundle(tmp_path)
    applied = await kubectl.run(
        "apply", "--dry-run=client", "--validate=false", "-f", "-", stdin=bundle
    )
    assert applied.returncode == 0, applied.err
    again = await kubectl.run(
        "apply", "--dry-run=client", "--validate=false", "-f", "-", stdin=bundle
    )
    assert again.out.splitlines() == CREATED, "still nothing to configure"
    listed = await kubectl.run("get", "deploy,secret,sa,pvc", "-n", "wicket-system")
    assert listed.returncode == 0, listed.err
    assert listed.out == ""
    assert "No resources found in wicket-system namespace." in listed.err
    missing = await kubectl.run("get", "deployment", "wicket-agent", "-n", "wicket-system")
    assert missing.returncode == 1
    assert 'namespaces "wicket-system" not found' in missing.err, "kubectl looks it up"
    missing = await kubectl.run("get", "deployment", "wicket-agent", "-n", "default")
    assert missing.returncode == 1
    assert 'deployments.apps "wicket-agent" not found' in missing.err


def _raw_get(demo: DemoApiServer, path: str) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cadata=demo.ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", demo.port, context=context, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {demo.bearer_token}"})
        response = conn.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        return response.status, body
    finally:
        conn.close()


async def test_not_found_status_names_resource_and_group(demo: DemoApiServer) -> None:
    ns = "/namespaces/wicket-system"
    for path, details, message in [
        (
            f"/apis/apps/v1{ns}/deployments/wicket-agent",
            {"name": "wicket-agent", "group": "apps", "kind": "deployments"},
            'deployments.apps "wicket-agent" not found',
        ),
        (
            f"/api/v1{ns}/secrets/wicket-agent-join",
            {"name": "wicket-agent-join", "kind": "secrets"},
            'secrets "wicket-agent-join" not found',
        ),
        (
            f"/api/v1{ns}/persistentvolumeclaims/wicket-agent-state",
            {"name": "wicket-agent-state", "kind": "persistentvolumeclaims"},
            'persistentvolumeclaims "wicket-agent-state" not found',
        ),
    ]:
        status, body = await asyncio.to_thread(_raw_get, demo, path)
        assert status == 404, path
        assert body["kind"] == "Status"
        assert body["reason"] == "NotFound"
        assert body["details"] == details
        assert body["message"] == message
    status, body = await asyncio.to_thread(_raw_get, demo, f"/apis/apps/v1{ns}/deployments")
    assert (status, body["kind"], body["apiVersion"], body["items"]) == (
        200,
        "DeploymentList",
        "apps/v1",
        [],
    )


async def test_validating_apply_needs_openapi_the_demo_does_not_serve(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    bundle = await _bundle(tmp_path)
    result = await kubectl.run(
        "apply", "--dry-run=client", "--validate=true", "-f", "-", stdin=bundle
    )
    assert result.returncode == 1
    assert result.out == ""
    assert "failed to download openapi" in result.err
    assert "--validate=false" in result.err
