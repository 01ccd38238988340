"""What the relay's registry holds, and the interface every store of it offers.

The relay, the ``wicket relay …`` commands and the desktop app change the registry from
several processes at once, so a store is transactional: each method below is one short
transaction, and nothing is ever loaded, changed in memory and written back whole (that
lost writes: issue 12). ``core.registry.sqlite`` and ``core.registry.postgres`` implement
the same protocol (docs/registry.md); the PostgreSQL one, shared by a fleet of relays,
also keeps what the members must share besides: the CA (``FleetStore``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.pki.identity import Role
from core.pki.tokens import TokenKind

#: A client's scope: the names of the clusters it may open streams to, or ``ALL_CLUSTERS``.
Scope = frozenset[str] | None
ALL_CLUSTERS: Scope = None


@dataclass(frozen=True)
class TokenRecord:
    """What the relay remembers about an issued token (never the secret)."""

    token_id: str
    kind: TokenKind
    name: str
    secret_hash: str = field(repr=False)
    created: dt.datetime
    expires: dt.datetime | None
    used_at: dt.datetime | None = None
    revoked: bool = False
    #: The clusters a client token's identities may reach; ``ALL_CLUSTERS`` for every one.
    #: (A join token's agent reaches its own cluster only: its scope is empty.)
    scope: Scope = frozenset()

    def usable(self, now: dt.datetime) -> bool:
        return (
            self.used_at is None
            and not self.revoked
            and (self.expires is None or now < self.expires)
        )


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    public_port: int | None


@dataclass(frozen=True)
class IdentityRecord:
    """A certificate the relay issued at enrollment, and the token that paid for it.

    Kept so that later changes (scopes, revocations) can name what was issued; the
    certificate itself goes to the peer only.
    """

    serial: str  # lowercase hex
    role: Role
    name: str
    fingerprint: str  # SHA-256 of the certificate (DER), lowercase hex
    issued_at: dt.datetime
    not_after: dt.datetime
    token_id: str
    revoked: bool = False
    #: When a session of it last began or ended (``wicket relay list``).
    last_seen: dt.datetime | None = None
    scope: Scope = frozenset()


class RegistryStore(Protocol):
    """The relay's registry: each call is one transaction, safe across processes."""

    def add_token(self, record: TokenRecord) -> None:
        """Store a newly issued token (its id is new: 64 random bits)."""

    def token(self, token_id: str) -> TokenRecord | None: ...

    def tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""

    def use_token(self, token_id: str, now: dt.datetime) -> bool:
        """Mark the token used if it is unused, unrevoked and unexpired at ``now``.

        One conditional update: of any number of concurrent calls for one token, in any
        number of processes, exactly one returns True.
        """

    def revoke_token(self, token_id: str) -> bool:
        """False if the id is unknown."""

    def add_identity(self, record: IdentityRecord) -> None: ...

    def identities(self) -> list[IdentityRecord]:
        """Every issued identity, oldest first."""

    def revoke_identities(self, role: Role, name: str) -> int:
        """Revoke every identity issued to ``role`` ``name``; returns how many."""

    def identity_revoked(self, fingerprint: str) -> bool:
        """Whether the identity with this certificate fingerprint was revoked."""

    def scope(self, fingerprint: str) -> Scope:
        """The clusters this identity may reach: its token's scope (empty if unknown)."""

    def set_scope(self, name: str, scope: Scope) -> int:
        """Give the client tokens named ``name`` (so the identities they enrolled, and
        those they will) the scope ``scope``, in one transaction; returns how many."""

    def seen(self, fingerprint: str, now: dt.datetime) -> None:
        """Record that a session of this identity began or ended at ``now``."""

    def revoke_tokens(self, kind: TokenKind, name: str) -> int:
        """Revoke the unused tokens of ``kind`` for ``name``; returns how many."""

    def generation(self) -> int:
        """A number that changes when another connection commits (the relay polls it to
        notice a revocation or a removed cluster made by another process)."""

    def clusters(self) -> dict[str, ClusterRecord]:
        """The registered clusters; cheap when nothing changed (the relay asks per stream)."""

    def put_cluster(self, name: str, public_port: int | None) -> ClusterRecord:
        """Add or update a cluster; ``None`` keeps its port. ``ConfigError`` if the port
        is another cluster's."""

    def remove_cluster(self, name: str) -> bool:
        """False if the cluster is unknown."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class CaRecord:
    """A fleet's CA as its store keeps it: the certificate, and the private key as PEM
    (``key_encryption`` "none") or sealed with the members' key file ("aes-256-gcm":
    nonce, then ciphertext and tag; core.registry.fleetca)."""

    cert_pem: bytes
    key: bytes = field(repr=False)
    key_encryption: str
    created: dt.datetime


#: A member writes its heartbeat this often (seconds), and is listed while its last one
#: is younger than ``LIVE_WINDOW``: one that stops drops out within 10 s.
HEARTBEAT_INTERVAL = 2.0
LIVE_WINDOW = 6.0


@dataclass(frozen=True)
class MemberRecord:
    """A relay of the fleet: where agents reach it, since when, and its last heartbeat."""

    member_id: str
    advertise: str
    started: dt.datetime
    heartbeat: dt.datetime


@runtime_checkable
class FleetStore(RegistryStore, Protocol):
    """A registry several relays share, with what they must agree on besides."""

    def ca(self) -> CaRecord | None:
        """The fleet's CA, or None before the first member made it."""

    def add_ca(self, record: CaRecord) -> CaRecord:
        """Store ``record`` unless a CA is there already; the one stored either way (of
        members starting at once, every one gets the first one's)."""

    def heartbeat(self, member_id: str, advertise: str) -> None:
        """Record that this member is alive now (the database's clock), joining the
        list if it is not in it (its first beat, or after its row was removed)."""

    def leave(self, member_id: str) -> None:
        """Take this member off the list (a clean shutdown)."""

    def members(self, within: float = LIVE_WINDOW) -> list[MemberRecord]:
        """The members whose last heartbeat is at most ``within`` seconds old, oldest
        first."""
