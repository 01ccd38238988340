"""The demo apiserver: enough of the Kubernetes API for the real kubectl, over HTTP/1.1.

TLS with its own CA (bearer token or client certificate required) or plain HTTP for
tests. Serves version and discovery, namespaces (get, list) and pods (get, list, watch,
tables), pod logs (with follow), and the streaming subresources exec, attach (WebSocket
v5 and SPDY v4) and portforward (SPDY and the WebSocket tunnel). Events, secrets,
service accounts, persistent volume claims and ``apps/v1`` deployments are discovered
but hold no objects (empty lists, 404 for a named object), so that
``kubectl apply --dry-run=client`` can map and look up what it would create. Every
write is refused with 405. What it implements and how is in docs/demo.md.

This module runs the server, its pods and its connections and routes each request;
the answers live beside it: ``reads`` (plain GETs), ``watches``, ``logs`` and
``streaming`` (exec, attach, port-forward), over ``http_io``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11

from core.demo import exec as demo_exec
from core.demo import sessions
from core.demo.http_io import (
    Http,
    Request,
    next_event,
    not_found,
    respond,
    status_response,
    stream,
)
from core.demo.logs import attach_log, serve_log
from core.demo.pki import DemoPKI, ensure_pki
from core.demo.reads import Reads
from core.demo.resources import Cluster, JsonObj, PodSpec
from core.demo.services import LocalServices
from core.demo.streaming import Upgrades, serve_portforward, serve_remote_command
from core.demo.transport import close_writer
from core.demo.watches import watch
from core.format import host_port
from core.kube import Entry, KubeconfigPaths, WriteOptions, write_owned_entries

GIT_VERSION = "v1.32.4"
HANDSHAKE_TIMEOUT = 10.0
TICK_SECONDS = 1.0
CHANGE_EVERY_TICKS = 3
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
NAMESPACE = "default"
#: The Wicket cluster owning the entries of ``write_kubeconfig``.
KUBECONFIG_OWNER = "demo"
#: Throwaway files for tests and ``python -m core.demo``: no backups, no settle.
KUBECONFIG_OPTIONS = WriteOptions(backups=0, settle=0.0)

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
        self._reads = Reads(self.cluster, git_version, lambda: host_port(self.host, self.port))

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
    def upgrades(self) -> Upgrades:
        return Upgrades(websocket=self.websocket, spdy=self.spdy)

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
            # stop() cancels: the task must end quietly, as Python 3.11's start_server
            # callback calls exception() on it, which raises (and logs) the cancellation.
            with contextlib.suppress(
                OSError, h11.ProtocolError, asyncio.IncompleteReadError, asyncio.CancelledError
            ):
                await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            await close_writer(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        http = Http(conn, reader, writer)
        peer_cert = writer.get_extra_info("peercert")
        while True:
            event = await next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return
            while not isinstance(await next_event(conn, reader), h11.EndOfMessage):
                pass  # bodies are not used by anything we serve
            request = Request.from_h11(event)
            if not self._authenticated(request, bool(peer_cert)):
                await respond(http, status_response(401, "Unauthorized", "Unauthorized"))
            elif not await self._route(http, request):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _authenticated(self, request: Request, has_client_cert: bool) -> bool:
        if not self.tls or has_client_cert or request.path in ANONYMOUS_PATHS:
            return True
        scheme, _, token = request.header("authorization").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.bearer_token.encode()
        )

    async def _route(self, http: Http, request: Request) -> bool:
        """Serve one request; False when the connection must not be reused."""
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            return await self._subresource(http, request, parts[3], parts[5], parts[6])
        if request.method != "GET":
            await respond(http, status_response(405, "MethodNotAllowed", "the demo is read-only"))
            return True
        if request.flag("watch") and (chunks := watch(self.cluster, request, parts)) is not None:
            await stream(http, chunks, request)
            return False
        await respond(http, self._reads.get(request, parts))
        return True

    # -- subresources ------------------------------------------------------------------

    async def _subresource(
        self, http: Http, request: Request, namespace: str, name: str, sub: str
    ) -> bool:
        pod = self.cluster.pod(namespace, name)
        if pod is None:
            await respond(http, not_found("pods", name), close=True)
            return False
        container = request.param("container") or pod["spec"]["containers"][0]["name"]
        if container not in {c["name"] for c in pod["spec"]["containers"]}:
            message = f"container {container} is not valid for pod {name}"
            await respond(http, status_response(404, "NotFound", message), close=True)
            return False
        if sub == "log" and request.method == "GET":
            await serve_log(http, request, self.cluster, namespace, name)
            return not request.flag("follow")
        if sub in ("exec", "attach"):
            return await serve_remote_command(
                http,
                request,
                upgrades=self.upgrades,
                sub=sub,
                container=container,
                runner_for=lambda exec_request: self._runner(exec_request, name, sub),
            )
        if sub == "portforward":
            return await serve_portforward(
                http, request, self.upgrades, name, self._port_resolver(name)
            )
        await respond(http, status_response(404, "NotFound", f"no subresource {sub}"))
        return True

    def _runner(self, request: demo_exec.ExecRequest, pod: str, sub: str) -> sessions.Runner:
        chat = self._chat

        async def run(io: demo_exec.ExecIO) -> bytes:
            if sub == "attach":
                if pod == "chat" and chat is not None:
                    return await chat.attach(request, io)
                return await attach_log(self.cluster, NAMESPACE, pod, request, io)
            cwd = self.cluster.workdir(NAMESPACE, pod)
            return await demo_exec.run_command(request, cwd, self._pod_env(pod), io, self.procs)

        return run

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
