"""The secret store the app and the CLI use, and the user's choice of its vault.

:func:`open_store` opens the :class:`Storage` the user chose: a secure desktop keyring
(LOCKED counts: using it makes the desktop prompt for the unlock), a file encrypted with
a key derived from a passphrase, or this session only (not remembered after Wicket
quits). The keyring is offered first when there is one. Plaintext is never an option.

Every vault call runs in a daemon thread with a deadline (:mod:`core.secrets.deadline`):
the async methods keep the event loop (and the UI painting on it) free, and the sync
ones are for the CLI, which has no loop.
"""

from __future__ import annotations

import enum
from pathlib import Path

import keyring
from keyring.backend import KeyringBackend

from core.errors import SecretBackendUnavailable, SecretPassphraseError
from core.paths import data_dir
from core.secrets.deadline import DeadlineRunner
from core.secrets.encrypted_file import EncryptedFileVault, ScryptCost
from core.secrets.probe import probe_backend
from core.secrets.state import SecretStoreState, StateKind
from core.secrets.vaults import KeyringVault, MemoryVault, Vault

#: keyring service name: every Wicket secret is filed under it.
SERVICE = "wicket"
#: Deadline for one call to an unlocked keyring or the file.
CALL_TIMEOUT = 10.0
#: Deadline when the keyring is locked: the user may be typing into an unlock prompt.
LOCKED_CALL_TIMEOUT = 60.0
#: Deadline for the probe; a keyring slower than this at a lookup is not usable.
PROBE_TIMEOUT = 3.0


class Storage(enum.Enum):
    """Where the user chose to keep secrets; the app and the CLI read the same choice.

    The value is what the desktop configuration stores. ``SESSION`` keeps secrets in the
    running Wicket's memory, which still answers ``wicket credential`` while it runs.
    """

    KEYRING = "keyring"
    ENCRYPTED_FILE = "encrypted-file"
    SESSION = "session"


def upstream_token_key(cluster: str) -> str:
    """The store key of a cluster's upstream token (read by ``wicket credential``)."""
    return f"cluster/{cluster}/upstream-token"


def default_secrets_file() -> Path:
    """``$XDG_DATA_HOME/wicket/secrets.enc`` (default ``~/.local/share``)."""
    return data_dir("secrets.enc")


class SecretStore:
    """Get, set and delete secrets by key, off the caller's thread, within a deadline.

    ``state`` is what the app shows. Errors are :class:`~core.errors.SecretStoreError`
    subclasses: ``SecretTimeout`` for a hung backend, ``SecretStoreLocked``,
    ``SecretPassphraseError``, ``SecretFileCorrupt``.
    """

    def __init__(
        self, vault: Vault, state: SecretStoreState, timeout: float = CALL_TIMEOUT
    ) -> None:
        self.vault = vault
        self.state = state
        self.timeout = timeout
        self._runner = DeadlineRunner(state.detail or state.kind.value)

    async def get(self, key: str) -> str | None:
        return await self._runner.acall("get", lambda: self.vault.get(key), self.timeout)

    async def set(self, key: str, secret: str) -> None:
        await self._runner.acall("set", lambda: self.vault.set(key, secret), self.timeout)

    async def delete(self, key: str) -> bool:
        return await self._runner.acall("delete", lambda: self.vault.delete(key), self.timeout)

    def get_sync(self, key: str) -> str | None:
        return self._runner.call("get", lambda: self.vault.get(key), self.timeout)

    def set_sync(self, key: str, secret: str) -> None:
        self._runner.call("set", lambda: self.vault.set(key, secret), self.timeout)

    def delete_sync(self, key: str) -> bool:
        return self._runner.call("delete", lambda: self.vault.delete(key), self.timeout)


def probe_keyring(
    backend: KeyringBackend | None = None, timeout: float = PROBE_TIMEOUT
) -> tuple[KeyringBackend | None, SecretStoreState]:
    """The keyring backend to use (None if unusable) and its state; ``backend`` defaults
    to keyring's choice, which honours ``PYTHON_KEYRING_BACKEND``."""
    chosen = backend if backend is not None else keyring.get_keyring()
    return probe_backend(chosen, SERVICE, DeadlineRunner("keyring"), timeout)


def keyring_store(backend: KeyringBackend, state: SecretStoreState) -> SecretStore:
    timeout = LOCKED_CALL_TIMEOUT if state.kind is StateKind.LOCKED else CALL_TIMEOUT
    return SecretStore(KeyringVault(backend, SERVICE), state, timeout)


def encrypted_file_store(
    passphrase: str, path: Path | None = None, cost: ScryptCost | None = None
) -> SecretStore:
    """Open (or prepare) the encrypted fallback file; raises on a wrong passphrase."""
    vault = EncryptedFileVault.open(path or default_secrets_file(), passphrase, cost)
    state = SecretStoreState(StateKind.FALLBACK_ENCRYPTED_FILE, str(vault.path))
    return SecretStore(vault, state)


def memory_store() -> SecretStore:
    return SecretStore(MemoryVault(), SecretStoreState(StateKind.NOT_REMEMBERING, ""))


def secure_keyring_store(
    backend: KeyringBackend | None = None,
) -> SecretStore | SecretStoreState:
    """A store on the keyring if it is secure (or locked), else the state saying why not."""
    usable, state = probe_keyring(backend)
    if usable is not None and state.kind in (StateKind.SECURE, StateKind.LOCKED):
        return keyring_store(usable, state)
    return state


def open_store(
    storage: Storage,
    passphrase: str | None = None,
    *,
    path: Path | None = None,
    backend: KeyringBackend | None = None,
) -> SecretStore:
    """The store the user chose; ``passphrase`` is for :attr:`Storage.ENCRYPTED_FILE` only.

    Raises :class:`SecretBackendUnavailable` when the keyring was chosen but is not
    usable (any more), :class:`SecretPassphraseError` for a missing or wrong passphrase.
    The keyring probe blocks for up to :data:`PROBE_TIMEOUT`; call this off the UI thread.
    """
    if storage is Storage.SESSION:
        return memory_store()
    if storage is Storage.ENCRYPTED_FILE:
        if passphrase is None:
            raise SecretPassphraseError("the encrypted secrets file needs a passphrase")
        return encrypted_file_store(passphrase, path)
    keyring_or_state = secure_keyring_store(backend)
    if isinstance(keyring_or_state, SecretStoreState):
        raise SecretBackendUnavailable(
            f"{keyring_or_state.detail}; choose the encrypted file or this session only"
        )
    return keyring_or_state
