"""The demo apiserver as a private cluster for process tests: what `wicket cluster add`
needs of it (target, CA file, token), read from the kubeconfig it writes."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML


def demo_cluster(kubeconfig: Path, log: Callable[[], str], tmp: Path) -> tuple[str, Path, str]:
    """Waits (30 s at most) for the demo apiserver whose output ``log`` returns to be up
    and to have written ``kubeconfig``; returns its HOST:PORT, its CA (written to a file
    in ``tmp``) and its token."""
    deadline = time.monotonic() + 30
    while not kubeconfig.exists() or "demo apiserver on" not in log():
        assert time.monotonic() < deadline, log()
        time.sleep(0.1)
    doc = YAML(typ="safe").load(kubeconfig.read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    ca = tmp / "cluster-ca.pem"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return cluster["server"].removeprefix("https://"), ca, user["token"]
