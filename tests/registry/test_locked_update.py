"""Files several Wicket processes write: one writer at a time, no update lost.

``fsutil.update_locked`` is what ``relay.json`` and the desktop app's ``clusters.json``
(shared with ``wicket cluster``) are written with. Real processes race here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from core import fsutil

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 6
EACH = 20


def _race(script: str, path: Path) -> None:
    """Run ``script`` in PROCESSES processes at once (``PATH`` and ``N`` in its globals)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", f"PATH, N = {str(path)!r}, {n}\n{textwrap.dedent(script)}"],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()


def test_racing_read_modify_writes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counter.json"
    _race(
        f"""
        import json
        from core.fsutil import update_locked
        def add(data):
            doc = json.loads(data) if data is not None else {{"n": 0, "by": []}}
            return json.dumps({{"n": doc["n"] + 1, "by": doc["by"] + [N]}}).encode()
        for _ in range({EACH}):
            update_locked(PATH, add)
        """,
        path,
    )
    doc = json.loads(path.read_text())
    assert doc["n"] == PROCESSES * EACH
    assert sorted(doc["by"]) == sorted(n for n in range(PROCESSES) for _ in range(EACH))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "counter.json.lock").stat().st_mode) == 0o600


def test_the_desktop_settings_keep_every_writers_cluster(tmp_path: Path) -> None:
    """The app and a ``wicket cluster`` command adding clusters at once keep both."""
    path = tmp_path / "app" / "clusters.json"
    _race(
        f"""
        from pathlib import Path
        from gui.backend import AppSettings, ClusterConfig
        for i in range({EACH // 4}):
            cfg = ClusterConfig(f"c{{N}}-{{i}}", "embedded", 16000 + 100 * N + i)
            AppSettings.update(Path(PATH), lambda s: s.put(cfg))
        """,
        path,
    )
    doc = json.loads(path.read_text())
    names = sorted(c["name"] for c in doc["clusters"])
    assert names == sorted(f"c{n}-{i}" for n in range(PROCESSES) for i in range(EACH // 4))


def test_an_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    assert fsutil.update_locked(path, lambda old: b"{}") == b"{}"
    inode = path.stat().st_ino
    assert fsutil.update_locked(path, lambda old: old or b"") == b"{}"
    assert path.stat().st_ino == inode
