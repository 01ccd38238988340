"""A real PostgreSQL (Debian's ``postgresql`` package) for the registry tests.

One server per test session: ``initdb`` in a private temporary directory, then
``postgres`` listening on a Unix socket there only (no TCP port), with password
authentication (SCRAM) so the stores connect as a fleet's relays do. It runs as the
``postgres`` user when the tests run as root (PostgreSQL refuses root), under
``setpriv --pdeathsig KILL``: if the test run dies, so does the server. Each test gets
a database of its own, dropped after it. Durability is off (``fsync``): nothing here
depends on a crash of the machine.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "wicket"
PORT = 5432  # only names the socket file: the server listens on no TCP port
_START_TIMEOUT = 30.0


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


@dataclass
class PostgresServer:
    """A running server: its socket directory and the password of its superuser."""

    root: Path
    password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = None
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str) -> str:
        """A URL without the password (the stores refuse one that has it)."""
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}&port={PORT}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url(database), password=self.password, autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def password_file(self, directory: Path) -> Path:
        """The password in a file (0600) as ``--store-password-file`` reads it."""
        path = directory / "pg-password"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # a fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _as_server_user(root: Path) -> list[str]:
    """The command prefix that runs a server binary: as ``postgres`` when we are root,
    killed with us either way."""
    prefix = ["setpriv", "--pdeathsig", "KILL"]
    if os.geteuid() != 0:
        return prefix
    account = pwd.getpwnam("postgres")
    for path in (root, *root.iterdir()):
        os.chown(path, account.pw_uid, account.pw_gid)
    return [*prefix, "--reuid", "postgres", "--regid", "postgres", "--clear-groups", "--"]


def start_server(binaries: Path) -> PostgresServer:
    root = Path(tempfile.mkdtemp(prefix="wicket-pg-"))
    server = PostgresServer(root, secrets.token_urlsafe(24))
    try:
        pwfile = root / "initdb-password"
        pwfile.write_text(server.password)
        pwfile.chmod(0o600)
        run_as = _as_server_user(root)
        initdb = [str(binaries / "initdb"), "-D", str(root / "data"), "-U", USER]
        subprocess.run(
            [*run_as, *initdb, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        pwfile.unlink()
        log = (root / "server.log").open("wb")
        settings = ["listen_addresses=", "fsync=off", "full_page_writes=off", "max_connections=200"]
        server.process = subprocess.Popen(
            [*run_as, str(binaries / "postgres"), "-D", str(root / "data"), "-k", str(root),
             "-p", str(PORT), *itertools.chain.from_iterable(("-c", s) for s in settings)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        try:
            server.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            assert server.process is not None
            log = (server.root / "server.log").read_text(errors="replace")
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = bin_dir()
    if binaries is None or shutil.which("setpriv") is None:
        message = "PostgreSQL missing: run scripts/install-system-test-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = start_server(binaries)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database for one test; its URL (no password in it). Every
    connection to it must be closed by the end of the test (a store not closed, a
    follower thread left running, fail it)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
        left = _connections(postgres_server, name)
        assert not left, f"connections left open to the test's database: {left}"
    finally:
        postgres_server.drop_database(name)


def _connections(server: PostgresServer, name: str, wait: float = 2.0) -> list[object]:
    """The connections to database ``name`` still open after up to ``wait`` seconds
    (a backend whose client closed ends a moment later)."""
    deadline = time.monotonic() + wait
    while True:
        rows = server.execute(
            f"SELECT pid, application_name, query FROM pg_stat_activity WHERE datname = '{name}'"
        )
        if not rows or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.02)
