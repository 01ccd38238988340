"""Where the registry lives: the SQLite file in the state directory, or a PostgreSQL
database a fleet of relays shares (``--store postgresql://…``).

A password never rides in the URL: the command line is visible to every user of the
machine (``/proc/*/cmdline``, ``ps``), so a URL that carries one is refused. It comes
from ``--store-password-file`` (0600), or from libpq's own sources: ``PGPASSWORD``, a
passfile (``~/.pgpass``, ``PGPASSFILE`` or the URL's ``passfile=``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from core.errors import ConfigError, PKIError
from core.pki import files
from core.registry.store import RegistryStore

SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StoreLocation:
    """``url`` None: ``<state>/registry.db``; else a PostgreSQL URL without a password."""

    url: str | None = None
    password_file: Path | None = None
    #: Seals the fleet CA's key in the store (core.registry.fleetca).
    ca_key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.url is None:
            if self.password_file is not None or self.ca_key_file is not None:
                raise ConfigError(
                    "--store-password-file and --ca-key-file need --store postgresql://…"
                )
            return
        parts = urlsplit(self.url)
        if parts.scheme not in SCHEMES:
            raise ConfigError(
                "--store takes a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE); "
                "without it the registry is <state-dir>/registry.db"
            )
        if parts.password or "password" in parse_qs(parts.query):
            raise ConfigError(
                "--store: the URL holds a password, which the command line shows to every "
                "user of this machine; refused. Give it with --store-password-file FILE "
                "(mode 0600), PGPASSWORD or a passfile instead"
            )

    @property
    def fleet(self) -> bool:
        """Whether the registry is shared by a fleet (a database, not the state dir)."""
        return self.url is not None

    def password(self) -> str | None:
        """The contents of ``password_file`` (one line), or None: libpq looks itself."""
        if self.password_file is None:
            return None
        try:
            text = files.read_file(self.password_file, private=True).decode()
        except PKIError as exc:
            raise ConfigError(f"--store-password-file: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.password_file}: not a password (not text)") from exc
        password = text.rstrip("\r\n")
        if not password or "\n" in password:
            raise ConfigError(f"{self.password_file}: holds no single-line password")
        return password

    def ca_key(self) -> bytes | None:
        """The key that seals the fleet CA's key, or None (stored in the clear)."""
        if self.ca_key_file is None:
            return None
        from core.registry.fleetca import read_key_file

        try:
            return read_key_file(self.ca_key_file)
        except PKIError as exc:
            raise ConfigError(f"--ca-key-file: {exc}") from exc

    def open(self, state_dir: Path | None, now: dt.datetime) -> RegistryStore:
        """The store: ``<state_dir>/registry.db``, or a connection to the database."""
        if self.url is None:
            from core.registry.sqlite import SqliteStore

            assert state_dir is not None, "the SQLite registry lives in the state dir"
            return SqliteStore.open(state_dir, now)
        try:
            from core.registry.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"--store {self.url}: the PostgreSQL store needs psycopg "
                "(pip install 'kubewicket[fleet]')"
            ) from exc
        return PostgresStore.open(self.url, password=self.password())

    def __str__(self) -> str:
        return self.url or "registry.db"
