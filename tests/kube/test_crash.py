"""SIGKILL at random points of a write leaves the old or the new file, byte for byte.

Two cycles of writes: core.kube's own operations, and the demo's (the stack's
``wicket-demo`` context and the demo apiserver's kubeconfig, through
``write_owned_entries``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from core.kube.document import Document
from tests.kube.crash_writer import Op, cycles, run_op
from tests.kube.helpers import foreign_kubeconfig

REPO = Path(__file__).resolve().parents[2]
KILLS = 140  # per cycle; each ~0.35 s here (a write of a 50-context file, fsync)
SYMLINK_EVERY = 8


def _generations(tmp: Path, initial: bytes, ops: tuple[Op, ...]) -> tuple[list[bytes], float]:
    """The file after each generation of one cycle, and the median time of one write."""
    file = tmp / "scratch" / "config"
    file.parent.mkdir()
    file.write_bytes(initial)
    contents = [initial]
    times = []
    for generation in range(1, len(ops) + 1):
        started = time.monotonic()
        run_op(ops, str(file), generation)
        times.append(time.monotonic() - started)
        contents.append(file.read_bytes())
        Document(str(file), contents[-1])  # parses, so every kill leaves a parsing file
    assert len(set(contents[:-1])) == len(ops), "every generation changes the file"
    assert contents[-1] == initial, "the cycle restores the original bytes"
    return contents[:-1], sorted(times)[len(times) // 2]


def _clear_stale_locks(file: Path) -> bool:
    """Do what the user would after a crash: remove the dead writer's locks."""
    found = False
    for lock in {f"{file}.lock", f"{os.path.realpath(file)}.lock"}:
        if os.path.exists(lock):
            os.unlink(lock)
            found = True
    return found


def _kill_once(
    zygote: subprocess.Popen[str], cycle: str, file: Path, start: int, delay: float
) -> int:
    assert zygote.stdin is not None and zygote.stdout is not None
    request = {"cycle": cycle, "file": str(file), "start": start, "delay": delay}
    zygote.stdin.write(json.dumps(request) + "\n")
    zygote.stdin.flush()
    reply = json.loads(zygote.stdout.readline())
    assert reply["killed"], "the writer died on its own (see stderr)"
    last: int = reply["last"]
    return last


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("cycle", ["kube", "demo"])
def test_sigkill_leaves_old_or_new_file(tmp_path: Path, cycle: str) -> None:
    initial = foreign_kubeconfig(50, current=7).encode()
    demo_state = tmp_path / "demo-state"
    ops = cycles(demo_state)[cycle]
    contents, op_time = _generations(tmp_path, initial, ops)
    plain = tmp_path / "plain" / "config"
    target = tmp_path / "real" / "kubeconfig.yaml"
    link = tmp_path / "linked" / "config"
    for file in (plain, target, link):
        file.parent.mkdir()
    for file in (plain, target):
        file.write_bytes(initial)
        file.chmod(0o600)
    link.symlink_to(target)
    generation = {plain: 0, link: 0}
    outcomes: Counter[str] = Counter()
    rng = random.Random(20240611)
    # Kill delays stretch while kills land before any write finished (a loaded machine
    # writes slower than the measured median) and shrink back once a write got through.
    stretch = 1.0
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "tests.kube.crash_writer", str(demo_state)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as zygote:
        for kill in range(KILLS):
            file = link if kill % SYMLINK_EVERY == 0 else plain
            delay = rng.uniform(0.0, 1.2 * op_time * stretch)
            last = _kill_once(zygote, cycle, file, generation[file], delay)
            stretch = max(1.0, stretch / 2) if last > generation[file] else min(8.0, stretch * 1.25)
            data = file.read_bytes()
            if data != contents[last % len(ops)]:
                # Killed between os.replace and the report: it must be the next one.
                assert data == contents[(last + 1) % len(ops)], f"kill {kill}: torn file"
                outcomes["replaced, unreported"] += 1
                last += 1
            outcomes["progressed"] += last > generation[file]
            generation[file] = last
            real = Path(os.path.realpath(file))
            assert real.stat().st_mode & 0o777 == 0o600
            outcomes["temp file left"] += any(
                ".wicket-tmp-" in p.name for p in real.parent.iterdir()
            )
            outcomes["lock left"] += _clear_stale_locks(file)
        assert zygote.stdin is not None
        zygote.stdin.close()
    assert link.is_symlink() and os.path.realpath(link) == str(target)
    elapsed = time.monotonic() - started
    print(f"{KILLS} kills in {elapsed:.1f}s (one write {op_time:.3f}s): {dict(outcomes)}")
    # The kills landed inside transactions, and the writer really wrote in between.
    assert outcomes["lock left"] >= KILLS // 4
    assert outcomes["progressed"] >= 10
