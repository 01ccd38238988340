"""Where secrets physically go: the keyring, or memory only.

A vault is the blocking, synchronous half of the store: :class:`SecretStore` runs
every vault call in a daemon thread with a deadline, so vaults may block freely. Keys
are short names such as ``cluster/prod/upstream-token``; values are secrets and appear
in no message.
"""

from __future__ import annotations

import threading
from typing import Protocol

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, NoKeyringError, PasswordDeleteError

from core.errors import SecretBackendUnavailable, SecretStoreError, SecretStoreLocked
from core.secrets.probe import backend_name


class Vault(Protocol):
    """Blocking secret storage; ``delete`` returns whether something was removed."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, secret: str) -> None: ...

    def delete(self, key: str) -> bool: ...


class KeyringVault:
    """One keyring backend under one service name; keyring errors become Wicket's."""

    def __init__(self, backend: KeyringBackend, service: str) -> None:
        self.backend = backend
        self.service = service

    def _translate(self, exc: Exception, what: str) -> SecretStoreError:
        name = backend_name(self.backend)
        if isinstance(exc, KeyringLocked):
            return SecretStoreLocked(f"{name}: the keyring is locked ({what})")
        if isinstance(exc, NoKeyringError):
            return SecretBackendUnavailable(f"{name}: no keyring backend ({what})")
        return SecretStoreError(f"{name}: {what} failed: {type(exc).__name__}")

    # Each method raises the translated error *outside* its except block, so the
    # keyring exception, its frames and their locals (the secret, a D-Bus connection
    # keyring did not close) are freed at once instead of riding along as __context__.

    def get(self, key: str) -> str | None:
        try:
            return self.backend.get_password(self.service, key)
        except Exception as exc:
            error = self._translate(exc, "read")
        raise error

    def set(self, key: str, secret: str) -> None:
        try:
            self.backend.set_password(self.service, key, secret)
            return
        except Exception as exc:
            error = self._translate(exc, "write")
        raise error

    def delete(self, key: str) -> bool:
        try:
            self.backend.delete_password(self.service, key)
            return True
        except PasswordDeleteError:
            return False
        except Exception as exc:
            error = self._translate(exc, "delete")
        raise error


class MemoryVault:
    """Secrets for this session only: the "don't remember" policy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._secrets.get(key)

    def set(self, key: str, secret: str) -> None:
        with self._lock:
            self._secrets[key] = secret

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._secrets.pop(key, None) is not None
