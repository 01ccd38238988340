"""Where a Wicket without a window gets the encrypted file's passphrase.

``wicket up``, ``wicket cluster add`` and ``wicket credential`` cannot show a dialog.
They take the passphrase from the file named by ``WICKET_PASSPHRASE_FILE`` (for
services and scripts: systemd credentials, a file in a tmpfs), else from the terminal
when there is one. The file must be the user's own and unreadable by anyone else,
like an ssh key: a passphrase that others can read protects nothing.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path

from core.errors import SecretPassphraseError
from core.secrets.store import SecretStore, Storage, default_secrets_file, open_store

PASSPHRASE_FILE_ENV = "WICKET_PASSPHRASE_FILE"  # noqa: S105 (a variable name, not a secret)
_MAX_PASSPHRASE_FILE = 4096


def read_passphrase_file(path: Path) -> str:
    """The passphrase in ``path``, without its trailing newline.

    Refused unless ``path`` is a regular file owned by this user with no group or other
    permission bits (0600 or 0400).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not hang
    except OSError as exc:
        raise SecretPassphraseError(f"{PASSPHRASE_FILE_ENV}={path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())  # the opened file, not whatever the name points to now
        _check_private(path, info)
        raw = f.read(_MAX_PASSPHRASE_FILE + 1)
    if len(raw) > _MAX_PASSPHRASE_FILE:
        raise SecretPassphraseError(f"{PASSPHRASE_FILE_ENV}={path}: larger than a passphrase")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise SecretPassphraseError(f"{PASSPHRASE_FILE_ENV}={path}: not UTF-8 text") from None
    passphrase = text.removesuffix("\n").removesuffix("\r")
    if not passphrase:
        raise SecretPassphraseError(f"{PASSPHRASE_FILE_ENV}={path}: the file is empty")
    return passphrase


def _check_private(path: Path, info: os.stat_result) -> None:
    where = f"{PASSPHRASE_FILE_ENV}={path}"
    if not stat.S_ISREG(info.st_mode):
        raise SecretPassphraseError(f"{where}: not a regular file")
    if info.st_uid != os.geteuid():
        raise SecretPassphraseError(f"{where}: owned by uid {info.st_uid}, not by you")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise SecretPassphraseError(
            f"{where}: mode {mode:04o} lets others read it; run chmod 600 {path}"
        )


def prompt_passphrase(path: Path) -> str:
    """Ask on the terminal; twice for a file that does not exist yet (a typo would lock
    the user out of everything stored after it)."""
    try:
        passphrase = getpass.getpass(f"Passphrase for {path}: ", stream=sys.stderr)
        if not path.exists():
            again = getpass.getpass("The same passphrase again: ", stream=sys.stderr)
            if again != passphrase:
                raise SecretPassphraseError("the two passphrases differ; nothing was stored")
    except (EOFError, KeyboardInterrupt):
        raise SecretPassphraseError(f"no passphrase was given for {path}") from None
    return passphrase


def passphrase_from_environment(path: Path | None = None, *, interactive: bool) -> str | None:
    """``WICKET_PASSPHRASE_FILE`` if set, else the terminal if ``interactive``, else None.

    ``path`` is the encrypted file (default :func:`default_secrets_file`), named in the
    prompt. The caller decides ``interactive``: ``sys.stdin.isatty()`` for a command the
    user runs, kubectl's ``spec.interactive`` for the credential plugin.
    """
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    if named:
        return read_passphrase_file(Path(named))
    if interactive:
        return prompt_passphrase(path or default_secrets_file())
    return None


def open_store_from_environment(
    storage: Storage, *, interactive: bool, path: Path | None = None
) -> SecretStore:
    """:func:`open_store` for ``wicket up`` and ``wicket cluster``: the passphrase, when
    the encrypted file is chosen, comes from :func:`passphrase_from_environment`."""
    if storage is not Storage.ENCRYPTED_FILE:
        return open_store(storage)
    path = path or default_secrets_file()
    passphrase = passphrase_from_environment(path, interactive=interactive)
    if passphrase is None:
        raise SecretPassphraseError(
            f"the secrets in {path} need a passphrase and there is no terminal to ask on: "
            f"set {PASSPHRASE_FILE_ENV} to a file (mode 0600) that holds it"
        )
    return open_store(storage, passphrase, path=path)
