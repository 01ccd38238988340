"""Clusters' upstream tokens, in the store each cluster's configuration names.

A cluster's ``secrets`` choice (:class:`~core.service.config.SecretStorage`) picks the
store: the desktop keyring, the passphrase-encrypted file, or this process's memory
("this session only"). Stores are opened once per process and kept. The encrypted
file's passphrase comes from ``WICKET_PASSPHRASE_FILE`` (headless) or from the
``passphrase`` callback the app gives (a dialog); without either it cannot be opened,
and the error says which of the two to provide.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

from core.errors import SecretBackendUnavailable
from core.secrets import (
    SecretStore,
    StateKind,
    encrypted_file_store,
    keyring_store,
    memory_store,
    probe_keyring,
    upstream_token_key,
)
from core.service.config import ClusterConfig, SecretStorage

PASSPHRASE_ENV = "WICKET_PASSPHRASE_FILE"  # noqa: S105 (a variable name)


def passphrase_from_env() -> str | None:
    """The passphrase in the file ``$WICKET_PASSPHRASE_FILE`` names, if set."""
    name = os.environ.get(PASSPHRASE_ENV)
    if not name:
        return None
    try:
        return Path(name).read_text().rstrip("\r\n")
    except OSError as exc:
        raise SecretBackendUnavailable(
            f"{PASSPHRASE_ENV}={name}: cannot read it: {exc.strerror}"
        ) from exc


class TokenVault:
    """The stores, opened on first use (sync callers: the CLI; async: the runtime)."""

    def __init__(
        self, passphrase: Callable[[], str | None] = passphrase_from_env, path: Path | None = None
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
        else the encrypted file if a passphrase is at hand (else the keyring's error)."""
        backend, state = probe_keyring()
        if backend is not None and state.kind in (StateKind.SECURE, StateKind.LOCKED):
            return SecretStorage.KEYRING
        if os.environ.get(PASSPHRASE_ENV):
            return SecretStorage.ENCRYPTED_FILE
        raise SecretBackendUnavailable(
            f"no secure keyring ({state.detail}): set {PASSPHRASE_ENV} to a file holding "
            "the passphrase of Wicket's encrypted secrets file"
        )

    async def get(self, cfg: ClusterConfig) -> str | None:
        return await (await self.store(cfg.secrets)).get(upstream_token_key(cfg.name))

    async def set(self, cfg: ClusterConfig, token: str) -> None:
        await (await self.store(cfg.secrets)).set(upstream_token_key(cfg.name), token)

    async def delete(self, cfg: ClusterConfig) -> bool:
        return await (await self.store(cfg.secrets)).delete(upstream_token_key(cfg.name))

    def _open(self, storage: SecretStorage) -> SecretStore:
        if storage is SecretStorage.SESSION:
            return memory_store("chosen: this session only")
        backend, state = probe_keyring()
        if storage is SecretStorage.KEYRING:
            if backend is None or state.kind not in (StateKind.SECURE, StateKind.LOCKED):
                raise SecretBackendUnavailable(
                    f"no secure keyring ({state.detail}): choose the encrypted file or "
                    "this session only"
                )
            return keyring_store(backend, state)
        passphrase = self._passphrase()
        if passphrase is None:
            raise SecretBackendUnavailable(
                f"the encrypted secrets file needs a passphrase: set {PASSPHRASE_ENV}"
            )
        return encrypted_file_store(passphrase, self._path, state.detail)
