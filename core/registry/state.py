"""The relay's state directory: its CA, server certificate, clusters and tokens.

Layout (directory 0700, files 0600)::

    ca.pem, ca-key.pem            the relay CA (core.pki.ca)
    server.pem, server-key.pem    the relay's TLS certificate chain (leaf + CA)
    tokens.json                   one-time join/client tokens, hashed (core.pki.registry)
    clusters.json                 known clusters and their public endpoint ports
    relay.json                    the address the running relay listens on

``wicket relay join-token`` and ``client-token`` work on this directory whether or not
the relay runs; the running relay re-reads ``clusters.json`` when it changes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.format import utcnow
from core.pki import files
from core.pki.ca import CertificateAuthority, load_or_create_ca
from core.pki.identity import is_valid_name
from core.pki.registry import TokenRegistry
from core.pki.tokens import TokenKind, encode

CLUSTERS_FILE = "clusters.json"
RELAY_FILE = "relay.json"


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    public_port: int | None


class RelayState:
    """Everything the relay keeps on disk, behind one object."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = files.ensure_private_dir(state_dir)
        self._cache: tuple[tuple[int, int, int], dict[str, ClusterRecord]] | None = None

    def ca(self, now: dt.datetime | None = None) -> CertificateAuthority:
        return load_or_create_ca(self.dir, now or utcnow())

    def tokens(self) -> TokenRegistry:
        return TokenRegistry(self.dir)

    # -- clusters ----------------------------------------------------------------------

    def clusters(self) -> dict[str, ClusterRecord]:
        """The registered clusters; re-read only when the file changed (one stat a call).

        The running relay consults this for every stream it routes, while
        ``join-token`` (another process) may add clusters at any time.
        """
        path = self.dir / CLUSTERS_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cache is not None and self._cache[0] == key:
            return dict(self._cache[1])
        try:
            doc = json.loads(files.read_file(path, private=True))
            entries = doc["clusters"]
            clusters = {e["name"]: ClusterRecord(e["name"], e.get("public_port")) for e in entries}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a valid clusters file ({exc})") from exc
        self._cache = (key, clusters)
        return dict(clusters)

    def register_cluster(self, name: str, public_port: int | None) -> ClusterRecord:
        if not is_valid_name(name):
            raise ConfigError(f"invalid cluster name {name!r}")
        if public_port is not None and not 1 <= public_port <= 65535:
            raise ConfigError(f"invalid public port {public_port}")
        clusters = self.clusters()
        old = clusters.get(name)
        record = ClusterRecord(
            name, public_port if public_port is not None else (old.public_port if old else None)
        )
        for other in clusters.values():
            if (
                other.name != name
                and record.public_port
                and other.public_port == record.public_port
            ):
                raise ConfigError(
                    f"public port {record.public_port} is already used by cluster {other.name}"
                )
        clusters[name] = record
        self._save_clusters(clusters)
        return record

    def unregister_cluster(self, name: str) -> bool:
        """Forget a cluster (its public endpoint closes at the relay's next sync)."""
        clusters = self.clusters()
        if clusters.pop(name, None) is None:
            return False
        self._save_clusters(clusters)
        return True

    def _save_clusters(self, clusters: dict[str, ClusterRecord]) -> None:
        doc: dict[str, Any] = {
            "version": 1,
            "clusters": [
                {"name": c.name, "public_port": c.public_port}
                for c in sorted(clusters.values(), key=lambda c: c.name)
            ],
        }
        files.write_private(self.dir / CLUSTERS_FILE, json.dumps(doc, indent=1).encode())

    # -- the running relay's address ---------------------------------------------------

    def write_address(self, address: str) -> None:
        files.write_private(self.dir / RELAY_FILE, json.dumps({"address": address}).encode())

    def address(self, override: str | None) -> str:
        if override:
            return override
        path = self.dir / RELAY_FILE
        if path.exists():
            try:
                return str(json.loads(files.read_file(path, private=True))["address"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}: unreadable ({exc})") from exc
        raise ConfigError(
            "no relay address known: start the relay once or pass --address HOST:PORT"
        )

    # -- tokens ------------------------------------------------------------------------

    def join_token(
        self, cluster: str, address: str | None, public_port: int | None, now: dt.datetime
    ) -> str:
        """Register ``cluster`` (if new) and issue a one-time agent enrollment token."""
        self.register_cluster(cluster, public_port)
        ca = self.ca(now)
        token = self.tokens().issue(
            TokenKind.JOIN,
            cluster,
            relay=self.address(address),
            ca_fingerprint=ca.fingerprint,
            now=now,
        )
        return encode(token)

    def client_token(self, name: str, address: str | None, now: dt.datetime) -> str:
        """Issue a one-time desktop-client enrollment token."""
        if not is_valid_name(name):
            raise ConfigError(f"invalid client name {name!r}")
        ca = self.ca(now)
        token = self.tokens().issue(
            TokenKind.CLIENT,
            name,
            relay=self.address(address),
            ca_fingerprint=ca.fingerprint,
            now=now,
        )
        return encode(token)
