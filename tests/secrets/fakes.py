"""Fake keyring backends, named as fakes: they prove Wicket's handling, not keyring's.

Their priority is below keyring's fail backend, so keyring's own detection and the
chainer never pick them up in other tests.
"""

from __future__ import annotations

import threading

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class FakeDictKeyring(KeyringBackend):
    """An in-memory keyring standing in for a secure desktop one."""

    priority = -1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[service, username] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


class FakeHangingKeyring(KeyringBackend):
    """Blocks forever in every call, like SecretService waiting on an unanswered prompt."""

    priority = -1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entered = threading.Event()
        self._never = threading.Event()

    def _hang(self) -> None:
        self.entered.set()
        self._never.wait()

    def get_password(self, service: str, username: str) -> str | None:
        self._hang()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._hang()

    def delete_password(self, service: str, username: str) -> None:
        self._hang()


class FakeRaisingKeyring(KeyringBackend):
    """Raises ``error`` from every call (the message may even contain the secret)."""

    priority = -1

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.error = error or RuntimeError("backend exploded")

    def get_password(self, service: str, username: str) -> str | None:
        raise self.error

    def set_password(self, service: str, username: str, password: str) -> None:
        raise ValueError(f"refused to store {password}")

    def delete_password(self, service: str, username: str) -> None:
        raise self.error


class FakeLockedKeyring(FakeRaisingKeyring):
    """Refuses every call with keyring's ``KeyringLocked``."""

    def __init__(self) -> None:
        super().__init__(KeyringLocked("Failed to unlock the collection!"))

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.error


class FakePlaintextKeyring(FakeDictKeyring):
    """Looks like a keyrings.alt backend (plaintext file), which must be refused."""


FakePlaintextKeyring.__module__ = "keyrings.alt.file"


def new_backend(cls: type[KeyringBackend]) -> KeyringBackend:
    """Instantiate one of keyring's own (untyped) backend classes."""
    return cls()
