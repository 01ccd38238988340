"""Kubernetes client configuration: Wicket's entries in the user's kubeconfig.

``paths`` resolves which files count (client-go's rules), ``model`` is the pure data
Wicket wants written, ``document`` edits one file preserving everything else, ``lock``
and ``writer`` make the write safe against kubectl and crashes, and ``kubeconfig`` ties
them into the operations the CLI and the desktop app call. See ``docs/kubeconfig.md``.
"""

from core.kube.kubeconfig import (
    Change,
    Switch,
    WriteOptions,
    add_cluster_contexts,
    load_merged,
    remove_cluster_contexts,
    use_context,
    write_owned_entries,
)
from core.kube.model import (
    ClusterSpec,
    ContextInfo,
    Credentials,
    Entry,
    ExecCredential,
    MergedView,
    UserRef,
)
from core.kube.paths import KubeconfigPaths
from core.mode import Mode

__all__ = [
    "Change",
    "ClusterSpec",
    "ContextInfo",
    "Credentials",
    "Entry",
    "ExecCredential",
    "KubeconfigPaths",
    "MergedView",
    "Mode",
    "Switch",
    "UserRef",
    "WriteOptions",
    "add_cluster_contexts",
    "load_merged",
    "remove_cluster_contexts",
    "use_context",
    "write_owned_entries",
]
