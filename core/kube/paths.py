"""Which files make up "the kubeconfig", resolved exactly as client-go does.

Desktop tools that ignored ``KUBECONFIG`` or merged ``--kubeconfig`` with it wrote to
files kubectl never reads. The environment and home directory are inputs here, so the
app passes the user's login-shell values and tests never touch the real ``~/.kube``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class KubeconfigPaths:
    """The kubeconfig files in load precedence, plus the file kubectl writes to.

    Exactly one source applies: ``explicit`` (``--kubeconfig``), else ``env_files``
    (``KUBECONFIG``), else ``home_file`` (``~/.kube/config``).
    """

    explicit: str | None
    env_files: tuple[str, ...]
    home_file: str

    @classmethod
    def resolve(
        cls, explicit: str | None = None, *, env: Mapping[str, str], home: str
    ) -> KubeconfigPaths:
        """Resolve from an explicit file, the ``KUBECONFIG`` in ``env``, or ``home``."""
        files: list[str] = []
        for entry in env.get("KUBECONFIG", "").split(os.pathsep):
            path = os.path.abspath(entry) if entry else ""
            if path and path not in files:
                files.append(path)
        return cls(
            explicit=os.path.abspath(explicit) if explicit else None,
            env_files=tuple(files),
            home_file=os.path.join(os.path.abspath(home), ".kube", "config"),
        )

    @classmethod
    def single(cls, path: str) -> KubeconfigPaths:
        """Exactly one file, as ``--kubeconfig FILE`` names it (the demo's own files)."""
        return cls(explicit=os.path.abspath(path), env_files=(), home_file="")

    @classmethod
    def from_process(cls, explicit: str | None = None) -> KubeconfigPaths:
        """Resolve from this process's environment (for the command line)."""
        return cls.resolve(explicit, env=os.environ, home=os.path.expanduser("~"))

    @property
    def precedence(self) -> tuple[str, ...]:
        """Files in load order; the first one defining a name wins."""
        if self.explicit is not None:
            return (self.explicit,)
        return self.env_files or (self.home_file,)

    @property
    def default_file(self) -> str:
        """Where ``kubectl config use-context`` and new entries go (``GetDefaultFilename``)."""
        if self.explicit is not None:
            return self.explicit
        if len(self.env_files) == 1:
            return self.env_files[0]
        if self.env_files:
            existing = [path for path in self.env_files if os.path.exists(path)]
            return existing[0] if existing else self.env_files[-1]
        return self.home_file
