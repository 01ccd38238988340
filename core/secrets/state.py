"""What the app can say about where secrets go.

The app shows this state next to every stored credential, so the user knows whether a
token is in the desktop keyring, in Wicket's passphrase-encrypted file, or only in
memory until Wicket quits. ``detail`` is plain text for people; it never holds a secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StateKind(enum.Enum):
    SECURE = "secure"
    """A desktop keyring (SecretService, KWallet, macOS, Windows) is usable."""
    LOCKED = "locked"
    """A secure keyring exists but is locked; unlocking it makes it usable."""
    UNAVAILABLE = "unavailable"
    """No secure keyring: none installed, a fail/null/plaintext backend, or it errors."""
    FALLBACK_ENCRYPTED_FILE = "fallback-encrypted-file"
    """Secrets go to a file encrypted with a key derived from the user's passphrase."""
    NOT_REMEMBERING = "not-remembering"
    """Secrets stay in memory for this session only and are asked for again next time."""


@dataclass(frozen=True)
class SecretStoreState:
    kind: StateKind
    detail: str
    """Backend name, file path or reason, for display."""

    @classmethod
    def secure(cls, backend: str) -> SecretStoreState:
        return cls(StateKind.SECURE, backend)

    @classmethod
    def locked(cls, backend: str) -> SecretStoreState:
        return cls(StateKind.LOCKED, backend)

    @classmethod
    def unavailable(cls, reason: str) -> SecretStoreState:
        return cls(StateKind.UNAVAILABLE, reason)

    @property
    def persistent(self) -> bool:
        """Whether a secret stored now survives a restart of Wicket."""
        return self.kind in (StateKind.SECURE, StateKind.FALLBACK_ENCRYPTED_FILE)

    def describe(self) -> str:
        """One line for the status bar / settings page."""
        text = {
            StateKind.SECURE: "Secrets are kept in the system keyring",
            StateKind.LOCKED: "The system keyring is locked; unlock it to use saved secrets",
            StateKind.UNAVAILABLE: "No secure keyring is available",
            StateKind.FALLBACK_ENCRYPTED_FILE: "Secrets are kept in a passphrase-encrypted file",
            StateKind.NOT_REMEMBERING: "Secrets are not remembered after Wicket quits",
        }[self.kind]
        return f"{text} ({self.detail})" if self.detail else text
