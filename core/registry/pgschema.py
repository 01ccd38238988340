"""The registry's schema in PostgreSQL, its versions, and the checks before any write.

``schema_version`` (one row) holds the version and marks the database as Wicket's:
a database that has tables but no such row is refused, and so is one whose version
is newer than this code's. ``SCHEMAS[n-1]`` makes version n; an upgrade is one
transaction under an advisory lock, so relays of a fleet starting at once take turns
and the later ones find the work done. Later versions only add (tables, columns): a
member that still runs the previous release keeps working during a rolling upgrade.

Changes that matter to running relays (a cluster added, moved or removed; an identity
revoked; a client's scope changed) bump the one row of ``registry_changes`` and
``NOTIFY wicket_registry`` with its new value, in the same transaction, from triggers:
whichever process or tool writes the row, every relay hears of it after the commit.
Recording when an identity was last seen, or using a token, changes nothing the
relays follow and notifies no one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from core.errors import RegistryError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

APPLICATION = "wicket-registry"
CHANNEL = "wicket_registry"
#: ``pg_advisory_xact_lock`` key of the upgrade ("WCKT" as in the SQLite application id).
UPGRADE_LOCK = 0x57434B54

SCHEMAS = (
    """
    CREATE TABLE schema_version (
        single      boolean PRIMARY KEY DEFAULT true CHECK (single),
        application text NOT NULL CHECK (application = 'wicket-registry'),
        version     integer NOT NULL
    );
    CREATE TABLE tokens (
        id           text PRIMARY KEY,
        kind         text NOT NULL CHECK (kind IN ('join', 'client')),
        name         text NOT NULL,
        secret_hash  text NOT NULL,
        created      timestamptz NOT NULL,
        expires      timestamptz,
        used         timestamptz,
        revoked      boolean NOT NULL DEFAULT false,
        all_clusters boolean NOT NULL DEFAULT false
    );
    CREATE INDEX tokens_by_name ON tokens (kind, name);
    CREATE TABLE token_clusters (
        token_id    text NOT NULL REFERENCES tokens (id),
        cluster     text NOT NULL,
        PRIMARY KEY (token_id, cluster)
    );
    CREATE TABLE identities (
        serial      text PRIMARY KEY,
        role        text NOT NULL CHECK (role IN ('agent', 'client')),
        name        text NOT NULL,
        fingerprint text NOT NULL UNIQUE,
        issued      timestamptz NOT NULL,
        not_after   timestamptz NOT NULL,
        token_id    text NOT NULL REFERENCES tokens (id),
        revoked     boolean NOT NULL DEFAULT false,
        last_seen   timestamptz
    );
    CREATE INDEX identities_by_name ON identities (role, name);
    CREATE TABLE clusters (
        name        text PRIMARY KEY,
        public_port integer UNIQUE CHECK (public_port BETWEEN 1 AND 65535)
    );
    CREATE TABLE registry_changes (
        single      boolean PRIMARY KEY DEFAULT true CHECK (single),
        n           bigint NOT NULL
    );
    INSERT INTO registry_changes (n) VALUES (0);
    CREATE FUNCTION wicket_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        counter bigint;
    BEGIN
        UPDATE registry_changes SET n = n + 1 RETURNING n INTO counter;
        PERFORM pg_notify('wicket_registry', counter::text);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER clusters_changed AFTER INSERT OR UPDATE OR DELETE ON clusters
        FOR EACH ROW EXECUTE FUNCTION wicket_registry_changed();
    CREATE TRIGGER scopes_changed AFTER INSERT OR UPDATE OR DELETE ON token_clusters
        FOR EACH ROW EXECUTE FUNCTION wicket_registry_changed();
    CREATE TRIGGER all_clusters_changed AFTER UPDATE OF all_clusters ON tokens
        FOR EACH ROW WHEN (OLD.all_clusters IS DISTINCT FROM NEW.all_clusters)
        EXECUTE FUNCTION wicket_registry_changed();
    CREATE TRIGGER identity_revoked AFTER UPDATE OF revoked ON identities
        FOR EACH ROW WHEN (OLD.revoked IS DISTINCT FROM NEW.revoked)
        EXECUTE FUNCTION wicket_registry_changed();
    CREATE TRIGGER identity_removed AFTER DELETE ON identities
        FOR EACH ROW EXECUTE FUNCTION wicket_registry_changed();
    """,
    # 2: the fleet's one CA (core.registry.fleetca): its key as PEM or sealed.
    """
    CREATE TABLE ca (
        single         boolean PRIMARY KEY DEFAULT true CHECK (single),
        cert_pem       bytea NOT NULL,
        key            bytea NOT NULL,
        key_encryption text NOT NULL CHECK (key_encryption IN ('none', 'aes-256-gcm')),
        created        timestamptz NOT NULL
    );
    """,
    # 3: the members of the fleet, each with the address agents reach it on and its
    # last heartbeat (the database's clock: members' clocks may differ).
    """
    CREATE TABLE members (
        id          text PRIMARY KEY,
        advertise   text NOT NULL,
        started     timestamptz NOT NULL DEFAULT now(),
        heartbeat   timestamptz NOT NULL DEFAULT now()
    );
    """,
)
SCHEMA_VERSION = len(SCHEMAS)


def upgrade(conn: psycopg.Connection[TupleRow], where: str) -> int:
    """Check the database and bring it to ``SCHEMA_VERSION``; the version it had.

    A refusal (foreign, newer) is a ``RegistryError`` and nothing was written. The
    common case, a database already current, takes no lock; anything else is decided
    under the lock, where no other member's upgrade can commit between two reads.
    """
    with contextlib.suppress(RegistryError):
        if checked_version(conn, where) == SCHEMA_VERSION:
            return SCHEMA_VERSION
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
        version = checked_version(conn, where)  # another member may have upgraded
        for script in SCHEMAS[version:]:
            conn.execute(script.encode())
        conn.execute(
            "INSERT INTO schema_version (application, version) VALUES (%s, %s)"
            " ON CONFLICT (single) DO UPDATE SET version = EXCLUDED.version",
            (APPLICATION, SCHEMA_VERSION),
        )
    return version


def checked_version(conn: psycopg.Connection[TupleRow], where: str) -> int:
    """The schema version, after refusing a foreign or newer database (reads only)."""
    # pg_tables, not to_regclass(): a plain query sees what committed since this
    # transaction began (the catalog cache may not yet), both counts in one snapshot.
    marked, tables = conn.execute(
        "SELECT count(*) FILTER (WHERE tablename = 'schema_version'), count(*)"
        " FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchone() or (0, 0)
    if not marked:
        if tables:
            raise RegistryError(f"{where}: not a Wicket registry; refused, nothing was changed")
        return 0
    row = conn.execute("SELECT application, version FROM schema_version").fetchone()
    if row is None or row[0] != APPLICATION:
        raise RegistryError(f"{where}: not a Wicket registry; refused, nothing was changed")
    version = int(row[1])
    if version > SCHEMA_VERSION:
        raise RegistryError(
            f"{where}: schema version {version} is newer than this Wicket's"
            f" ({SCHEMA_VERSION}); refused, nothing was changed: upgrade Wicket"
        )
    return version
