"""A real SecretService: gnome-keyring-daemon on a private D-Bus session.

``dbus-run-session`` starts a throwaway session bus and runs a small shell that starts
``gnome-keyring-daemon --unlock`` (passphrase on its stdin) in a throwaway HOME, prints
the bus address, then waits for its own stdin to close. Closing it ends the session;
the whole process group is killed afterwards in case anything lingers. The test
process talks to that bus by pointing ``DBUS_SESSION_BUS_ADDRESS`` at it, so the
developer's own keyring is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path

import pytest

KEYRING_PASSPHRASE = "wicket-test-keyring-passphrase"
_SESSION_SCRIPT = """
printf '%s\\n' "$DBUS_SESSION_BUS_ADDRESS"
printf '%s' "$1" | gnome-keyring-daemon --unlock --components=secrets --foreground \
    >/dev/null 2>&1 &
exec cat >/dev/null
"""


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} missing: run scripts/install-system-test-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _secrets_name_owned() -> bool:
    """Whether our daemon owns the name; asking does not D-Bus-activate a second one."""
    from jeepney import DBus  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

    with open_dbus_connection("SESSION") as conn:
        reply = conn.send_and_get_reply(DBus().NameHasOwner("org.freedesktop.secrets"))
    return bool(reply.body[0])


def _wait_for_secret_service(deadline: float) -> None:
    import secretstorage

    # Touching org.freedesktop.secrets before our --unlock daemon owns the name would
    # make the bus activate a second, locked daemon from its .service file.
    while not _secrets_name_owned():
        if time.monotonic() > deadline:
            raise TimeoutError("gnome-keyring-daemon did not take its D-Bus name")
        time.sleep(0.02)
    while True:
        try:
            with closing(secretstorage.dbus_init()) as bus:
                if not secretstorage.Collection(bus).is_locked():
                    return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("gnome-keyring did not unlock its default collection")
        time.sleep(0.05)


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The address of a private session bus with an unlocked gnome-keyring."""
    _need("dbus-run-session")
    _need("gnome-keyring-daemon")
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
    }
    proc = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", _SESSION_SCRIPT, "sh", KEYRING_PASSPHRASE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().decode().strip()
        assert address.startswith("unix:"), address
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        _wait_for_secret_service(time.monotonic() + 10)
        yield address
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
