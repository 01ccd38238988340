"""Wicket's kubeconfig operations: read the merged view, add/remove its contexts, switch.

This is the only code that writes a kubeconfig: the CLI, the desktop app and the demo
(:func:`write_owned_entries`) all come through :func:`_transaction`. Each write is one
transaction: take the lock files, re-read and parse every file under them (another
writer may have changed them since any earlier read), edit only entries Wicket owns,
and replace only the files whose bytes changed. Functions are synchronous and
thread-safe so the desktop app can call them from a worker thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ruamel.yaml.comments import CommentedMap

from core.errors import KubeconfigError
from core.kube import lock
from core.kube.document import Document, new_document
from core.kube.model import (
    BODY_KEY,
    ClusterSpec,
    ContextInfo,
    Entry,
    Kind,
    MergedView,
    UserRef,
    candidate_names,
    check_cluster_name,
    desired_entries,
    owner_marker,
    owner_of,
)
from core.kube.paths import KubeconfigPaths
from core.kube.writer import write_file
from core.mode import Mode


@dataclass(frozen=True)
class WriteOptions:
    """How a write behaves around the lock.

    ``settle`` keeps the lock a moment after the new file is in place: kubectl reads
    the kubeconfig *before* taking the lock and writes back every entry that differs
    from what it read, so a kubectl that read our old file would revert our write. If
    we still hold the lock when it tries to take it, it fails cleanly instead.
    """

    lock_timeout: float = 10.0
    backups: int = 3
    settle: float = 0.1


DEFAULT_OPTIONS = WriteOptions()


@dataclass(frozen=True)
class Change:
    """What a write did: the files rewritten (empty when nothing changed).

    ``current_context`` is the merged view's afterwards, read under the same lock.
    """

    written: tuple[str, ...]
    cleared_current_context: bool = False
    current_context: str = ""


#: When :func:`write_owned_entries` makes its context current: never, only when no
#: file sets one, or always (a file only Wicket uses).
Switch = Literal["never", "if-unset", "always"]


def load_merged(paths: KubeconfigPaths) -> MergedView:
    """The merged view kubectl would see; reads without locking, as kubectl does."""
    if paths.explicit is not None and not os.path.exists(paths.explicit):
        raise KubeconfigError(f"{paths.explicit}: no such kubeconfig file")
    return _merge(_read_all(paths))


def add_cluster_contexts(
    paths: KubeconfigPaths,
    spec: ClusterSpec,
    *,
    options: WriteOptions = DEFAULT_OPTIONS,
) -> Change:
    """Create or update the cluster's contexts; drop owned entries the spec no longer has."""

    def edit(ws: _Workspace) -> None:
        for kind, names in candidate_names(spec.name).items():
            for name in names:
                _check_ownership(ws, kind, name, spec.name)
        if isinstance(spec.credentials, UserRef):
            ref = spec.credentials.name
            if ws.first("users", ref) is None or ref in candidate_names(spec.name)["users"]:
                raise KubeconfigError(f"no user {ref!r} in {_files(ws)}")
        wanted = desired_entries(spec)
        _put_entries(ws, wanted)
        keep = {(entry.kind, entry.name) for entry in wanted}
        _remove_owned(ws, spec.name, keep)

    return _transaction(paths, edit, options, create=True)


def write_owned_entries(
    paths: KubeconfigPaths,
    cluster: str,
    entries: Sequence[Entry],
    *,
    mode: Mode = Mode.PASSTHROUGH,
    current: str | None = None,
    switch: Switch = "never",
    options: WriteOptions = DEFAULT_OPTIONS,
) -> Change:
    """Create or update hand-built entries, each stamped as owned by ``cluster``.

    For callers whose entries are not a :class:`ClusterSpec` (the demo's bearer-token
    user, the demo apiserver's kubeconfig for tests). A same-named entry that Wicket
    does not own for ``cluster`` is an error, as in :func:`add_cluster_contexts`; a name
    without the ``wicket-`` prefix is never owned, so it can be created but not changed.
    ``current`` becomes the current context as ``switch`` says.
    """
    check_cluster_name(cluster)
    stamped = [
        Entry(e.kind, e.name, {**e.body, "extensions": [owner_marker(cluster, mode)]})
        for e in entries
    ]

    def edit(ws: _Workspace) -> None:
        for entry in stamped:
            _check_ownership(ws, entry.kind, entry.name, cluster)
        _put_entries(ws, stamped)
        if current is not None and _switches(switch, ws):
            ws.default.set_current_context(current)

    return _transaction(paths, edit, options, create=True)


def remove_cluster_contexts(
    paths: KubeconfigPaths,
    name: str,
    *,
    options: WriteOptions = DEFAULT_OPTIONS,
) -> Change:
    """Remove every entry Wicket owns for the cluster, in every file; foreign ones stay."""
    check_cluster_name(name)
    return _transaction(paths, lambda ws: _remove_owned(ws, name, set()), options)


def use_context(
    paths: KubeconfigPaths,
    name: str,
    *,
    options: WriteOptions = DEFAULT_OPTIONS,
) -> Change:
    """Make ``name`` current, in the file ``kubectl config use-context`` would write."""

    def edit(ws: _Workspace) -> None:
        if ws.view().context(name) is None:
            raise KubeconfigError(f"no context {name!r} in {_files(ws)}")
        ws.default.set_current_context(name)

    return _transaction(paths, edit, options)


# -- transactions ----------------------------------------------------------------------


class _Workspace:
    """Every file of the load precedence, parsed under the lock."""

    def __init__(self, paths: KubeconfigPaths) -> None:
        self.docs = _read_all(paths)
        default = next((d for d in self.docs if d.path == paths.default_file), None)
        if default is None:
            default = new_document(paths.default_file)
            self.docs.append(default)
        self.default = default
        self.cleared_current_context = False

    def first(self, kind: Kind, name: str) -> tuple[Document, CommentedMap] | None:
        for doc in self.docs:
            item = doc.find(kind, name)
            if item is not None:
                return doc, item
        return None

    def view(self) -> MergedView:
        return _merge(self.docs)


def _transaction(
    paths: KubeconfigPaths,
    edit: Callable[[_Workspace], None],
    options: WriteOptions,
    *,
    create: bool = False,
) -> Change:
    files = [p for p in paths.precedence if os.path.isdir(os.path.dirname(p))]
    if create and paths.default_file not in files:
        try:
            os.makedirs(os.path.dirname(paths.default_file), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise KubeconfigError(f"{paths.default_file}: {exc.strerror}") from None
        files.append(paths.default_file)
    with lock.hold(files, timeout=options.lock_timeout):
        ws = _Workspace(paths)
        edit(ws)
        written = []
        for doc in ws.docs:
            data = doc.dump()
            if doc.dirty and data != doc.original:
                write_file(doc.path, data, old=doc.original, backups=options.backups)
                written.append(doc.path)
        current = ws.view().current_context
        if written:
            time.sleep(options.settle)
    return Change(tuple(written), ws.cleared_current_context, current)


def _put_entries(ws: _Workspace, entries: Sequence[Entry]) -> None:
    """Each entry goes where its name is first defined, or into the default file."""
    for entry in entries:
        hit = ws.first(entry.kind, entry.name)
        doc = hit[0] if hit is not None else ws.default
        doc.put_entry(entry.kind, entry.name, entry.body)


def _switches(switch: Switch, ws: _Workspace) -> bool:
    return switch == "always" or (switch == "if-unset" and not ws.view().current_context)


def _check_ownership(ws: _Workspace, kind: Kind, name: str, cluster: str) -> None:
    hit = ws.first(kind, name)
    if hit is None:
        return
    doc, item = hit
    owner = owner_of(name, item.get(BODY_KEY[kind]))
    if owner is None:
        raise KubeconfigError(
            f"{doc.path}: {kind[:-1]} {name!r} exists and was not written by Wicket; "
            "rename or remove it first"
        )
    if owner != cluster:
        raise KubeconfigError(
            f"{doc.path}: {kind[:-1]} {name!r} belongs to Wicket cluster {owner!r}"
        )


def _remove_owned(ws: _Workspace, cluster: str, keep: set[tuple[Kind, str]]) -> None:
    removed: set[str] = set()
    for kind, names in candidate_names(cluster).items():
        for name in names:
            if (kind, name) in keep:
                continue
            for doc in ws.docs:
                item = doc.find(kind, name)
                if item is not None and owner_of(name, item.get(BODY_KEY[kind])) == cluster:
                    doc.remove_entry(kind, name)
                    if kind == "contexts":
                        removed.add(name)
    # Never leave current-context pointing at a context that is gone.
    view = ws.view()
    for doc in ws.docs:
        if doc.current_context in removed and view.context(doc.current_context) is None:
            doc.set_current_context("")
            ws.cleared_current_context = True


# -- reading -------------------------------------------------------------------------


def _read_all(paths: KubeconfigPaths) -> list[Document]:
    docs = []
    for path in paths.precedence:
        try:
            with open(os.path.realpath(path), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KubeconfigError(f"{path}: cannot read: {exc.strerror}") from None
        docs.append(Document(path, raw))
    return docs


def _merge(docs: list[Document]) -> MergedView:
    clusters: dict[str, tuple[str, CommentedMap | None]] = {}
    users: dict[str, str] = {}
    contexts: dict[str, ContextInfo] = {}
    current, current_source = "", None
    for doc in docs:
        for item in doc.items("clusters"):
            clusters.setdefault(str(item.get("name") or ""), (doc.path, item.get("cluster")))
        for item in doc.items("users"):
            users.setdefault(str(item.get("name") or ""), doc.path)
        if not current and doc.current_context:
            current, current_source = doc.current_context, doc.path
    for doc in docs:
        for item in doc.items("contexts"):
            name = str(item.get("name") or "")
            if name in contexts:
                continue
            body = item.get("context") or {}
            cluster = str(body.get("cluster") or "")
            cluster_body = clusters.get(cluster, ("", None))[1]
            server = cluster_body.get("server") if cluster_body else None
            contexts[name] = ContextInfo(
                name=name,
                cluster=cluster,
                user=str(body.get("user") or ""),
                namespace=str(body.get("namespace") or ""),
                server=str(server) if server else None,
                source=doc.path,
                wicket_cluster=owner_of(name, body),
            )
    return MergedView(
        files=tuple(doc.path for doc in docs if doc.original is not None),
        contexts=tuple(contexts.values()),
        current_context=current,
        current_context_source=current_source,
        cluster_sources={name: src for name, (src, _) in clusters.items()},
        user_sources=users,
    )


def _files(ws: _Workspace) -> str:
    return ", ".join(doc.path for doc in ws.docs if doc.original is not None) or "(no files)"
