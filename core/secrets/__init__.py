"""Secrets: cluster tokens kept in the desktop keyring, or a documented fallback.

Modules: ``state`` (what the app shows), ``probe`` (is this keyring backend secure and
alive?), ``deadline`` (daemon-thread calls with a timeout), ``vaults`` (keyring and
memory), ``encrypted_file`` (the passphrase fallback), ``store`` (the policy, the
user's ``Storage`` choice and the ``SecretStore`` façade), ``passphrase`` (its sources
without a window), ``wire`` and ``socket`` (the running Wicket answers
``wicket credential``). See ``docs/secrets.md``.
"""

from core.secrets.passphrase import open_store_from_environment, passphrase_from_environment
from core.secrets.state import SecretStoreState, StateKind
from core.secrets.store import (
    SecretStore,
    Storage,
    encrypted_file_store,
    keyring_store,
    memory_store,
    open_store,
    probe_keyring,
    upstream_token_key,
)

__all__ = [
    "SecretStore",
    "SecretStoreState",
    "StateKind",
    "Storage",
    "encrypted_file_store",
    "keyring_store",
    "memory_store",
    "open_store",
    "open_store_from_environment",
    "passphrase_from_environment",
    "probe_keyring",
    "upstream_token_key",
]
