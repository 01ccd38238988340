"""The fleet tests run relays on a real PostgreSQL (tests/support/postgres.py)."""

from __future__ import annotations

from tests.support.postgres import postgres_database, postgres_server

__all__ = ["postgres_database", "postgres_server"]
