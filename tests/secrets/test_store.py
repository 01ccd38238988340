"""The store: round trips, the storage choices, error translation, and hangs that stay
bounded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from keyring.backends import fail

from core.errors import (
    SecretBackendUnavailable,
    SecretPassphraseError,
    SecretStoreError,
    SecretStoreLocked,
    SecretTimeout,
)
from core.secrets import (
    SecretStore,
    StateKind,
    Storage,
    keyring_store,
    memory_store,
    open_store,
)
from core.secrets.encrypted_file import ScryptCost
from core.secrets.state import SecretStoreState
from core.secrets.vaults import KeyringVault
from tests.secrets.fakes import (
    FakeDictKeyring,
    FakeHangingKeyring,
    FakeLockedKeyring,
    FakeRaisingKeyring,
    new_backend,
)

pytestmark = pytest.mark.timeout(30)
CHEAP = ScryptCost(log2_n=12, r=8, p=1)


def _store(backend: FakeDictKeyring | FakeHangingKeyring | FakeRaisingKeyring) -> SecretStore:
    return keyring_store(backend, SecretStoreState.secure(type(backend).__name__))


async def test_async_round_trip_through_keyring_vault() -> None:
    backend = FakeDictKeyring()
    store = _store(backend)
    assert await store.get("a") is None
    await store.set("a", "secret-1")
    assert backend.items == {("wicket", "a"): "secret-1"}
    assert await store.get("a") == "secret-1"
    assert await store.delete("a") is True
    assert await store.delete("a") is False


def test_sync_round_trip_in_memory() -> None:
    store = memory_store()
    assert store.state.kind is StateKind.NOT_REMEMBERING
    assert not store.state.persistent
    store.set_sync("a", "b")
    assert store.get_sync("a") == "b"
    assert store.delete_sync("a") is True
    assert store.get_sync("a") is None


async def test_hanging_backend_times_out_and_the_loop_keeps_running() -> None:
    store = _store(FakeHangingKeyring())
    store.timeout = 0.3
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(SecretTimeout, match=r"set did not return within 0\.3 s"):
        await store.set("k", "v")
    elapsed = time.monotonic() - started
    task.cancel()
    assert 0.29 <= elapsed < 1.0
    assert ticks >= 10, "the event loop was blocked while the backend hung"

    # The stuck thread is remembered: the next call fails at once instead of piling up.
    started = time.monotonic()
    with pytest.raises(SecretTimeout, match="still hanging"):
        await store.get("k")
    assert time.monotonic() - started < 0.1


def test_hanging_backend_sync_call_returns_within_the_bound() -> None:
    store = _store(FakeHangingKeyring())
    store.timeout = 0.3
    started = time.monotonic()
    with pytest.raises(SecretTimeout):
        store.get_sync("k")
    assert 0.29 <= time.monotonic() - started < 1.0


def test_hung_call_does_not_block_interpreter_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from core.errors import SecretTimeout
        from core.secrets import keyring_store
        from core.secrets.state import SecretStoreState
        from tests.secrets.fakes import FakeHangingKeyring

        def make():
            store = keyring_store(FakeHangingKeyring(), SecretStoreState.secure("fake"))
            store.timeout = 0.2
            return store

        try:
            make().set_sync("k", "v")
        except SecretTimeout:
            print("sync timed out")

        async def main():
            try:
                await make().set("k", "v")
            except SecretTimeout:
                print("async timed out")

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["sync timed out", "async timed out"]
    assert elapsed < 5.0


async def test_keyring_errors_become_wicket_errors_without_the_secret() -> None:
    store = _store(FakeRaisingKeyring())
    with pytest.raises(SecretStoreError) as caught:
        await store.set("k", "hunter2-secret")
    assert "hunter2-secret" not in str(caught.value)
    # No chain back to the backend's frames, where the secret is a local variable.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None

    locked = keyring_store(FakeLockedKeyring(), SecretStoreState.locked("fake"))
    assert locked.timeout == 60.0  # room to answer the desktop's unlock prompt
    with pytest.raises(SecretStoreLocked):
        locked.get_sync("k")


def test_the_keyring_choice_takes_a_secure_keyring() -> None:
    store = open_store(Storage.KEYRING, backend=FakeDictKeyring())
    assert store.state.kind is StateKind.SECURE
    assert isinstance(store.vault, KeyringVault)


def test_without_a_keyring_this_session_only() -> None:
    with pytest.raises(SecretBackendUnavailable, match=r"fail backend.*choose the encrypted file"):
        open_store(Storage.KEYRING, backend=new_backend(fail.Keyring))
    store = open_store(Storage.SESSION, backend=new_backend(fail.Keyring))
    assert store.state.kind is StateKind.NOT_REMEMBERING
    assert not store.state.persistent


def test_without_a_keyring_the_encrypted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.enc"
    with pytest.raises(SecretPassphraseError, match="needs a passphrase"):
        open_store(Storage.ENCRYPTED_FILE, path=path, backend=new_backend(fail.Keyring))

    monkeypatch.setattr("core.secrets.encrypted_file.ScryptCost", lambda: CHEAP)
    store = open_store(Storage.ENCRYPTED_FILE, "pw", path=path, backend=new_backend(fail.Keyring))
    assert store.state.kind is StateKind.FALLBACK_ENCRYPTED_FILE
    assert store.state.persistent
    assert str(path) in store.state.describe()
    store.set_sync("k", "v")
    assert path.exists()
