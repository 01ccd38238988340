"""The registry tests run on both engines: ``registry`` is SQLite, then PostgreSQL."""

from __future__ import annotations

from tests.support.postgres import postgres_database, postgres_server
from tests.support.registry import registry

__all__ = ["postgres_database", "postgres_server", "registry"]
