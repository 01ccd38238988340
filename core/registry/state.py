"""The relay's state directory: its CA, server certificate, and its registry.

Layout (directory 0700, files 0600)::

    ca.pem, ca-key.pem            the relay CA (core.pki.ca), created under ca.pem.lock;
                                  a fleet's is in its store (core.registry.fleetca)
    server.pem, server-key.pem    the relay's TLS certificate chain (leaf + CA)
    registry.db (-wal, -shm)      tokens (hashed), issued identities, clusters and their
                                  public ports (core.registry.sqlite, docs/registry.md);
                                  a fleet keeps them in PostgreSQL instead
                                  (``--store``: core.registry.location)
    relay.json (+ .lock)          the address the running relay listens on

``wicket relay join-token`` and ``client-token`` work on this directory whether or not
the relay runs: every change is a transaction in ``registry.db``, and the running relay
sees another process's change at its next lookup.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from cryptography import x509

from core import fsutil
from core.errors import ConfigError, PKIError, RegistryError
from core.format import utcnow
from core.pki import files
from core.pki.ca import CertificateAuthority, load_or_create_ca
from core.pki.identity import Role, is_valid_name
from core.pki.keys import cert_from_pem, fingerprint
from core.pki.tokens import TokenKind, encode
from core.registry.fleetca import fleet_ca
from core.registry.location import StoreLocation
from core.registry.store import ClusterRecord, FleetStore, IdentityRecord, RegistryStore, Scope
from core.registry.tokens import TokenRegistry

RELAY_FILE = "relay.json"


class RelayState:
    """Everything the relay keeps on disk, behind one object.

    The registry is opened on first use (so a refused one fails ``Relay.start()``, not
    its constructor) and stays open until :meth:`close`. After that only :meth:`open`
    opens it again: a lookup still in flight when the relay stopped (a worker thread's)
    is refused, not allowed to reopen the registry the stop closed and leave it open.
    """

    def __init__(self, state_dir: Path | None, location: StoreLocation | None = None) -> None:
        self.location = location or StoreLocation()
        if state_dir is None and not self.location.fleet:
            raise ConfigError("--state-dir is required (or --store postgresql://… for a fleet)")
        self._dir = None if state_dir is None else files.ensure_private_dir(state_dir)
        self._store: RegistryStore | None = None
        self._closed = False
        self._opening = threading.Lock()

    @property
    def dir(self) -> Path:
        """The state directory; a fleet's token commands may do without one."""
        if self._dir is None:
            raise ConfigError("this needs --state-dir (the relay's state directory)")
        return self._dir

    @property
    def store(self) -> RegistryStore:
        return self._open(reopen=False)

    def open(self) -> RegistryStore:
        """Open (or migrate) the registry now, before any other file is created: a
        refused state dir is then left exactly as it was."""
        return self._open(reopen=True)

    def _open(self, *, reopen: bool) -> RegistryStore:
        with self._opening:  # the check and the open at once: a close cannot come between
            if reopen:
                self._closed = False
            elif self._closed:
                raise RegistryError("the relay's registry is closed (the relay stopped)")
            if self._store is None:
                self._store = self.location.open(self._dir, utcnow())
            return self._store

    def close(self) -> None:
        with self._opening:
            self._closed = True
            if self._store is not None:
                self._store.close()
                self._store = None

    def ca(self, now: dt.datetime | None = None) -> CertificateAuthority:
        """The CA, created by the first of any number of processes starting at once:
        in the state directory, or for a fleet in its store (core.registry.fleetca)."""
        if self.location.fleet:  # (a state dir's CA needs no registry open)
            return fleet_ca(self._fleet_store(), self.location.ca_key(), self._dir, now or utcnow())
        with fsutil.locked(self.dir / "ca.pem"):
            return load_or_create_ca(self.dir, now or utcnow())

    def ca_fingerprint(self, now: dt.datetime | None = None) -> str:
        """What tokens pin. A fleet's from its store, without its key: an operator's
        token commands need no --ca-key-file once a member has started."""
        record = self._fleet_store().ca() if self.location.fleet else None
        if record is not None:
            return fingerprint(cert_from_pem(record.cert_pem, source="the fleet's store (CA)"))
        return self.ca(now).fingerprint

    def _fleet_store(self) -> FleetStore:
        store = self.store
        assert isinstance(store, FleetStore), "a fleet's location opens a fleet's store"
        return store

    def tokens(self) -> TokenRegistry:
        return TokenRegistry(self.store)

    # -- identities --------------------------------------------------------------------

    def record_identity(
        self, cert: x509.Certificate, role: Role, name: str, token_id: str, now: dt.datetime
    ) -> IdentityRecord:
        """Remember a certificate issued at enrollment (and the token it used)."""
        record = IdentityRecord(
            format(cert.serial_number, "x"),
            role,
            name,
            fingerprint(cert),
            now,
            cert.not_valid_after_utc,
            token_id,
        )
        self.store.add_identity(record)
        return record

    def revoke_identities(self, role: Role, name: str) -> int:
        """Revoke what was issued to ``role`` ``name`` (the relay refuses it from now on)."""
        return self.store.revoke_identities(role, name)

    def identity_revoked(self, fingerprint: str) -> bool:
        return self.store.identity_revoked(fingerprint)

    def revoke(self, role: Role, name: str) -> int:
        """``wicket relay revoke``: every identity of ``role`` ``name`` and its unused
        tokens, so that it can neither reconnect nor enroll again with a token it holds.
        The running relay ends its live sessions within a second (it polls the registry)."""
        kind = TokenKind.JOIN if role == Role.AGENT else TokenKind.CLIENT
        self.store.revoke_tokens(kind, name)
        return self.store.revoke_identities(role, name)

    def set_scope(self, name: str, scope: Scope) -> int:
        """``wicket relay scope``: client ``name`` (its identities and its tokens, used or
        not) reaches the clusters of ``scope`` from now on; the running relays apply it to
        its live sessions within a second (the streams it no longer covers end)."""
        bad = sorted(c for c in scope or () if not is_valid_name(c))
        if bad:
            raise ConfigError(f"invalid cluster name {bad[0]!r}")
        return self.store.set_scope(name, scope)

    def identities(self) -> list[IdentityRecord]:
        """Every identity issued, with its scope and when it was last seen."""
        return self.store.identities()

    # -- clusters ----------------------------------------------------------------------

    def clusters(self) -> dict[str, ClusterRecord]:
        """The registered clusters (cheap: the running relay asks for every stream)."""
        return self.store.clusters()

    def register_cluster(self, name: str, public_port: int | None) -> ClusterRecord:
        if not is_valid_name(name):
            raise ConfigError(f"invalid cluster name {name!r}")
        if public_port is not None and not 1 <= public_port <= 65535:
            raise ConfigError(f"invalid public port {public_port}")
        return self.store.put_cluster(name, public_port)

    def unregister_cluster(self, name: str) -> bool:
        """Forget a cluster (its public endpoint closes at the relay's next sync)."""
        return self.store.remove_cluster(name)

    # -- the running relay's address ---------------------------------------------------

    def write_address(self, address: str) -> None:
        """Under the file's lock: two relays started on one directory take turns."""
        path = self.dir / RELAY_FILE
        data = json.dumps({"address": address}).encode()
        try:
            fsutil.update_locked(path, lambda _old: data)
        except OSError as exc:
            raise PKIError(f"{path}: cannot write: {exc.strerror}") from exc

    def address(self, override: str | None) -> str:
        if override:
            return override
        if self._dir is None:
            raise ConfigError("a fleet's tokens need --address HOST:PORT (where agents and "
                              "clients reach the fleet: its load balancer)")  # fmt: skip
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
        self.open()
        relay = self.address(address)
        ca = self.ca_fingerprint(now)  # neither missing: then register
        self.register_cluster(cluster, public_port)
        return self._issue(TokenKind.JOIN, cluster, relay, ca, now)

    def client_token(
        self, name: str, address: str | None, now: dt.datetime, *, scope: Scope
    ) -> str:
        """Issue a one-time desktop-client enrollment token; the identity it enrolls may
        open streams to the clusters of ``scope`` only (``ALL_CLUSTERS``: to every one)."""
        if not is_valid_name(name):
            raise ConfigError(f"invalid client name {name!r}")
        bad = sorted(c for c in scope or () if not is_valid_name(c))
        if bad:
            raise ConfigError(f"invalid cluster name {bad[0]!r}")
        self.open()
        relay, ca = self.address(address), self.ca_fingerprint(now)
        return self._issue(TokenKind.CLIENT, name, relay, ca, now, scope=scope)

    def _issue(
        self,
        kind: TokenKind,
        name: str,
        relay: str,
        ca_fingerprint: str,
        now: dt.datetime,
        *,
        scope: Scope = frozenset(),
    ) -> str:
        token = self.tokens().issue(
            kind, name, relay=relay, ca_fingerprint=ca_fingerprint, now=now, scope=scope
        )
        return encode(token)
