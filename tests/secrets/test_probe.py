"""Failing, insecure, locked and hanging keyring backends are recognised as such."""

from __future__ import annotations

import time

import pytest
from keyring.backends import chainer, fail, null

from core.secrets import StateKind, probe_keyring
from tests.secrets.fakes import (
    FakeDictKeyring,
    FakeHangingKeyring,
    FakeLockedKeyring,
    FakePlaintextKeyring,
    FakeRaisingKeyring,
    new_backend,
)

pytestmark = pytest.mark.timeout(30)


def test_fail_backend_is_unavailable() -> None:
    backend, state = probe_keyring(new_backend(fail.Keyring))
    assert backend is None
    assert state.kind is StateKind.UNAVAILABLE
    assert "fail backend" in state.detail


def test_null_backend_is_unavailable() -> None:
    backend, state = probe_keyring(new_backend(null.Keyring))
    assert backend is None
    assert state.kind is StateKind.UNAVAILABLE


def test_plaintext_keyrings_alt_backend_is_refused() -> None:
    backend, state = probe_keyring(FakePlaintextKeyring())
    assert backend is None
    assert state.kind is StateKind.UNAVAILABLE
    assert "plaintext" in state.detail


def test_chainer_with_nothing_usable_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        chainer.ChainerBackend, "backends", [FakePlaintextKeyring(), new_backend(null.Keyring)]
    )
    backend, state = probe_keyring(new_backend(chainer.ChainerBackend))
    assert backend is None
    assert state.kind is StateKind.UNAVAILABLE
    assert "chainer" in state.detail


def test_chainer_is_unwrapped_to_its_secure_member(monkeypatch: pytest.MonkeyPatch) -> None:
    secure = FakeDictKeyring()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [FakePlaintextKeyring(), secure])
    backend, state = probe_keyring(new_backend(chainer.ChainerBackend))
    assert backend is secure
    assert state.kind is StateKind.SECURE


def test_backend_whose_probe_raises_is_unavailable() -> None:
    backend, state = probe_keyring(FakeRaisingKeyring(OSError("D-Bus went away")))
    assert backend is not None
    assert state.kind is StateKind.UNAVAILABLE
    assert "D-Bus went away" in state.detail


def test_backend_that_reports_locked_is_locked() -> None:
    _, state = probe_keyring(FakeLockedKeyring())
    assert state.kind is StateKind.LOCKED


def test_hanging_probe_times_out_within_the_bound() -> None:
    hanging = FakeHangingKeyring()
    started = time.monotonic()
    _, state = probe_keyring(hanging, timeout=0.3)
    elapsed = time.monotonic() - started
    assert hanging.entered.is_set()
    assert state.kind is StateKind.UNAVAILABLE
    assert "did not return within 0.3 s" in state.detail
    assert 0.29 <= elapsed < 1.0


def test_secure_backend() -> None:
    backend, state = probe_keyring(FakeDictKeyring())
    assert backend is not None
    assert state.kind is StateKind.SECURE
    assert state.persistent
    assert "FakeDictKeyring" in state.describe()
