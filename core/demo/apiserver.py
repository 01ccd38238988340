"""The demo apiserver: enough of the Kubernetes API for the real kubectl, over HTTP/1.1.

TLS with its own CA (bearer token or client certificate required) or plain HTTP for
tests. Serves version and discovery, namespaces (get, list) and pods (get, list, watch,
tables), pod logs (with follow), and the streaming subresources exec, attach (WebSocket
v5 and SPDY v4) and portforward (SPDY and the WebSocket tunnel). Events, secrets,
service accounts, persistent volume claims and ``apps/v1`` deployments are discovered
but hold no objects (empty lists, 404 for a named object), so that
``kubectl apply --dry-run=client`` can map and look up what it would create. Every
write is refused with 405. What it implements and how is in docs/demo.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from core.demo import exec as demo_exec
from core.demo import portforward, sessions
from core.demo.pki import DemoPKI, ensure_pki
from core.demo.resources import Cluster, JsonObj, PodSpec, matches
from core.demo.services import LocalServices
from core.demo.transport import (
    RawLink,
    WebSocketByteLink,
    WebSocketLink,
    close_writer,
    websocket_accept,
)
from core.format import host_port
from core.kube import Entry, KubeconfigPaths, WriteOptions, write_owned_entries
from core.protocol.k8s_channels import (
    EXEC_SPDY_PROTOCOLS,
    PORTFORWARD_SPDY_PROTOCOL,
    PORTFORWARD_WEBSOCKET_PROTOCOL,
    V5_PROTOCOL,
    choose_protocol,
)

GIT_VERSION = "v1.32.4"
READ_SIZE = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0
TICK_SECONDS = 1.0
CHANGE_EVERY_TICKS = 3
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
NAMESPACE = "default"
#: The Wicket cluster owning the entries of ``write_kubeconfig``.
KUBECONFIG_OWNER = "demo"
#: Throwaway files for tests and ``python -m core.demo``: no backups, no settle.
KUBECONFIG_OPTIONS = WriteOptions(backups=0, settle=0.0)


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def param(self, name: str, default: str = "") -> str:
        return (self.query.get(name) or [default])[0]

    def flag(self, name: str) -> bool:
        return self.param(name).lower() in ("true", "1")


@dataclass
class _Http:
    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def status_response(code: int, reason: str, message: str, **details: Any) -> _Response:
    body: JsonObj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return _Response(code, json.dumps(body).encode())


def _json(obj: JsonObj, content_type: str = "application/json") -> _Response:
    return _Response(200, json.dumps(obj).encode(), content_type)


TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass(frozen=True)
class EmptyResource:
    """A namespaced resource the demo discovers but holds no objects of.

    ``list`` answers an empty list (or Table), ``get`` of a name a 404 ``Status`` like a
    real apiserver's, ``watch`` stays silent (nothing ever changes); writes are 405.
    """

    group: str
    """API group; "" is the core group."""
    resource: str
    singular: str
    kind: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    def discovery(self) -> JsonObj:
        entry: JsonObj = {
            "name": self.resource,
            "singularName": self.singular,
            "namespaced": True,
            "kind": self.kind,
            "verbs": ["get", "list", "watch"],
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


EMPTY_RESOURCES = (
    EmptyResource("", "events", "event", "Event", ("ev",)),
    EmptyResource("", "secrets", "secret", "Secret"),
    EmptyResource("", "serviceaccounts", "serviceaccount", "ServiceAccount", ("sa",)),
    EmptyResource(
        "", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", ("pvc",)
    ),
    EmptyResource("apps", "deployments", "deployment", "Deployment", ("deploy",), ("all",)),
)
_EMPTY_BY_PATH = {(r.group, r.resource): r for r in EMPTY_RESOURCES}

APPS_GROUP: JsonObj = {
    "name": "apps",
    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
}

APPS_V1_RESOURCES: JsonObj = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "apps/v1",
    "resources": [r.discovery() for r in EMPTY_RESOURCES if r.group == "apps"],
}

API_RESOURCES: JsonObj = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["ns"],
        },
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["po"],
            "categories": ["all"],
        },
        *(
            {"name": f"pods/{sub}", "singularName": "", "namespaced": True, "kind": kind}
            | {"verbs": ["create", "get"]}
            for sub, kind in (
                ("attach", "PodAttachOptions"),
                ("exec", "PodExecOptions"),
                ("portforward", "PodPortForwardOptions"),
            )
        ),
        {
            "name": "pods/log",
            "singularName": "",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get"],
        },
        *(r.discovery() for r in EMPTY_RESOURCES if not r.group),
    ],
}

DEMO_PODS = (
    PodSpec("web", "web", {"app": "web"}, {80: "http", 7: "echo", 9: "sink"}),
    PodSpec("ticker", "ticker", {"app": "ticker", "tick": "0"}),
    PodSpec("chat", "chat", {"app": "chat"}, stdin=True),
)


class DemoApiServer:
    """A stand-in Kubernetes apiserver that the real kubectl accepts.

    ``websocket=False`` refuses WebSocket upgrades with 400 (kubectl then falls back to
    SPDY); ``spdy=False`` refuses SPDY upgrades the same way.
    """

    def __init__(
        self,
        state_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = True,
        websocket: bool = True,
        spdy: bool = True,
        git_version: str = GIT_VERSION,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.tls = tls
        self.websocket = websocket
        self.spdy = spdy
        self.git_version = git_version
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pki: DemoPKI | None = None
        self.procs = demo_exec.ProcessTable()
        self.cluster = Cluster(self.state_dir, time.time)
        self.services = LocalServices(self._http_visited)
        self._chat: demo_exec.PodProcess | None = None
        self._env: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------

    @property
    def pki(self) -> DemoPKI:
        if self._pki is None:
            self._pki = ensure_pki(self.state_dir)
        return self._pki

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        context = None
        if self.tls:
            pki = await asyncio.to_thread(lambda: self.pki)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(pki.server_cert, pki.server_key)
            context.load_verify_locations(cafile=str(pki.ca_cert))
            context.verify_mode = ssl.CERT_OPTIONAL
            context.set_alpn_protocols(["http/1.1"])
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        for spec in DEMO_PODS:
            self.cluster.add_pod(NAMESPACE, spec)
        await self.services.start()
        self._chat = demo_exec.PodProcess(
            self.cluster.workdir(NAMESPACE, "chat"),
            self._pod_env("chat"),
            self.procs,
            lambda data: self.cluster.append_log(NAMESPACE, "chat", data),
        )
        await self._chat.start()
        await self.cluster.append_log(NAMESPACE, "web", b"serving http on pod port 80\n")
        self._spawn(self._tick())
        self._server = await asyncio.start_server(
            self._connection,
            self.host,
            self._requested_port,
            ssl=context,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if context else None,
        )

    async def stop(self) -> None:
        """Close the listener and every connection, kill every child process."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._chat is not None:
            await self._chat.stop()
            self._chat = None
        await self.procs.kill_all()
        await self.services.stop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> DemoApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- public facts ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the demo apiserver is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host_port(self.host, self.port)}"

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    @property
    def bearer_token(self) -> str:
        return self.pki.bearer_token

    @property
    def client_cert_paths(self) -> tuple[Path, Path]:
        """(certificate, key) PEM files of a client the demo accepts."""
        return self.pki.client_cert, self.pki.client_key

    def write_kubeconfig(
        self,
        path: Path | str,
        server_url: str | None = None,
        *,
        context: str = "wicket-demo",
        auth: str = "token",
        tls_server_name: str | None = None,
        namespace: str = NAMESPACE,
    ) -> Path:
        """Write a kubeconfig for this server, with ``context`` current.

        ``auth`` is ``token``, ``cert`` or ``none``; ``server_url`` and
        ``tls_server_name`` let the lead point kubectl at a tunnel endpoint. The entries
        are owned by the Wicket cluster ``demo`` and written by core.kube (locked,
        atomic); other entries of an existing file stay.
        """
        path = Path(path)
        cluster: JsonObj = {"server": server_url or self.url}
        if self.tls or (server_url or "").startswith("https"):
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        if tls_server_name:
            cluster["tls-server-name"] = tls_server_name
        user: JsonObj = {}
        if auth == "token":
            user["token"] = self.bearer_token
        elif auth == "cert":
            cert, key = self.client_cert_paths
            user = {"client-certificate": str(cert), "client-key": str(key)}
        entries = [
            Entry("clusters", context, cluster),
            Entry("users", context, user),
            Entry(
                "contexts",
                context,
                {"cluster": context, "user": context, "namespace": namespace},
            ),
        ]
        write_owned_entries(
            KubeconfigPaths.single(str(path)),
            KUBECONFIG_OWNER,
            entries,
            current=context,
            switch="always",
            options=KUBECONFIG_OPTIONS,
        )
        return path

    # -- background activity ---------------------------------------------------------

    async def _tick(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            n += 1
            await self.cluster.append_log(NAMESPACE, "ticker", f"tick {n}\n".encode())
            if n % CHANGE_EVERY_TICKS == 0:
                self.cluster.update_pod(NAMESPACE, "ticker", _ticker_change(n))

    async def _http_visited(self, line: str) -> None:
        await self.cluster.append_log(NAMESPACE, "web", f"GET via port-forward: {line}\n".encode())

    def _pod_env(self, pod: str) -> dict[str, str]:
        cwd = self.cluster.workdir(NAMESPACE, pod)
        return {**self._env, "HOSTNAME": pod, "PWD": str(cwd), "WICKET_DEMO_POD": pod}

    # -- connections -----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(OSError, h11.ProtocolError, asyncio.IncompleteReadError):
                await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            await close_writer(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        http = _Http(conn, reader, writer)
        peer_cert = writer.get_extra_info("peercert")
        while True:
            event = await _next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return
            while not isinstance(await _next_event(conn, reader), h11.EndOfMessage):
                pass  # bodies are not used by anything we serve
            target = urlsplit(event.target.decode("latin-1"))
            request = _Request(
                event.method.decode(),
                target.path,
                parse_qs(target.query, keep_blank_values=True),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            )
            if not self._authenticated(request, bool(peer_cert)):
                await _respond(http, status_response(401, "Unauthorized", "Unauthorized"))
            elif not await self._route(http, request):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _authenticated(self, request: _Request, has_client_cert: bool) -> bool:
        if not self.tls or has_client_cert or request.path in ANONYMOUS_PATHS:
            return True
        scheme, _, token = request.header("authorization").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.bearer_token.encode()
        )

    async def _route(
        self,
        http: _Http,
        request: _Request,
    ) -> bool:
        """Serve one request; False when the connection must not be reused."""
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            return await self._subresource(http, request, parts[3], parts[5], parts[6])
        if request.method != "GET":
            await _respond(http, status_response(405, "MethodNotAllowed", "the demo is read-only"))
            return True
        watch = request.flag("watch")
        if watch and (stream := self._watch(request, parts)) is not None:
            await _stream(http, stream, request)
            return False
        await _respond(http, self._get(request, parts))
        return True

    # -- plain GETs ------------------------------------------------------------------

    def _get(self, request: _Request, parts: list[str]) -> _Response:
        table = "as=Table" in request.header("accept")
        match parts:
            case ["version"]:
                return _json(self._version())
            case ["healthz" | "livez" | "readyz"]:
                return _Response(200, b"ok", "text/plain")
            case ["api"]:
                return _json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {
                                "clientCIDR": "0.0.0.0/0",
                                "serverAddress": host_port(self.host, self.port),
                            }
                        ],
                    }
                )
            case ["apis"]:
                return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [APPS_GROUP]})
            case ["apis", "apps"]:
                return _json({"kind": "APIGroup", "apiVersion": "v1", **APPS_GROUP})
            case ["apis", "apps", "v1"]:
                return _json(APPS_V1_RESOURCES)
            case ["api", "v1"]:
                return _json(API_RESOURCES)
            case ["api", "v1", "namespaces"]:
                items = list(self.cluster.namespaces.values())
                if table:
                    return _json(self.cluster.namespace_table(items), TABLE_TYPE)
                return _json(self._list("NamespaceList", items))
            case ["api", "v1", "namespaces", name]:
                ns = self.cluster.namespaces.get(name)
                if ns is None:
                    return _not_found("namespaces", name)
                if table:
                    return _json(self.cluster.namespace_table([ns]), TABLE_TYPE)
                return _json(ns)
            case ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"]:
                namespace = parts[3] if len(parts) == 5 else None
                pods = self.cluster.list_pods(
                    namespace, request.param("labelSelector"), request.param("fieldSelector")
                )
                if table:
                    return _json(self.cluster.pod_table(pods), TABLE_TYPE)
                return _json(self._list("PodList", pods))
            case ["api", "v1", "namespaces", ns, "pods", name]:
                pod = self.cluster.pod(ns, name)
                if pod is None:
                    return _not_found("pods", name)
                if table:
                    return _json(self.cluster.pod_table([pod]), TABLE_TYPE)
                return _json(pod)
        if (found := _empty(parts)) is not None:
            resource, object_name = found
            if object_name is not None:
                return _not_found(resource.resource, object_name, resource.group)
            if table:
                return _json(self._empty_table(), TABLE_TYPE)
            return _json(self._list(f"{resource.kind}List", [], resource.group_version))
        return status_response(404, "NotFound", "the server could not find the requested resource")

    def _version(self) -> JsonObj:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.git_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _list(self, kind: str, items: list[JsonObj], api_version: str = "v1") -> JsonObj:
        return {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self.cluster.resource_version)},
            "items": items,
        }

    def _empty_table(self) -> JsonObj:
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self.cluster.resource_version)},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Age", "type": "string", "format": "", "priority": 0},
            ],
            "rows": [],
        }

    # -- watches ---------------------------------------------------------------------

    def _watch(self, request: _Request, parts: list[str]) -> AsyncIterator[bytes] | None:
        match parts:
            case ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"]:
                namespace = parts[3] if len(parts) == 5 else None
                return self._watch_pods(request, namespace)
            case ["api", "v1", "namespaces"]:
                namespaces = list(self.cluster.namespaces.values())
                return self._watch_unchanging(request, namespaces, self.cluster.namespace_table)
        found = _empty(parts)
        if found is not None and found[1] is None:
            return self._watch_unchanging(request, [], lambda _items: self._empty_table())
        return None

    async def _watch_unchanging(
        self,
        request: _Request,
        items: list[JsonObj],
        table_of: Callable[[list[JsonObj]], JsonObj],
    ) -> AsyncIterator[bytes]:
        """Objects the demo never changes: ADDED for each (from resourceVersion "" or
        "0"), then nothing until the client hangs up or ``timeoutSeconds`` ends it."""
        table = "as=Table" in request.header("accept")
        labels, fields = request.param("labelSelector"), request.param("fieldSelector")
        if request.param("resourceVersion") in ("", "0"):
            for item in items:
                if matches(item, labels, fields):
                    obj = table_of([item]) if table else item
                    yield json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
        await asyncio.get_running_loop().create_future()  # never resolved

    async def _watch_pods(self, request: _Request, namespace: str | None) -> AsyncIterator[bytes]:
        table = "as=Table" in request.header("accept")
        labels, fields = request.param("labelSelector"), request.param("fieldSelector")
        watch = self.cluster.watch("pods")
        try:
            initial: list[tuple[str, JsonObj]] = []
            if request.param("resourceVersion") in ("", "0"):
                pods = self.cluster.list_pods(namespace, labels, fields)
                initial = [("ADDED", pod) for pod in pods]
            for event_type, pod in initial:
                yield self._watch_event(event_type, pod, table)
            while True:
                event_type, pod = await watch.queue.get()
                if namespace is not None and pod["metadata"]["namespace"] != namespace:
                    continue
                if matches(pod, labels, fields):
                    yield self._watch_event(event_type, pod, table)
        finally:
            watch.close()

    def _watch_event(self, event_type: str, pod: JsonObj, table: bool) -> bytes:
        obj = self.cluster.pod_table([pod]) if table else pod
        return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"

    # -- subresources ----------------------------------------------------------------

    async def _subresource(
        self,
        http: _Http,
        request: _Request,
        namespace: str,
        name: str,
        sub: str,
    ) -> bool:
        pod = self.cluster.pod(namespace, name)
        if pod is None:
            await _respond(http, _not_found("pods", name), close=True)
            return False
        container = request.param("container") or pod["spec"]["containers"][0]["name"]
        if container not in {c["name"] for c in pod["spec"]["containers"]}:
            message = f"container {container} is not valid for pod {name}"
            await _respond(http, status_response(404, "NotFound", message), close=True)
            return False
        if sub == "log" and request.method == "GET":
            await self._log(http, request, namespace, name)
            return not request.flag("follow")
        if sub in ("exec", "attach"):
            return await self._remote_command(http, request, name, container, sub)
        if sub == "portforward":
            return await self._portforward(http, request, name)
        await _respond(http, status_response(404, "NotFound", f"no subresource {sub}"))
        return True

    async def _log(
        self,
        http: _Http,
        request: _Request,
        namespace: str,
        name: str,
    ) -> None:
        tail_param = request.param("tailLines")
        tail = int(tail_param) if tail_param.lstrip("-").isdigit() else None
        lines = self.cluster.follow_log(
            namespace,
            name,
            follow=request.flag("follow"),
            tail=tail,
            timestamps=request.flag("timestamps"),
        )
        if request.flag("follow"):
            await _stream(http, lines, request, "text/plain")
            return
        body = b"".join([line async for line in lines])
        await _respond(http, _Response(200, body, "text/plain"))

    def _negotiate(
        self, request: _Request, websocket_protocols: Sequence[str], spdy_protocols: Sequence[str]
    ) -> tuple[str, str] | _Response:
        """("websocket"|"spdy", protocol), or the error answer that makes kubectl fall back."""
        upgrade = request.header("upgrade").lower()
        if upgrade == "websocket":
            if not self.websocket:
                return status_response(400, "BadRequest", "websocket upgrades are disabled")
            offered = request.header_values("sec-websocket-protocol")
            chosen = choose_protocol(offered, websocket_protocols)
            if chosen is None or not request.header("sec-websocket-key"):
                return status_response(400, "BadRequest", "no supported websocket subprotocol")
            return "websocket", chosen
        if upgrade.startswith("spdy/3.1"):
            if not self.spdy:
                return status_response(400, "BadRequest", "spdy upgrades are disabled")
            offered = request.header_values("x-stream-protocol-version")
            chosen = choose_protocol(offered, spdy_protocols)
            if chosen is None:
                message = f"unable to upgrade: unable to negotiate protocol: offered {offered}"
                return status_response(403, "Forbidden", message)
            return "spdy", chosen
        return status_response(400, "BadRequest", "Upgrade request required")

    async def _switch(self, http: _Http, request: _Request, kind: str, protocol: str) -> bytes:
        if kind == "websocket":
            headers = [
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", websocket_accept(request.header("sec-websocket-key"))),
                ("sec-websocket-protocol", protocol),
            ]
        else:
            headers = [
                ("upgrade", "SPDY/3.1"),
                ("connection", "Upgrade"),
                ("x-stream-protocol-version", protocol),
            ]
        switch = h11.InformationalResponse(
            status_code=101, headers=headers, reason=b"Switching Protocols"
        )
        http.writer.write(http.conn.send(switch) or b"")
        await http.writer.drain()
        trailing, _ = http.conn.trailing_data
        return trailing

    async def _remote_command(
        self,
        http: _Http,
        request: _Request,
        pod: str,
        container: str,
        sub: str,
    ) -> bool:
        exec_request = demo_exec.ExecRequest(
            tuple(request.query.get("command", [])),
            container,
            request.flag("stdin"),
            request.flag("stdout"),
            request.flag("stderr"),
            request.flag("tty"),
        )
        if sub == "exec" and not exec_request.command:
            message = "you must specify at least one command for the container"
            await _respond(http, status_response(400, "BadRequest", message), close=True)
            return False
        chosen = self._negotiate(request, [V5_PROTOCOL], EXEC_SPDY_PROTOCOLS)
        if isinstance(chosen, _Response):
            await _respond(http, chosen, close=True)
            return False
        runner = self._runner(exec_request, pod, sub)
        trailing = await self._switch(http, request, *chosen)
        if chosen[0] == "websocket":
            await sessions.serve_websocket(
                WebSocketLink(http.reader, http.writer, trailing), exec_request, runner
            )
        else:
            await sessions.serve_spdy(
                RawLink(http.reader, http.writer, trailing), exec_request, runner
            )
        return False

    def _runner(self, request: demo_exec.ExecRequest, pod: str, sub: str) -> sessions.Runner:
        chat = self._chat

        async def run(io: demo_exec.ExecIO) -> bytes:
            if sub == "attach":
                if pod == "chat" and chat is not None:
                    return await chat.attach(request, io)
                return await self._attach_log(pod, request, io)
            cwd = self.cluster.workdir(NAMESPACE, pod)
            return await demo_exec.run_command(request, cwd, self._pod_env(pod), io, self.procs)

        return run

    async def _attach_log(
        self, pod: str, request: demo_exec.ExecRequest, io: demo_exec.ExecIO
    ) -> bytes:
        """Attach to a pod without a main process: its live log output."""
        async for line in self.cluster.follow_log(
            NAMESPACE, pod, follow=True, tail=0, timestamps=False
        ):
            if request.stdout:
                await io.send(1, line)
        return b""  # pragma: no cover - follow never ends

    async def _portforward(
        self,
        http: _Http,
        request: _Request,
        pod: str,
    ) -> bool:
        chosen = self._negotiate(
            request, [PORTFORWARD_WEBSOCKET_PROTOCOL], [PORTFORWARD_SPDY_PROTOCOL]
        )
        if isinstance(chosen, _Response):
            await _respond(http, chosen, close=True)
            return False
        trailing = await self._switch(http, request, *chosen)
        if chosen[0] == "websocket":
            link: Any = WebSocketByteLink(WebSocketLink(http.reader, http.writer, trailing))
        else:
            link = RawLink(http.reader, http.writer, trailing)
        await portforward.PortForwardSession(link, self._port_resolver(pod), pod).run()
        return False

    def _port_resolver(self, pod: str) -> Callable[[int], int | None]:
        spec = self.cluster.specs.get((NAMESPACE, pod))
        ports = dict(spec.ports) if spec else {}

        def resolve(port: int) -> int | None:
            name = ports.get(port)
            return self.services.ports.get(name) if name else None

        return resolve


def _ticker_change(n: int) -> Callable[[JsonObj], None]:
    ready = (n // CHANGE_EVERY_TICKS) % 2 == 0

    def change(pod: JsonObj) -> None:
        pod["metadata"]["labels"]["tick"] = str(n)
        status = pod["status"]
        for cs in status["containerStatuses"]:
            cs["ready"] = ready
        for cond in status["conditions"]:
            if cond["type"] in ("Ready", "ContainersReady"):
                cond["status"] = "True" if ready else "False"

    return change


def _not_found(resource: str, name: str, group: str = "") -> _Response:
    """A real apiserver's NotFound: ``details.kind`` is the resource, ``group`` if any."""
    if not group:
        message = f'{resource} "{name}" not found'
        return status_response(404, "NotFound", message, name=name, kind=resource)
    message = f'{resource}.{group} "{name}" not found'
    return status_response(404, "NotFound", message, name=name, group=group, kind=resource)


def _empty(parts: list[str]) -> tuple[EmptyResource, str | None] | None:
    """The :class:`EmptyResource` a path lists (name None) or gets, if any.

    Lists are served cluster-wide and per namespace, gets only per namespace; a
    namespace that does not exist lists empty, as on a real apiserver.
    """
    match parts:
        case ["api", "v1", *rest]:
            group = ""
        case ["apis", group, "v1", *rest]:
            pass
        case _:
            return None
    name: str | None = None
    match rest:
        case [plural] | ["namespaces", _, plural]:
            pass
        case ["namespaces", _, plural, str(name)]:
            pass
        case _:
            return None
    resource = _EMPTY_BY_PATH.get((group, plural))
    return None if resource is None else (resource, name)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await reader.read(READ_SIZE)
        conn.receive_data(data)


async def _respond(http: _Http, response: _Response, *, close: bool = False) -> None:
    conn, writer = http.conn, http.writer
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("cache-control", "no-cache, private"),
        *response.headers,
    ]
    if close:
        headers.append(("connection", "close"))
    reason = HTTPStatus(response.status).phrase.encode()
    head = h11.Response(status_code=response.status, headers=headers, reason=reason)
    writer.write(conn.send(head) or b"")
    writer.write(conn.send(h11.Data(data=response.body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


async def _stream(
    http: _Http,
    chunks: AsyncIterator[bytes],
    request: _Request,
    content_type: str = "application/json",
) -> None:
    """A chunked response, one chunk per item, until the client hangs up or time is up."""
    conn, reader, writer = http.conn, http.reader, http.writer
    headers = [("content-type", content_type), ("cache-control", "no-cache, private")]
    if content_type == "application/json" and "as=Table" in request.header("accept"):
        headers[0] = ("content-type", TABLE_TYPE)
    writer.write(conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK")) or b"")
    await writer.drain()
    timeout_param = request.param("timeoutSeconds")
    timeout = float(timeout_param) if timeout_param.isdigit() and int(timeout_param) > 0 else None

    async def pump() -> None:
        async for chunk in chunks:
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()

    async def hangup() -> None:
        while await reader.read(READ_SIZE):
            pass

    pumping = asyncio.create_task(pump())
    watching = asyncio.create_task(hangup())
    try:
        await asyncio.wait({pumping, watching}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    with contextlib.suppress(h11.LocalProtocolError, OSError):
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
