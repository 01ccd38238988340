"""Shared PKI fixtures: a fixed clock and a relay CA in a temporary state directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from core.pki.ca import CertificateAuthority, load_or_create_ca
from tests.support.postgres import postgres_database, postgres_server
from tests.support.registry import registry

__all__ = ["postgres_database", "postgres_server", "registry"]

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ca(state_dir: Path) -> CertificateAuthority:
    return load_or_create_ca(state_dir, NOW)
