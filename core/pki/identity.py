"""Roles and names, and how they are written into a certificate's SAN URI.

Pure (no ``cryptography``, no ``ssl``) so the sans-I/O protocol codecs can share the
name rule: a name that is valid on the wire is valid in a certificate, a URI, a file
name and a kubeconfig context name.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

NAME_MAX = 63
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
URI_SCHEME = "wicket"


class Role(enum.StrEnum):
    """What a certificate holder is allowed to be on the relay."""

    AGENT = "agent"
    CLIENT = "client"


def is_valid_name(name: str) -> bool:
    """True if ``name`` follows the cluster/client name rule (1-63 safe characters)."""
    return _NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class Identity:
    """A verified peer: its role and its cluster (agent) or client name."""

    role: Role
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise ValueError(f"unknown role {self.role!r}")
        if not is_valid_name(self.name):
            raise ValueError(f"invalid name {self.name!r}")

    @property
    def uri(self) -> str:
        """The SAN URI that carries this identity: ``wicket://agent/prod-eu``."""
        return f"{URI_SCHEME}://{self.role.value}/{self.name}"

    @classmethod
    def from_uri(cls, uri: str) -> Identity | None:
        """Parse a SAN URI; ``None`` when it is not a well-formed Wicket identity."""
        prefix = f"{URI_SCHEME}://"
        if not uri.startswith(prefix):
            return None
        role_text, sep, name = uri[len(prefix) :].partition("/")
        if not sep or role_text not in {r.value for r in Role} or not is_valid_name(name):
            return None
        return cls(Role(role_text), name)

    def __str__(self) -> str:
        return f"{self.role.value}/{self.name}"
