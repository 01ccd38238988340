"""A zygote that forks kubeconfig writers and SIGKILLs them after a given delay.

Forking a process that has already imported everything makes each restart cost
microseconds instead of an interpreter start, so hundreds of kill points fit in a
few seconds. Run as ``python -m tests.kube.crash_writer DEMO_STATE_DIR``. Protocol, one
JSON object per line: stdin ``{"cycle", "file", "start", "delay"}``, stdout
``{"last": generation, "killed": bool}``. The writer runs generation ``start + 1,
start + 2, ...`` of the cycle (``kube`` or ``demo``) and reports each finished one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from core.aio.endpoint import LocalEndpoint
from core.demo.apiserver import DemoApiServer
from core.demo.embedded import TLS_SERVER_NAME, DemoStack
from core.kube import (
    KubeconfigPaths,
    WriteOptions,
    add_cluster_contexts,
    remove_cluster_contexts,
    use_context,
)
from tests.kube.helpers import paths_for, spec

#: A short settle, so kills also land between the replace and the unlock.
OPTIONS = WriteOptions(settle=0.02)
Op = Callable[[str], object]
Cycles = Mapping[str, tuple[Op, ...]]


def _kube(op: Callable[[KubeconfigPaths], object]) -> Op:
    return lambda file: op(paths_for(file))


#: One cycle: create, update in place, switch to it, add the public context, remove
#: (clears current-context), switch back; generation 6 must equal generation 0.
KUBE_OPS: tuple[Op, ...] = (
    _kube(lambda p: add_cluster_contexts(p, spec("crash", 20001), options=OPTIONS)),
    _kube(lambda p: add_cluster_contexts(p, spec("crash", 20002), options=OPTIONS)),
    _kube(lambda p: use_context(p, "wicket-crash", options=OPTIONS)),
    _kube(
        lambda p: add_cluster_contexts(
            p, spec("crash", 20001, public="https://k.example:443"), options=OPTIONS
        )
    ),
    _kube(lambda p: remove_cluster_contexts(p, "crash", options=OPTIONS)),
    _kube(lambda p: use_context(p, "ctx-7", options=OPTIONS)),
)


@dataclass
class _Endpoint:
    """What the stack's kubeconfig needs of its local endpoint (passthrough mode)."""

    port: int


def demo_ops(state: Path) -> tuple[Op, ...]:
    """The demo's writes: the stack's context (twice), the demo apiserver's kubeconfig
    (switches to it), then core.kube's remove and switch back; 5 generations a cycle.

    The PKI in ``state`` is made here, before any fork, so every writer (and the test
    process) writes the same bytes.
    """
    apiserver = DemoApiServer(state / "apiserver")
    stack = DemoStack(state)
    stack.apiserver = apiserver
    _ = apiserver.pki

    def stack_write(port: int) -> Op:
        def write(file: str) -> bool:
            stack.endpoint = cast(LocalEndpoint, _Endpoint(port))
            return stack.write_kubeconfig(Path(file), options=OPTIONS)

        return write

    def apiserver_write(file: str) -> Path:
        url = "https://127.0.0.1:20003"
        return apiserver.write_kubeconfig(file, url, tls_server_name=TLS_SERVER_NAME)

    return (
        stack_write(20001),
        stack_write(20002),
        apiserver_write,
        _kube(lambda p: remove_cluster_contexts(p, "demo", options=OPTIONS)),
        _kube(lambda p: use_context(p, "ctx-7", options=OPTIONS)),
    )


def cycles(demo_state: Path) -> Cycles:
    return {"kube": KUBE_OPS, "demo": demo_ops(demo_state)}


def run_op(ops: tuple[Op, ...], file: str, generation: int) -> None:
    """Apply the operation that produces ``generation`` from ``generation - 1``."""
    ops[(generation - 1) % len(ops)](file)


def _writer(ops: tuple[Op, ...], file: str, start: int, report: int) -> None:
    generation = start
    while True:
        generation += 1
        run_op(ops, file, generation)
        os.write(report, f"{generation}\n".encode())


def _run_once(ops: tuple[Op, ...], file: str, start: int, delay: float) -> dict[str, object]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            _writer(ops, file, start, write_end)
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
    known = cycles(Path(sys.argv[1]))
    for line in sys.stdin:
        request = json.loads(line)
        ops = known[request["cycle"]]
        reply = _run_once(ops, request["file"], request["start"], request["delay"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
