"""Decide whether a keyring backend really protects secrets, and whether it answers.

keyring always hands back *some* backend: headless Linux gets ``fail.Keyring`` (every
call raises), ``keyrings.alt`` quietly becomes the default as a plaintext or merely
obfuscated file, and the chainer may wrap nothing useful. None of those may hold a
cluster token, so :func:`resolve_backend` rejects them by type before any call, and
:func:`probe_backend` then makes one harmless call (a lookup of a name that is never
stored) under a deadline, because a backend that raises or hangs is no better.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null
from keyring.errors import KeyringLocked

from core.errors import SecretTimeout
from core.secrets.deadline import DeadlineRunner
from core.secrets.state import SecretStoreState

#: Looked up by the probe, never stored.
PROBE_USERNAME = "wicket-probe-never-stored"


def backend_name(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _rejection(backend: KeyringBackend) -> str | None:
    """Why this (non-chainer) backend must not hold secrets, or None if it may."""
    if isinstance(backend, fail.Keyring):
        return "no keyring backend is installed or reachable (keyring's fail backend)"
    if isinstance(backend, null.Keyring):
        return "the null keyring backend stores nothing"
    if type(backend).__module__.startswith("keyrings.alt"):
        return f"{backend_name(backend)} keeps secrets in plaintext or only obfuscated"
    return None


def resolve_backend(backend: KeyringBackend) -> tuple[KeyringBackend | None, str]:
    """The backend to use (a chainer is unwrapped to its best secure member), or a reason.

    A chainer writes to the first member that accepts the call, which may be a plaintext
    one ranked above the real keyring; using the secure member directly avoids that.
    """
    if isinstance(backend, chainer.ChainerBackend):
        members: list[KeyringBackend] = list(backend.backends)
        for member in members:
            if _rejection(member) is None:
                return member, ""
        names = ", ".join(backend_name(m) for m in members) or "none"
        return None, f"the keyring chainer has no secure backend (members: {names})"
    reason = _rejection(backend)
    return (None, reason) if reason else (backend, "")


def _secretservice_locked(backend: Any) -> str | None:
    """For SecretService, check the lock without triggering an unlock prompt."""
    import secretstorage
    from secretstorage.exceptions import ItemNotFoundException

    path = getattr(backend, "preferred_collection", secretstorage.collection.DEFAULT_COLLECTION)
    with closing(secretstorage.dbus_init()) as bus:
        try:
            locked = secretstorage.Collection(bus, path).is_locked()
        except ItemNotFoundException:
            return "SecretService has no default keyring yet (the desktop prompts to create one)"
    return "SecretService keyring is locked" if locked else None


def _probe_call(backend: KeyringBackend, service: str) -> SecretStoreState:
    name = backend_name(backend)
    try:
        if isinstance(backend, SecretService.Keyring):
            locked = _secretservice_locked(backend)
            if locked:
                return SecretStoreState.locked(locked)
        backend.get_password(service, PROBE_USERNAME)
    except KeyringLocked:
        return SecretStoreState.locked(name)
    except Exception as exc:  # any backend failure makes it unusable; say which
        return SecretStoreState.unavailable(f"{name} failed: {type(exc).__name__}: {exc}")
    return SecretStoreState.secure(name)


def probe_backend(
    backend: KeyringBackend, service: str, runner: DeadlineRunner, timeout: float
) -> tuple[KeyringBackend | None, SecretStoreState]:
    """Classify ``backend`` and make one bounded call to it.

    Returns the backend to use (unwrapped from a chainer) and the state to show; the
    backend is None when it must not be used at all.
    """
    usable, reason = resolve_backend(backend)
    if usable is None:
        return None, SecretStoreState.unavailable(reason)
    try:
        state = runner.call("probe", lambda: _probe_call(usable, service), timeout)
    except SecretTimeout as exc:
        state = SecretStoreState.unavailable(f"{exc} (a locked keyring waiting on a prompt?)")
    return usable, state
