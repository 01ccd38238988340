"""The credential socket: a real server on a real Unix socket, its bounds, its peer check."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import CredentialSocketError
from core.paths import runtime_dir
from core.secrets import wire
from core.secrets.socket import (
    CredentialServer,
    Limits,
    PeerCredentials,
    ask,
    ask_running,
    peer_allowed,
    peer_credentials,
)

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).parents[2]
TOKEN = "running-token-8d1e"


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path short enough for sun_path (pytest's tmp_path may not be)."""
    base = Path(tempfile.mkdtemp(prefix="wk-", dir="/tmp"))
    try:
        yield base / "run" / "credential.sock"
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _lookup(cluster: str) -> str | None:
    return {"prod": TOKEN, "empty": ""}.get(cluster)


async def _ask(cluster: str, path: Path, timeout: float = 2.0) -> wire.Reply | None:
    """The sync client, off the loop the server runs on."""
    return await asyncio.to_thread(ask, cluster, timeout=timeout, path=path)


async def test_the_running_wicket_answers(sock_path: Path) -> None:
    server = CredentialServer(_lookup, sock_path)
    await server.start()
    try:
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
        assert await _ask("other", sock_path) == wire.Reply(token=None)
        assert await _ask("empty", sock_path) == wire.Reply(token=None), "'' is no token"
        assert await asyncio.to_thread(ask_running, "other", path=sock_path) is None
    finally:
        await server.stop()
    assert not sock_path.exists()
    assert ask_running("prod", path=sock_path) is None


def test_nothing_listening_is_no_answer(sock_path: Path) -> None:
    assert ask("prod", path=sock_path) is None
    sock_path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: a dead server
        dead.bind(os.fspath(sock_path))
    assert ask("prod", path=sock_path, timeout=0.5) is None


def test_default_path_is_in_the_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir(mode=0o700)
    assert CredentialServer(_lookup).path == tmp_path / "xdg" / "wicket" / "credential.sock"
    assert stat.S_IMODE((tmp_path / "xdg" / "wicket").stat().st_mode) == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert runtime_dir() == tmp_path / "data" / "wicket" / "run"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir() == tmp_path / "data" / "wicket" / "run"
    assert stat.S_IMODE(runtime_dir().stat().st_mode) == 0o700


_SERVE = """
import asyncio, sys
from pathlib import Path
from core.secrets.socket import CredentialServer

async def lookup(cluster):
    return "from-the-killed-one"

async def main():
    await CredentialServer(lookup, Path(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_servers_socket_is_replaced(sock_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(sock_path)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == (
            "from-the-killed-one"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert stat.S_ISSOCK(sock_path.lstat().st_mode), "SIGKILL leaves the file behind"
    server = CredentialServer(_lookup, sock_path)
    await server.start()
    try:
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        await server.stop()


async def test_a_live_server_is_never_replaced(sock_path: Path) -> None:
    first = CredentialServer(_lookup, sock_path)
    await first.start()
    try:
        second = CredentialServer(_lookup, sock_path)
        with pytest.raises(CredentialSocketError, match="already serves"):
            await second.start()
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        await first.stop()


async def test_a_file_that_is_no_socket_is_left_alone(sock_path: Path) -> None:
    sock_path.parent.mkdir(mode=0o700)
    sock_path.write_text("not a socket")
    with pytest.raises(CredentialSocketError, match="is not a socket"):
        await CredentialServer(_lookup, sock_path).start()
    assert sock_path.read_text() == "not a socket"


async def test_a_path_too_long_for_sun_path_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ("d" * 120) / "credential.sock"
    with pytest.raises(CredentialSocketError, match="too long"):
        await CredentialServer(_lookup, path).start()


# -- bounds ------------------------------------------------------------------------


async def _raw(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(os.fspath(path))


async def test_a_client_that_never_sends_is_dropped_at_the_read_deadline(sock_path: Path) -> None:
    server = CredentialServer(_lookup, sock_path, limits=Limits(read_timeout=0.3))
    await server.start()
    try:
        reader, writer = await _raw(sock_path)
        started = time.monotonic()
        line = await asyncio.wait_for(reader.readline(), 5)
        assert 0.25 < time.monotonic() - started < 3
        assert wire.reply_received(line) == wire.Reply(error=wire.ReplyError.TIMEOUT)
        assert await reader.read() == b"", "the server closed"
        writer.close()
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        await server.stop()


def _send_a_mebibyte(path: Path) -> tuple[bytes, str]:
    """Send 1 MiB without a newline; what came back, and how the send ended."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(os.fspath(path))
        try:
            sock.sendall(b"x" * (1 << 20))
            ended = "sent"
        except (BrokenPipeError, ConnectionResetError) as exc:
            ended = type(exc).__name__
        try:
            return sock.recv(4096), ended
        except ConnectionResetError:
            return b"", ended


async def test_a_mebibyte_request_is_cut_off(sock_path: Path) -> None:
    server = CredentialServer(_lookup, sock_path, limits=Limits(read_timeout=5))
    await server.start()
    try:
        started = time.monotonic()
        reply, ended = await asyncio.to_thread(_send_a_mebibyte, sock_path)
        assert time.monotonic() - started < 3, "closed on the size limit, not the deadline"
        assert ended in ("BrokenPipeError", "ConnectionResetError"), "1 MiB was swallowed"
        if reply:
            assert wire.reply_received(reply).error is wire.ReplyError.BAD_REQUEST
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        await server.stop()


async def test_connections_beyond_the_limit_are_told_busy(sock_path: Path) -> None:
    limits = Limits(read_timeout=1.0, max_connections=4)
    server = CredentialServer(_lookup, sock_path, limits=limits)
    await server.start()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        idle += [await _raw(sock_path) for _ in range(4)]
        await asyncio.sleep(0.1)  # all four accepted (the loop accepts in order anyway)
        assert await _ask("prod", sock_path) == wire.Reply(error=wire.ReplyError.BUSY)
        for reader, _ in idle:  # each one ends at its own read deadline
            line = await asyncio.wait_for(reader.readline(), 5)
            assert wire.reply_received(line).error is wire.ReplyError.TIMEOUT
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        for _, writer in idle:
            writer.close()
        await server.stop()


async def test_stop_ends_open_conversations(sock_path: Path) -> None:
    server = CredentialServer(_lookup, sock_path, limits=Limits(read_timeout=20))
    await server.start()
    reader, writer = await _raw(sock_path)
    await asyncio.sleep(0.1)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_hanging_or_failing_lookup_is_unavailable(sock_path: Path) -> None:
    async def lookup(cluster: str) -> str | None:
        if cluster == "hangs":
            await asyncio.Event().wait()
        raise RuntimeError("the store broke")

    server = CredentialServer(lookup, sock_path, limits=Limits(lookup_timeout=0.2))
    await server.start()
    try:
        unavailable = wire.Reply(error=wire.ReplyError.UNAVAILABLE)
        assert await _ask("hangs", sock_path) == unavailable
        assert await _ask("fails", sock_path) == unavailable
    finally:
        await server.stop()


async def test_bad_requests_get_their_error(sock_path: Path) -> None:
    server = CredentialServer(_lookup, sock_path)
    await server.start()
    try:
        for request, error in [
            (b"not json\n", wire.ReplyError.BAD_REQUEST),
            (b'{"v":2,"cluster":"prod"}\n', wire.ReplyError.VERSION),
            (b'{"v":1,"cluster":"../etc"}\n', wire.ReplyError.BAD_REQUEST),
            (b'{"v":1}', wire.ReplyError.BAD_REQUEST),  # EOF before the newline
        ]:
            reader, writer = await _raw(sock_path)
            writer.write(request)
            writer.write_eof()
            line = await asyncio.wait_for(reader.readline(), 5)
            assert wire.reply_received(line) == wire.Reply(error=error), request
            writer.close()
    finally:
        await server.stop()


async def test_a_garbled_reply_is_no_answer(sock_path: Path) -> None:
    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'{"v":1,"token":42}\n')
        writer.close()

    sock_path.parent.mkdir(mode=0o700)
    server = await asyncio.start_unix_server(garble, os.fspath(sock_path))
    async with server:
        assert await _ask("prod", sock_path) is None


# -- the peer check ----------------------------------------------------------------


class FakePeerSocket:
    """A fake: answers SO_PEERCRED with a made-up ucred, as another user's peer would."""

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.ucred = (pid, uid, gid)

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes:
        assert (level, optname, buflen) == (socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        import struct

        return struct.pack("3i", *self.ucred)


def test_peer_check_with_a_faked_other_uid() -> None:
    me = os.geteuid()
    other = peer_credentials(FakePeerSocket(4242, me + 1, 100))
    assert other == PeerCredentials(4242, me + 1, 100)
    assert not peer_allowed(other, me)
    assert peer_allowed(peer_credentials(FakePeerSocket(4242, me, 100)), me)
    assert not peer_allowed(None, me), "a peer whose uid is unknown is refused"


def test_peer_check_on_a_real_socket_pair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        peer = peer_credentials(left)
        assert peer == PeerCredentials(os.getpid(), os.geteuid(), os.getegid())
        assert peer_allowed(peer, os.geteuid())


_OTHER_USER_CLIENT = textwrap.dedent(
    """
    import socket, sys
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        try:
            s.connect(sys.argv[1])
        except PermissionError:
            print("EACCES")
            raise SystemExit
        print(s.recv(4096).decode().strip())
    """
)


def _as_nobody(path: Path) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None
    proc = subprocess.run(
        [python, "-c", _OTHER_USER_CLIENT, os.fspath(path)],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        cwd="/",
    )
    return proc.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
async def test_another_user_is_refused(sock_path: Path) -> None:
    if shutil.which("python3", path="/usr/bin:/bin") is None:
        pytest.skip("no system python3 that another user may run")
    server = CredentialServer(_lookup, sock_path)
    await server.start()
    try:
        assert await asyncio.to_thread(_as_nobody, sock_path) == "EACCES", "0700 dir"
        # Open the file modes wide, as a careless chmod would: SO_PEERCRED still refuses.
        sock_path.parent.parent.chmod(0o755)
        sock_path.parent.chmod(0o755)
        sock_path.chmod(0o777)
        line = await asyncio.to_thread(_as_nobody, sock_path)
        assert wire.reply_received(line.encode() + b"\n").error is wire.ReplyError.REFUSED
        assert await asyncio.to_thread(ask_running, "prod", path=sock_path) == TOKEN
    finally:
        await server.stop()
