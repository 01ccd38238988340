"""Plain GETs of the demo apiserver: version, discovery, namespaces, pods, empty lists.

What kubectl needs to map names to resources (discovery documents) and to read the
demo's objects, as JSON or as server-side Tables. Resources the demo discovers but holds
nothing of (:data:`EMPTY_RESOURCES`) answer empty lists and NotFound, so that
``kubectl apply --dry-run=client`` can look up what it would create.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.demo.http_io import (
    TABLE_TYPE,
    Request,
    Response,
    json_response,
    not_found,
    status_response,
)
from core.demo.resources import Cluster, JsonObj

_TableOf = Callable[[list[JsonObj]], JsonObj]


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


def find_empty(parts: list[str]) -> tuple[EmptyResource, str | None] | None:
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


def list_doc(
    kind: str, items: list[JsonObj], resource_version: int, api_version: str = "v1"
) -> JsonObj:
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": str(resource_version)},
        "items": items,
    }


def empty_table(resource_version: int) -> JsonObj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "priority": 0},
        ],
        "rows": [],
    }


def version_doc(git_version: str) -> JsonObj:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


@dataclass
class Reads:
    """Answers the GETs of one demo apiserver; ``address`` is its ``host:port``."""

    cluster: Cluster
    git_version: str
    address: Callable[[], str]

    def get(self, request: Request, parts: list[str]) -> Response:
        for read in (self._discovery, self._namespaces, self._pods, self._empty):
            response = read(request, parts)
            if response is not None:
                return response
        return status_response(404, "NotFound", "the server could not find the requested resource")

    def _discovery(self, _request: Request, parts: list[str]) -> Response | None:
        match parts:
            case ["version"]:
                return json_response(version_doc(self.git_version))
            case ["healthz" | "livez" | "readyz"]:
                return Response(200, b"ok", "text/plain")
            case ["api"]:
                return json_response(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address()}
                        ],
                    }
                )
            case ["apis"]:
                return json_response(
                    {"kind": "APIGroupList", "apiVersion": "v1", "groups": [APPS_GROUP]}
                )
            case ["apis", "apps"]:
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **APPS_GROUP})
            case ["apis", "apps", "v1"]:
                return json_response(APPS_V1_RESOURCES)
            case ["api", "v1"]:
                return json_response(API_RESOURCES)
        return None

    def _namespaces(self, request: Request, parts: list[str]) -> Response | None:
        table_of = self.cluster.namespace_table
        match parts:
            case ["api", "v1", "namespaces"]:
                items = list(self.cluster.namespaces.values())
                return self._many(request, "NamespaceList", items, table_of)
            case ["api", "v1", "namespaces", name]:
                ns = self.cluster.namespaces.get(name)
                return self._one(request, "namespaces", name, ns, table_of)
        return None

    def _pods(self, request: Request, parts: list[str]) -> Response | None:
        table_of = self.cluster.pod_table
        match parts:
            case ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"]:
                namespace = parts[3] if len(parts) == 5 else None
                pods = self.cluster.list_pods(
                    namespace, request.param("labelSelector"), request.param("fieldSelector")
                )
                return self._many(request, "PodList", pods, table_of)
            case ["api", "v1", "namespaces", ns, "pods", name]:
                pod = self.cluster.pod(ns, name)
                return self._one(request, "pods", name, pod, table_of)
        return None

    def _many(
        self, request: Request, kind: str, items: list[JsonObj], table_of: _TableOf
    ) -> Response:
        if request.wants_table:
            return json_response(table_of(items), TABLE_TYPE)
        return json_response(self._list(kind, items))

    @staticmethod
    def _one(
        request: Request, resource: str, name: str, obj: JsonObj | None, table_of: _TableOf
    ) -> Response:
        if obj is None:
            return not_found(resource, name)
        if request.wants_table:
            return json_response(table_of([obj]), TABLE_TYPE)
        return json_response(obj)

    def _empty(self, request: Request, parts: list[str]) -> Response | None:
        found = find_empty(parts)
        if found is None:
            return None
        resource, object_name = found
        if object_name is not None:
            return not_found(resource.resource, object_name, resource.group)
        if request.wants_table:
            return json_response(empty_table(self.cluster.resource_version), TABLE_TYPE)
        return json_response(self._list(f"{resource.kind}List", [], resource.group_version))

    def _list(self, kind: str, items: list[JsonObj], api_version: str = "v1") -> JsonObj:
        return list_doc(kind, items, self.cluster.resource_version, api_version)
