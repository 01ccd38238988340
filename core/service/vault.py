"""Clusters' upstream tokens, in the store each cluster's configuration names.

A cluster's ``secrets`` choice (:data:`~core.service.config.SecretStorage`) picks the
store (``core.secrets.open_store``): the desktop keyring, the passphrase-encrypted
file, or this process's memory ("this session only", which the credential socket still
serves while Wicket runs). Stores are opened once per process and kept. The encrypted
file's passphrase comes from the ``passphrase`` callback: the app's dialog, or
``WICKET_PASSPHRASE_FILE`` (and the terminal, for a command run on one).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from core.errors import SecretBackendUnavailable, SecretPassphraseError
from core.secrets import SecretStore, open_store, passphrase_from_environment, upstream_token_key
from core.secrets.passphrase import PASSPHRASE_FILE_ENV
from core.secrets.state import SecretStoreState
from core.secrets.store import secure_keyring_store
from core.service.config import ClusterConfig, SecretStorage


def headless_passphrase() -> str | None:
    """``WICKET_PASSPHRASE_FILE``'s passphrase (never a prompt: no terminal to ask on)."""
    return passphrase_from_environment(interactive=False)


class TokenVault:
    """The stores, opened on first use (sync callers: the CLI; async: the runtime)."""

    def __init__(
        self,
        passphrase: Callable[[], str | None] = headless_passphrase,
        path: Path | None = None,
    ) -> None:
        self._passphrase = passphrase
        self._path = path
        self._stores: dict[SecretStorage, SecretStore] = {}
        self._lock = threading.Lock()

    def store_sync(self, storage: SecretStorage) -> SecretStore:
        with self._lock:
            if storage not in self._stores:
                self._stores[storage] = self._open(storage)
            return self._stores[storage]

    async def store(self, storage: SecretStorage) -> SecretStore:
        return await asyncio.to_thread(self.store_sync, storage)

    def usable(self) -> SecretStorage:
        """The storage a headless ``wicket cluster add`` picks: the keyring if secure,
        else the encrypted file when a passphrase is at hand (else says how to give one)."""
        keyring = secure_keyring_store()
        if not isinstance(keyring, SecretStoreState):
            return SecretStorage.KEYRING
        try:
            self.store_sync(SecretStorage.ENCRYPTED_FILE)
        except SecretPassphraseError as exc:
            raise SecretBackendUnavailable(
                f"no secure keyring ({keyring.detail}), and {exc}"
            ) from exc
        return SecretStorage.ENCRYPTED_FILE

    async def get(self, cfg: ClusterConfig) -> str | None:
        return await (await self.store(cfg.secrets)).get(upstream_token_key(cfg.name))

    async def set(self, cfg: ClusterConfig, token: str) -> None:
        await (await self.store(cfg.secrets)).set(upstream_token_key(cfg.name), token)

    async def delete(self, cfg: ClusterConfig) -> bool:
        return await (await self.store(cfg.secrets)).delete(upstream_token_key(cfg.name))

    def _open(self, storage: SecretStorage) -> SecretStore:
        if storage is not SecretStorage.ENCRYPTED_FILE:
            return open_store(storage)
        passphrase = self._passphrase()
        if passphrase is None:
            raise SecretPassphraseError(
                f"the encrypted secrets file needs a passphrase: set {PASSPHRASE_FILE_ENV} "
                "to a file (mode 0600) that holds it"
            )
        return open_store(storage, passphrase, path=self._path)
