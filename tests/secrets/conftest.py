"""A real SecretService (gnome-keyring-daemon on a private D-Bus session), an HTTPS
server standing in for a kube-apiserver that records the bearer tokens kubectl sends, and
a fresh HOME for the plugin (``tests.support.credential.plugin_env``).

``dbus-run-session`` starts a throwaway session bus and runs a small shell that starts
``gnome-keyring-daemon --unlock`` (passphrase on its stdin) in a throwaway HOME, prints
the bus address, then waits for its own stdin to close. Closing it ends the session;
the whole process group is killed afterwards in case anything lingers. The test
process talks to that bus by pointing ``DBUS_SESSION_BUS_ADDRESS`` at it, so the
developer's own keyring is never touched.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KEYRING_PASSPHRASE = "wicket-test-keyring-passphrase"
_SESSION_SCRIPT = """
printf '%s\\n' "$DBUS_SESSION_BUS_ADDRESS"
printf '%s' "$1" | gnome-keyring-daemon --unlock --components=secrets --foreground \
    >/dev/null 2>&1 &
exec cat >/dev/null
"""


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh HOME whose runtime dir (``xdg-run``) is short enough for a socket path."""
    base = Path(tempfile.mkdtemp(prefix="wk-", dir="/tmp"))
    (base / "xdg-run").mkdir(mode=0o700)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


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


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (client-go sends tokens over TLS only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def fake_apiserver(tmp_path: Path) -> Iterator[tuple[str, Path, list[str | None]]]:
    """An HTTPS server on loopback that answers /version and records Authorization."""
    seen: list[str | None] = []
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    handler = type("Handler", (_RecordingHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
