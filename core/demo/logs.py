"""Pod logs: ``kubectl logs`` (tail, timestamps, follow) and attach to a pod that has
no interactive main process (its live log output).
"""

from __future__ import annotations

from core.demo import exec as demo_exec
from core.demo.http_io import Http, Request, Response, respond, stream
from core.demo.resources import Cluster


async def serve_log(
    http: Http, request: Request, cluster: Cluster, namespace: str, name: str
) -> None:
    tail_param = request.param("tailLines")
    tail = int(tail_param) if tail_param.lstrip("-").isdigit() else None
    lines = cluster.follow_log(
        namespace,
        name,
        follow=request.flag("follow"),
        tail=tail,
        timestamps=request.flag("timestamps"),
    )
    if request.flag("follow"):
        await stream(http, lines, request, "text/plain")
        return
    body = b"".join([line async for line in lines])
    await respond(http, Response(200, body, "text/plain"))


async def attach_log(
    cluster: Cluster,
    namespace: str,
    pod: str,
    request: demo_exec.ExecRequest,
    io: demo_exec.ExecIO,
) -> bytes:
    """Attach to a pod without a main process: its live log output."""
    async for line in cluster.follow_log(namespace, pod, follow=True, tail=0, timestamps=False):
        if request.stdout:
            await io.send(1, line)
    return b""  # pragma: no cover - follow never ends
