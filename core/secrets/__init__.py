"""Secrets: cluster tokens kept in the desktop keyring, or a documented fallback.

Modules: ``state`` (what the app shows), ``probe`` (is this keyring backend secure and
alive?), ``deadline`` (daemon-thread calls with a timeout), ``vaults`` (keyring and
memory), ``encrypted_file`` (the passphrase fallback), ``store`` (the policy and the
``SecretStore`` façade). See ``docs/secrets.md``.
"""

from core.secrets.state import SecretStoreState, StateKind
from core.secrets.store import (
    Fallback,
    SecretStore,
    encrypted_file_store,
    keyring_store,
    memory_store,
    open_secret_store,
    probe_keyring,
    upstream_token_key,
)

__all__ = [
    "Fallback",
    "SecretStore",
    "SecretStoreState",
    "StateKind",
    "encrypted_file_store",
    "keyring_store",
    "memory_store",
    "open_secret_store",
    "probe_keyring",
    "upstream_token_key",
]
