"""Passphrase sources without a window, and the storage choice the app and CLI share."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from keyring.backends import fail

from core.errors import SecretBackendUnavailable, SecretPassphraseError
from core.secrets import (
    StateKind,
    Storage,
    open_store,
    open_store_from_environment,
    passphrase_from_environment,
)
from core.secrets.passphrase import PASSPHRASE_FILE_ENV, read_passphrase_file
from tests.secrets.fakes import FakeDictKeyring, new_backend
from tests.support.credential import on_a_terminal

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).parents[2]


def _file(tmp_path: Path, text: str = "correct horse\n", mode: int = 0o600) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_file_gives_the_passphrase(tmp_path: Path) -> None:
    assert read_passphrase_file(_file(tmp_path)) == "correct horse"
    assert read_passphrase_file(_file(tmp_path, "with crlf\r\n", 0o400)) == "with crlf"
    assert read_passphrase_file(_file(tmp_path, " spaces kept ")) == " spaces kept "


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("pw", 0o640, "mode 0640 lets others read it; run chmod 600"),
        ("pw", 0o604, "mode 0604 lets others read it"),
        ("\n", 0o600, "the file is empty"),
        ("x" * 5000, 0o600, "larger than a passphrase"),
    ],
)
def test_a_file_others_can_read_or_that_holds_no_passphrase_is_refused(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    with pytest.raises(SecretPassphraseError, match=message) as caught:
        read_passphrase_file(_file(tmp_path, text, mode))
    assert PASSPHRASE_FILE_ENV in str(caught.value)
    assert "pw" not in str(caught.value).replace(PASSPHRASE_FILE_ENV, "").replace("passphrase", "")


def test_not_a_regular_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretPassphraseError, match="not a regular file"):
        read_passphrase_file(fifo)
    with pytest.raises(SecretPassphraseError, match="No such file"):
        read_passphrase_file(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path)
    os.chown(path, 65534, 65534)
    with pytest.raises(SecretPassphraseError, match="owned by uid 65534, not by you"):
        read_passphrase_file(path)


def test_the_environment_decides_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_FILE_ENV, raising=False)
    assert passphrase_from_environment(tmp_path / "secrets.enc", interactive=False) is None
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(_file(tmp_path)))
    assert passphrase_from_environment(interactive=False) == "correct horse"


def test_headless_open_needs_a_passphrase_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_FILE_ENV, raising=False)
    secrets_file = tmp_path / "secrets.enc"
    with pytest.raises(SecretPassphraseError, match=f"set {PASSPHRASE_FILE_ENV} to a file"):
        open_store_from_environment(Storage.ENCRYPTED_FILE, interactive=False, path=secrets_file)
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(_file(tmp_path)))
    store = open_store_from_environment(
        Storage.ENCRYPTED_FILE, interactive=False, path=secrets_file
    )
    assert store.state.kind is StateKind.FALLBACK_ENCRYPTED_FILE
    session = open_store_from_environment(Storage.SESSION, interactive=False)
    assert session.state.kind is StateKind.NOT_REMEMBERING


def test_each_storage_choice_opens_its_store(tmp_path: Path) -> None:
    keyring = FakeDictKeyring()
    store = open_store(Storage.KEYRING, backend=keyring)
    assert store.state.kind is StateKind.SECURE
    store.set_sync("k", "v")
    assert keyring.items == {("wicket", "k"): "v"}

    path = tmp_path / "secrets.enc"
    store = open_store(Storage.ENCRYPTED_FILE, "pw", path=path, backend=keyring)
    assert store.state.kind is StateKind.FALLBACK_ENCRYPTED_FILE
    assert store.state.persistent

    store = open_store(Storage.SESSION, backend=keyring)
    assert store.state.kind is StateKind.NOT_REMEMBERING
    assert not store.state.persistent
    assert [s.value for s in Storage] == ["keyring", "encrypted-file", "session"]


def test_a_choice_that_cannot_be_honoured_says_what_to_choose(tmp_path: Path) -> None:
    with pytest.raises(SecretBackendUnavailable, match="choose the encrypted file or this session"):
        open_store(Storage.KEYRING, backend=new_backend(fail.Keyring))
    with pytest.raises(SecretPassphraseError, match="needs a passphrase"):
        open_store(Storage.ENCRYPTED_FILE, path=tmp_path / "secrets.enc")


_PROMPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from core.errors import SecretPassphraseError
    from core.secrets import passphrase_from_environment
    try:
        got = passphrase_from_environment(Path(sys.argv[1]), interactive=True)
    except SecretPassphraseError as exc:
        print("REFUSED:", exc)
    else:
        print("GOT", len(got), "chars")
    """
)


def _prompt_on_a_terminal(path: Path, answers: list[bytes]) -> bytes:
    """Run the prompt on a real terminal and type ``answers``; what the terminal showed."""
    command = f"{sys.executable} -c '{_PROMPT}' {path}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(PASSPHRASE_FILE_ENV, None)
    prompts = zip([b"Passphrase for", b"again"], answers, strict=False)
    return on_a_terminal(command, env, list(prompts))[1]


def test_a_new_file_asks_twice_on_the_terminal(tmp_path: Path) -> None:
    new = tmp_path / "secrets.enc"
    output = _prompt_on_a_terminal(new, [b"first-try", b"second-try"])
    assert b"REFUSED: the two passphrases differ" in output, output
    output = _prompt_on_a_terminal(new, [b"same-both", b"same-both"])
    assert b"GOT 9 chars" in output, output
    assert b"same-both" not in output, "the passphrase was echoed"

    new.write_bytes(b"exists")  # an existing file: asked once
    output = _prompt_on_a_terminal(new, [b"only-once"])
    assert b"GOT 9 chars" in output, output
    assert b"again" not in output
