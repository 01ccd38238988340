"""The benchmark still runs: ``mux_bench --quick`` in a subprocess prints its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_completes_and_prints_the_table(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tests.bench.mux_bench", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for label in ("1 stream MB/s", "8 streams MB/s", "CPU s/GiB", "KB/stream", "snapshot()"):
        assert label in out, out
    summary = json.loads((tmp_path / "mux-latest.json").read_text())["summary"]
    assert summary["one_mux_MBps"] > 0
    assert summary["one_tls_MBps"] > 0
    assert summary["snapshot_streams"] == 100
