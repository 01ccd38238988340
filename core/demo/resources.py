"""The demo cluster's objects: namespaces, pods, their logs, and watches over them.

Pods are the user's own machine: each has a working directory under the state dir
where ``exec`` runs real commands, and declared ports forwarded to real local services.
A ticker changes the ``ticker`` pod every few seconds and writes a log line every
second, so ``kubectl get -w`` and ``kubectl logs -f`` show live activity.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JsonObj = dict[str, Any]
NODE_NAME = "wicket-demo-node"
LOG_HISTORY = 2000


def rfc3339(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def _age(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


@dataclass
class PodSpec:
    """What the demo declares for one pod (one container)."""

    name: str
    container: str
    labels: dict[str, str]
    ports: dict[int, str] = field(default_factory=dict)
    """Container port → port name; the apiserver maps each to a local service."""
    stdin: bool = False


@dataclass
class LogBook:
    """A pod's log: recent lines plus the waiters of ``logs -f``."""

    lines: deque[tuple[float, bytes]] = field(default_factory=lambda: deque(maxlen=LOG_HISTORY))
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    total: int = 0


class Watch:
    """One watcher's queue of (type, object) events."""

    def __init__(self, hub: Cluster, kind: str) -> None:
        self._hub = hub
        self.kind = kind
        self.queue: asyncio.Queue[tuple[str, JsonObj]] = asyncio.Queue(maxsize=1000)

    def close(self) -> None:
        self._hub.watches.discard(self)


class Cluster:
    """All objects of the demo, with a global resourceVersion counter."""

    def __init__(self, state_dir: Path, clock: Callable[[], float]) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self._rv = itertools.count(1000)
        self.resource_version = next(self._rv)
        self.namespaces: dict[str, JsonObj] = {}
        self.pods: dict[tuple[str, str], JsonObj] = {}
        self.specs: dict[tuple[str, str], PodSpec] = {}
        self.logs: dict[tuple[str, str], LogBook] = {}
        self.watches: set[Watch] = set()
        for ns in ("default", "kube-system", "kube-public"):
            self._add_namespace(ns)

    # -- building --------------------------------------------------------------------

    def _bump(self) -> str:
        self.resource_version = next(self._rv)
        return str(self.resource_version)

    def _meta(self, name: str, namespace: str | None = None) -> JsonObj:
        meta: JsonObj = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self._bump(),
            "creationTimestamp": rfc3339(self.clock()),
        }
        if namespace:
            meta["namespace"] = namespace
        return meta

    def _add_namespace(self, name: str) -> None:
        meta = self._meta(name)
        meta["labels"] = {"kubernetes.io/metadata.name": name}
        self.namespaces[name] = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def add_pod(self, namespace: str, spec: PodSpec) -> JsonObj:
        started = rfc3339(self.clock())
        meta = self._meta(spec.name, namespace)
        meta["labels"] = dict(spec.labels)
        container: JsonObj = {
            "name": spec.container,
            "image": "wicket.local/demo:latest",
            "workingDir": str(self.workdir(namespace, spec.name)),
            "ports": [
                {"containerPort": port, "name": pname, "protocol": "TCP"}
                for port, pname in sorted(spec.ports.items())
            ],
        }
        if spec.stdin:
            container["stdin"] = True
        pod: JsonObj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {"containers": [container], "nodeName": NODE_NAME, "restartPolicy": "Always"},
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": started,
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": started}
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
                "containerStatuses": [
                    {
                        "name": spec.container,
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": "wicket.local/demo:latest",
                        "imageID": "",
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        }
        key = (namespace, spec.name)
        self.pods[key] = pod
        self.specs[key] = spec
        self.logs[key] = LogBook()
        self.workdir(namespace, spec.name).mkdir(parents=True, exist_ok=True)
        self._notify("pods", "ADDED", pod)
        return pod

    def workdir(self, namespace: str, name: str) -> Path:
        return self.state_dir / "pods" / namespace / name

    # -- reading ---------------------------------------------------------------------

    def list_pods(
        self, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[JsonObj]:
        return [
            pod
            for (ns, _), pod in sorted(self.pods.items())
            if (namespace is None or ns == namespace)
            and matches(pod, label_selector, field_selector)
        ]

    def pod(self, namespace: str, name: str) -> JsonObj | None:
        return self.pods.get((namespace, name))

    # -- changing --------------------------------------------------------------------

    def update_pod(self, namespace: str, name: str, change: Callable[[JsonObj], None]) -> None:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return
        updated = copy.deepcopy(pod)
        change(updated)
        updated["metadata"]["resourceVersion"] = self._bump()
        self.pods[(namespace, name)] = updated
        self._notify("pods", "MODIFIED", updated)

    def _notify(self, kind: str, event_type: str, obj: JsonObj) -> None:
        for watch in list(self.watches):
            if watch.kind != kind:
                continue
            try:
                watch.queue.put_nowait((event_type, obj))
            except asyncio.QueueFull:
                watch.close()  # a stuck watcher loses its watch, as with a real apiserver

    def watch(self, kind: str) -> Watch:
        watch = Watch(self, kind)
        self.watches.add(watch)
        return watch

    # -- logs ------------------------------------------------------------------------

    async def append_log(self, namespace: str, name: str, data: bytes) -> None:
        book = self.logs.get((namespace, name))
        if book is None:
            return
        async with book.changed:
            for line in data.splitlines(keepends=True):
                book.lines.append((self.clock(), line if line.endswith(b"\n") else line + b"\n"))
                book.total += 1
            book.changed.notify_all()

    async def follow_log(
        self, namespace: str, name: str, *, follow: bool, tail: int | None, timestamps: bool
    ) -> AsyncIterator[bytes]:
        book = self.logs[(namespace, name)]
        lines = list(book.lines)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        seen = book.total
        for ts, line in lines:
            yield _log_line(ts, line, timestamps)
        while follow:
            async with book.changed:
                await book.changed.wait_for(lambda seen=seen: book.total > seen)  # type: ignore[misc]
                fresh = book.total - seen
                new = list(book.lines)[-fresh:] if fresh <= len(book.lines) else list(book.lines)
                seen = book.total
            for ts, line in new:
                yield _log_line(ts, line, timestamps)

    # -- tables ----------------------------------------------------------------------

    def pod_table(self, pods: list[JsonObj], *, columns: bool = True) -> JsonObj:
        now = self.clock()
        rows = []
        for pod in pods:
            statuses = pod["status"].get("containerStatuses", [])
            ready = sum(1 for s in statuses if s.get("ready"))
            restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
            rows.append(
                {
                    "cells": [
                        pod["metadata"]["name"],
                        f"{ready}/{len(statuses)}",
                        pod["status"]["phase"],
                        restarts,
                        _age(now - _parse_ts(pod["metadata"]["creationTimestamp"])),
                    ],
                    "object": _partial(pod),
                }
            )
        table: JsonObj = {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self.resource_version)},
            "rows": rows,
        }
        if columns:
            table["columnDefinitions"] = [
                _column("Name", "string", "name"),
                _column("Ready", "string"),
                _column("Status", "string"),
                _column("Restarts", "integer"),
                _column("Age", "string"),
            ]
        return table

    def namespace_table(self, namespaces: list[JsonObj]) -> JsonObj:
        now = self.clock()
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self.resource_version)},
            "columnDefinitions": [
                _column("Name", "string", "name"),
                _column("Status", "string"),
                _column("Age", "string"),
            ],
            "rows": [
                {
                    "cells": [
                        ns["metadata"]["name"],
                        ns["status"]["phase"],
                        _age(now - _parse_ts(ns["metadata"]["creationTimestamp"])),
                    ],
                    "object": _partial(ns),
                }
                for ns in namespaces
            ],
        }


def _log_line(ts: float, line: bytes, timestamps: bool) -> bytes:
    if not timestamps:
        return line
    stamp = datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")
    return stamp.encode() + b" " + line


def _parse_ts(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _column(name: str, kind: str, fmt: str = "") -> JsonObj:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": 0}


def _partial(obj: JsonObj) -> JsonObj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def matches(obj: JsonObj, label_selector: str, field_selector: str) -> bool:
    """Equality-based selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``)."""
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, (t.strip() for t in label_selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    fields = {
        "metadata.name": obj["metadata"]["name"],
        "metadata.namespace": obj["metadata"].get("namespace", ""),
        "status.phase": obj.get("status", {}).get("phase", ""),
        "spec.nodeName": obj.get("spec", {}).get("nodeName", ""),
    }
    for term in filter(None, (t.strip() for t in field_selector.split(","))):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if (fields.get(key.strip(), "") == value.strip()) == negate:
            return False
    return True
