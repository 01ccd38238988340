"""The credential socket: the running Wicket answers ``wicket credential`` with a token.

The app and ``wicket up`` hold every cluster's token, wherever the user chose to keep
it (even "this session only"), so kubectl works while Wicket runs without a keyring or
a passphrase prompt. The socket is user-only three times over: the file is 0600, its
directory 0700, and the server checks each peer's UID with ``SO_PEERCRED`` and refuses
any other user (root's ``chmod`` cannot widen the last check).

A local peer can make the server hold little: one request line of at most
:data:`~core.secrets.wire.MAX_REQUEST` bytes, within a read deadline, on at most
``max_connections`` connections at once (beyond that: a ``busy`` reply and a close).
Wire format: ``docs/secrets.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core import fsutil
from core.errors import CredentialSocketError, RemoteProtocolError
from core.paths import runtime_dir
from core.secrets import wire

log = logging.getLogger("wicket.secrets")

SOCKET_NAME = "credential.sock"
#: ``struct ucred``: pid, uid, gid.
_UCRED = struct.Struct("3i")
#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, the terminating NUL included.
_SUN_PATH_MAX = 107


def default_socket_path() -> Path:
    """``runtime_dir()/credential.sock``: where the running Wicket listens."""
    return runtime_dir() / SOCKET_NAME


@dataclass(frozen=True)
class Limits:
    """What one local peer can make the server hold, and for how long."""

    max_request: int = wire.MAX_REQUEST
    read_timeout: float = 2.0
    lookup_timeout: float = 5.0
    write_timeout: float = 2.0
    max_connections: int = 16


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


class _SockoptSource(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: _SockoptSource) -> PeerCredentials | None:
    """``SO_PEERCRED`` of a connected Unix socket; None where the platform has none."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    return PeerCredentials(*_UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size)))


def peer_allowed(peer: PeerCredentials | None, own_uid: int) -> bool:
    """Only the user Wicket runs as; a peer whose UID cannot be known is refused."""
    return peer is not None and peer.uid == own_uid


class CredentialServer:
    """Answers token requests from this user on a Unix socket, within :class:`Limits`.

    ``lookup(cluster)`` returns the cluster's upstream token, or None when Wicket has
    none; a lookup that raises or overruns its deadline is answered ``unavailable``.
    ``start`` replaces a stale socket file a killed Wicket left, but refuses (with
    :class:`~core.errors.CredentialSocketError`) when a live server still answers there.
    """

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[str | None]],
        path: Path | None = None,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.path = path if path is not None else default_socket_path()
        self.limits = limits or Limits()
        self._lookup = lookup
        self._uid = os.geteuid()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._bound: tuple[int, int] | None = None

    async def start(self) -> None:
        sock = await asyncio.to_thread(self._bind)
        self._server = await asyncio.start_unix_server(
            self._accepted, sock=sock, limit=self.limits.max_request
        )

    async def stop(self) -> None:
        """Close the socket, end every open conversation, remove the socket file."""
        if self._server is None:
            return
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        await asyncio.to_thread(self._unlink_own)

    def _bind(self) -> socket.socket:
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise CredentialSocketError(f"{self.path}: too long for a Unix socket path")
        try:
            fsutil.ensure_private_dir(self.path.parent)
            with fsutil.locked(self.path):
                _remove_stale(self.path)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.bind(os.fspath(self.path))
                    os.chmod(self.path, fsutil.PRIVATE_FILE_MODE)  # the 0700 dir covers the gap
                    sock.listen(self.limits.max_connections)
                    bound = os.stat(self.path)
                except BaseException:
                    sock.close()
                    raise
        except OSError as exc:
            raise CredentialSocketError(f"{self.path}: cannot listen: {exc.strerror}") from None
        self._bound = (bound.st_dev, bound.st_ino)
        sock.setblocking(False)
        return sock

    def _unlink_own(self) -> None:
        """Remove the socket file if it is still the one this server bound."""
        with fsutil.locked(self.path), contextlib.suppress(FileNotFoundError):
            now = os.lstat(self.path)
            if (now.st_dev, now.st_ino) == self._bound:
                os.unlink(self.path)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._handlers) >= self.limits.max_connections:
                with contextlib.suppress(OSError):
                    writer.write(wire.reply_to_send(wire.Reply(error=wire.ReplyError.BUSY)))
                return
            self._handlers.add(task)
            reply = await self._answer(reader, writer)
            await self._send(writer, reply)
        except asyncio.CancelledError:
            pass  # only stop() cancels; asyncio would log a cancelled handler as an error
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> wire.Reply:
        if not peer_allowed(peer_credentials(writer.get_extra_info("socket")), self._uid):
            return wire.Reply(error=wire.ReplyError.REFUSED)
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                line = await reader.readuntil(b"\n")
        except TimeoutError:
            return wire.Reply(error=wire.ReplyError.TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return wire.Reply(error=wire.ReplyError.BAD_REQUEST)
        asked = wire.request_received(line)
        if isinstance(asked, wire.ReplyError):
            return wire.Reply(error=asked)
        try:
            async with asyncio.timeout(self.limits.lookup_timeout):
                return wire.Reply(token=await self._lookup(asked) or None)
        except Exception as exc:  # the lookup's failure is ours to log, not the peer's
            log.warning("credential lookup for %r failed: %s", asked, type(exc).__name__)
            return wire.Reply(error=wire.ReplyError.UNAVAILABLE)

    async def _send(self, writer: asyncio.StreamWriter, reply: wire.Reply) -> None:
        try:
            writer.write(wire.reply_to_send(reply))
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # a peer that never reads keeps no buffer here
        except OSError:
            pass


def _remove_stale(path: Path) -> None:
    """Unlink a socket file nobody serves; refuse a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise CredentialSocketError(f"{path} exists and is not a socket; remove it and retry")
    if _answers(path):
        raise CredentialSocketError(
            f"another Wicket (the app or wicket up) already serves {path}; quit it first"
        )
    os.unlink(path)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:
            return False
        except TimeoutError:  # a full backlog: alive, just busy
            return True
        return True


def ask(cluster: str, *, timeout: float = 2.0, path: Path | None = None) -> wire.Reply | None:
    """The running Wicket's reply about ``cluster``, or None if none answered in time.

    The server must run as this user too (checked with ``SO_PEERCRED``), so a socket
    someone else planted cannot feed kubectl a token.
    """
    if not hasattr(socket, "AF_UNIX"):  # Windows: no running Wicket to ask this way
        return None
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.fspath(path if path is not None else default_socket_path()))
            if not peer_allowed(peer_credentials(sock), os.geteuid()):
                return None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(wire.request_to_send(cluster))  # a busy server replies unasked
            line = _read_line(sock, deadline)
        return None if line is None else wire.reply_received(line)
    except (OSError, RemoteProtocolError):  # not running, gone, too slow, or garbled
        return None


def ask_running(cluster: str, *, timeout: float = 2.0, path: Path | None = None) -> str | None:
    """The token the running Wicket holds for ``cluster``, or None (no answer, no token)."""
    reply = ask(cluster, timeout=timeout, path=path)
    return None if reply is None else reply.token


def _read_line(sock: socket.socket, deadline: float) -> bytes | None:
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(data) > wire.MAX_REPLY:
            return None
        sock.settimeout(remaining)
        chunk = sock.recv(wire.MAX_REPLY + 1 - len(data))
        if not chunk:
            return None
        data += chunk
    return data
