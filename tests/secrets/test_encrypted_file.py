"""The passphrase-encrypted fallback file: round trip, wrong passphrase, tampering, crashes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.errors import SecretFileCorrupt, SecretPassphraseError, SecretStoreError
from core.secrets.encrypted_file import _HEADER, MAGIC, EncryptedFileVault, ScryptCost

pytestmark = pytest.mark.timeout(30)
CHEAP = ScryptCost(log2_n=12, r=8, p=1)
PASS = "correct horse battery staple"


def _vault(path: Path, passphrase: str = PASS) -> EncryptedFileVault:
    return EncryptedFileVault.open(path, passphrase, CHEAP)


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "wicket" / "secrets.enc"
    vault = _vault(path)
    assert vault.get("a") is None
    assert not path.exists(), "nothing is written before the first secret"
    vault.set("a", "token-AAAA")
    vault.set("b", "token-BBBB")
    assert vault.delete("b") is True
    assert vault.delete("b") is False

    again = _vault(path)
    assert again.get("a") == "token-AAAA"
    assert again.get("b") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    blob = path.read_bytes()
    assert b"token-AAAA" not in blob
    assert PASS.encode() not in blob
    assert os.listdir(path.parent) == ["secrets.enc"], "no key or temp file next to it"


def test_default_cost_works(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    EncryptedFileVault.open(path, PASS).set("a", "b")
    assert path.read_bytes()[len(MAGIC)] == 17
    assert EncryptedFileVault.open(path, PASS).get("a") == "b"


def test_each_file_gets_its_own_salt(tmp_path: Path) -> None:
    _vault(tmp_path / "one").set("a", "b")
    _vault(tmp_path / "two").set("a", "b")
    header_one = (tmp_path / "one").read_bytes()[:_HEADER]
    header_two = (tmp_path / "two").read_bytes()[:_HEADER]
    assert header_one != header_two


def test_wrong_passphrase_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    _vault(path).set("a", "b")
    before = path.read_bytes()
    with pytest.raises(SecretPassphraseError, match="wrong passphrase"):
        _vault(path, "Correct horse battery staple")
    with pytest.raises(SecretPassphraseError, match="empty passphrase"):
        _vault(tmp_path / "new", "")
    assert path.read_bytes() == before


def test_every_tampered_byte_is_detected_and_the_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    _vault(path).set("cluster/x/upstream-token", "tok")
    original = path.read_bytes()
    opened = _vault(path)
    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises((SecretFileCorrupt, SecretPassphraseError, SecretStoreError)):
            _vault(path)
        with pytest.raises(SecretStoreError):
            opened.set("other", "value")  # a vault opened earlier must not overwrite it
        assert path.read_bytes() == bytes(damaged), offset
    for cut in (0, 5, _HEADER, len(original) - 1):
        path.write_bytes(original[:cut])
        with pytest.raises(SecretFileCorrupt):
            _vault(path)


def test_ciphertext_damage_is_reported_as_corruption(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    _vault(path).set("a", "b")
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0x80
    path.write_bytes(bytes(damaged))
    with pytest.raises(SecretFileCorrupt, match="authentication failed"):
        _vault(path)


def test_absurd_scrypt_parameters_are_refused_before_deriving(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    _vault(path).set("a", "b")
    damaged = bytearray(path.read_bytes())
    damaged[len(MAGIC)] = 30  # n = 2**30: gigabytes, if anyone tried
    path.write_bytes(bytes(damaged))
    started = time.monotonic()
    with pytest.raises(SecretFileCorrupt, match="scrypt"):
        _vault(path)
    assert time.monotonic() - started < 1.0


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.enc"
    vault = _vault(path)
    vault.set("a", "old")
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(SecretStoreError, match="No space left"):
        vault.set("a", "new")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["secrets.enc"]
    assert vault.get("a") == "old"


def test_sigkill_during_writes_leaves_old_or_new(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    _vault(path).set("counter", "0")
    writer = textwrap.dedent(
        f"""
        import sys
        from core.secrets.encrypted_file import EncryptedFileVault, ScryptCost
        vault = EncryptedFileVault.open({str(path)!r}, {PASS!r}, ScryptCost(12, 8, 1))
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            vault.set("counter", str(i))
            vault.set("padding", "x" * (i % 5000))
        """
    )
    root = Path(__file__).parents[2]
    for delay in (0.05, 0.13, 0.21):
        proc = subprocess.Popen(
            [sys.executable, "-c", writer], stdout=subprocess.PIPE, cwd=root, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        value = _vault(path).get("counter")
        assert value is not None
        assert int(value) >= 0
    leftovers = [name for name in os.listdir(tmp_path) if name != "secrets.enc"]
    assert all(name.endswith(".tmp") for name in leftovers)
