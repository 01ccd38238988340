"""The real kubectl, run from a worker thread (the qasync loop runs no subprocesses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


def kubectl_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": os.environ["KUBECONFIG"],
        "KUBECACHEDIR": str(home / ".kube" / "cache"),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("KUBECTL_")},
    }


async def kubectl(home: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), *args],
            env=kubectl_env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return await asyncio.to_thread(run)
