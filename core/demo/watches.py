"""Watches of the demo apiserver: pods change (the ticker), everything else never does.

A watch is an async iterator of JSON lines (``{"type", "object"}``) that
:func:`core.demo.http_io.stream` sends as chunks until the client hangs up or its
``timeoutSeconds`` ends. kubectl ``get -w`` asks for Tables; they are built per event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from core.demo.http_io import Request
from core.demo.reads import empty_table, find_empty
from core.demo.resources import Cluster, JsonObj, matches


def watch(cluster: Cluster, request: Request, parts: list[str]) -> AsyncIterator[bytes] | None:
    """The watch a path asks for, or None when the path cannot be watched."""
    match parts:
        case ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"]:
            namespace = parts[3] if len(parts) == 5 else None
            return _watch_pods(cluster, request, namespace)
        case ["api", "v1", "namespaces"]:
            namespaces = list(cluster.namespaces.values())
            return _watch_unchanging(request, namespaces, cluster.namespace_table)
    found = find_empty(parts)
    if found is not None and found[1] is None:
        return _watch_unchanging(request, [], lambda _items: empty_table(cluster.resource_version))
    return None


async def _watch_unchanging(
    request: Request,
    items: list[JsonObj],
    table_of: Callable[[list[JsonObj]], JsonObj],
) -> AsyncIterator[bytes]:
    """Objects the demo never changes: ADDED for each (from resourceVersion "" or
    "0"), then nothing until the client hangs up or ``timeoutSeconds`` ends it."""
    table = request.wants_table
    labels, fields = request.param("labelSelector"), request.param("fieldSelector")
    if request.param("resourceVersion") in ("", "0"):
        for item in items:
            if matches(item, labels, fields):
                obj = table_of([item]) if table else item
                yield json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
    await asyncio.get_running_loop().create_future()  # never resolved


async def _watch_pods(
    cluster: Cluster, request: Request, namespace: str | None
) -> AsyncIterator[bytes]:
    table = request.wants_table
    labels, fields = request.param("labelSelector"), request.param("fieldSelector")
    watch = cluster.watch("pods")
    try:
        initial: list[tuple[str, JsonObj]] = []
        if request.param("resourceVersion") in ("", "0"):
            pods = cluster.list_pods(namespace, labels, fields)
            initial = [("ADDED", pod) for pod in pods]
        for event_type, pod in initial:
            yield _watch_event(cluster, event_type, pod, table)
        while True:
            event_type, pod = await watch.queue.get()
            if namespace is not None and pod["metadata"]["namespace"] != namespace:
                continue
            if matches(pod, labels, fields):
                yield _watch_event(cluster, event_type, pod, table)
    finally:
        watch.close()


def _watch_event(cluster: Cluster, event_type: str, pod: JsonObj, table: bool) -> bytes:
    obj = cluster.pod_table([pod]) if table else pod
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
