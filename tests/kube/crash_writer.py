"""A zygote that forks kubeconfig writers and SIGKILLs them after a given delay.

Forking a process that has already imported everything makes each restart cost
microseconds instead of an interpreter start, so hundreds of kill points fit in a
few seconds. Protocol, one JSON object per line: stdin ``{"file", "start", "delay"}``,
stdout ``{"last": generation, "killed": bool}``. The writer runs generation
``start + 1, start + 2, ...`` of the cycle in ``OPS`` and reports each finished one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

from core.kube import (
    Change,
    KubeconfigPaths,
    WriteOptions,
    add_cluster_contexts,
    remove_cluster_contexts,
    use_context,
)
from tests.kube.helpers import paths_for, spec

#: A short settle, so kills also land between the replace and the unlock.
OPTIONS = WriteOptions(settle=0.02)
Op = Callable[[KubeconfigPaths], Change]

#: One cycle: create, update in place, switch to it, add the public context, remove
#: (clears current-context), switch back; generation 6 must equal generation 0.
OPS: tuple[Op, ...] = (
    lambda p: add_cluster_contexts(p, spec("crash", 20001), options=OPTIONS),
    lambda p: add_cluster_contexts(p, spec("crash", 20002), options=OPTIONS),
    lambda p: use_context(p, "wicket-crash", options=OPTIONS),
    lambda p: add_cluster_contexts(
        p, spec("crash", 20001, public="https://k.example:443"), options=OPTIONS
    ),
    lambda p: remove_cluster_contexts(p, "crash", options=OPTIONS),
    lambda p: use_context(p, "ctx-7", options=OPTIONS),
)


def run_op(paths: KubeconfigPaths, generation: int) -> None:
    """Apply the operation that produces ``generation`` from ``generation - 1``."""
    OPS[(generation - 1) % len(OPS)](paths)


def _writer(file: str, start: int, report: int) -> None:
    paths = paths_for(file)
    generation = start
    while True:
        generation += 1
        run_op(paths, generation)
        os.write(report, f"{generation}\n".encode())


def _run_once(file: str, start: int, delay: float) -> dict[str, object]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            _writer(file, start, write_end)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    os.close(write_end)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reports:
        lines = reports.read().split()
    last = int(lines[-1]) if lines else start
    return {"last": last, "killed": os.WIFSIGNALED(status)}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        reply = _run_once(request["file"], request["start"], request["delay"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
