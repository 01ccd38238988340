"""Wicket's store against a real gnome-keyring over a private D-Bus session."""

from __future__ import annotations

import gc
import time
from contextlib import closing

import pytest
import secretstorage
from keyring.backends import SecretService

from core.errors import SecretStoreLocked, SecretTimeout
from core.secrets import StateKind, Storage, open_store, probe_keyring
from core.secrets.store import SERVICE
from tests.secrets.fakes import new_backend

pytestmark = pytest.mark.timeout(30)


def _items_for(username: str) -> list[bytes]:
    with closing(secretstorage.dbus_init()) as bus:
        collection = secretstorage.Collection(bus)
        found = collection.search_items({"service": SERVICE, "username": username})
        return [item.get_secret() for item in found]


def _lock_default_collection() -> None:
    with closing(secretstorage.dbus_init()) as bus:
        collection = secretstorage.Collection(bus)
        collection.lock()
        assert collection.is_locked()


async def test_round_trip_through_the_real_keyring(secret_service: str) -> None:
    store = open_store(Storage.KEYRING, backend=new_backend(SecretService.Keyring))
    assert store.state.kind is StateKind.SECURE
    assert "SecretService" in store.state.detail

    await store.set("cluster/prod/upstream-token", "tok-ß-123")
    assert await store.get("cluster/prod/upstream-token") == "tok-ß-123"
    # Really in gnome-keyring, under Wicket's service name, not in some other store.
    assert _items_for("cluster/prod/upstream-token") == ["tok-ß-123".encode()]

    await store.set("cluster/prod/upstream-token", "tok-2")
    assert store.get_sync("cluster/prod/upstream-token") == "tok-2"
    assert await store.delete("cluster/prod/upstream-token") is True
    assert await store.delete("cluster/prod/upstream-token") is False
    assert await store.get("cluster/prod/upstream-token") is None
    assert _items_for("cluster/prod/upstream-token") == []


# keyring 25.7 leaves its D-Bus connection open when unlocking fails; Wicket drops the
# exception at once, so the socket is finalised (with a ResourceWarning) in this test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_locked_collection_is_reported_and_never_hangs(secret_service: str) -> None:
    store = open_store(Storage.KEYRING, backend=new_backend(SecretService.Keyring))
    await store.set("k", "v")
    _lock_default_collection()

    backend, state = probe_keyring(new_backend(SecretService.Keyring))
    assert backend is not None
    assert state.kind is StateKind.LOCKED, state

    # Reading asks gnome-keyring to unlock; headless, the prompt fails or never comes.
    store.timeout = 3.0
    started = time.monotonic()
    with pytest.raises((SecretStoreLocked, SecretTimeout)):
        await store.get("k")
    assert time.monotonic() - started < 4.0
    gc.collect()
