"""Live status of every running Wicket process, over user-only Unix sockets.

Each process runs a :class:`StatusServer` on ``<runtime dir>/<role>-<pid>.sock``. A client
connects; the server writes one JSON document and closes::

    {"role": "relay", "pid": 4242, "started_at": "2026-11-26T05:40:00.123Z",
     "snapshot": {...}}

The runtime dir is ``$XDG_RUNTIME_DIR/wicket``, else ``/tmp/wicket-<uid>``. It must be a
real directory owned by the user with no group or world access; anything else is refused
(``ConfigError``), since another user could otherwise plant or read sockets. Sockets are
mode 0600. The snapshot is taken on the event loop, so it is consistent; it goes through
:func:`to_jsonable` and ``core.logs.scrub`` (no token or secret-named value leaves).

:func:`read_all_status` reads every socket concurrently, each under a timeout, and removes
the sockets of dead processes (connection refused and the pid no longer exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import math
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any, cast

from core.errors import ConfigError
from core.logs import scrub

__all__ = [
    "StatusServer",
    "default_runtime_dir",
    "ensure_runtime_dir",
    "read_all_status",
    "read_all_status_sync",
    "to_jsonable",
]

log = logging.getLogger("wicket.status")

MAX_DOCUMENT = 4 * 1024 * 1024
WRITE_TIMEOUT = 5.0
_ROLE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_SOCKET_NAME = re.compile(r"([a-z][a-z0-9-]{0,31})-([0-9]{1,10})\.sock")
_MAX_SUN_PATH = 107


def default_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/wicket`` if that variable is set, else ``/tmp/wicket-<uid>``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "wicket"
    return Path("/tmp") / f"wicket-{os.getuid()}"  # noqa: S108 (verified below)


def ensure_runtime_dir(path: Path | None = None, *, create: bool = True) -> Path:
    """The runtime dir, created 0700 if missing; ``ConfigError`` unless it is private.

    ``lstat`` is used, so a symlink planted at the path (``/tmp`` is shared) is refused
    rather than followed.
    """
    path = path if path is not None else default_runtime_dir()
    if create:
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the runtime dir {path}: {exc.strerror}") from None
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"runtime dir {path} is not a directory (remove it and retry)")
    if st.st_uid != os.getuid():
        raise ConfigError(f"runtime dir {path} is owned by uid {st.st_uid}, not by you")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"runtime dir {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 700 {path}"
        )
    return path


def to_jsonable(obj: object) -> Any:
    """``obj`` as plain JSON values, recursively.

    Dataclasses (fields with ``repr=False`` are left out, like in their repr) and
    NamedTuples become objects; enums their value; paths strings; datetimes, dates and
    times ISO 8601; timedeltas seconds; sets sorted lists; non-finite floats ``None``.
    ``TypeError`` for anything else (bytes included: they may be key material).
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.repr
        }
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {str(k): to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_jsonable(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    raise TypeError(f"cannot put a {type(obj).__name__} into a status snapshot")


def _utc_iso(timestamp: float) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{base}.{int(timestamp % 1 * 1000):03d}Z"


class StatusServer:
    """Serves ``snapshot()`` to whoever connects to ``path`` (only this user can)."""

    def __init__(
        self,
        role: str,
        snapshot: Callable[[], object],
        runtime_dir: Path | None = None,
    ) -> None:
        if not _ROLE.fullmatch(role):
            raise ConfigError(f"invalid status role {role!r}")
        self.role = role
        self._snapshot = snapshot
        self._runtime_dir = runtime_dir
        self.path: Path | None = None
        self.started_at = _utc_iso(time.time())
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()

    async def start(self) -> None:
        """Bind ``<runtime dir>/<role>-<pid>.sock`` (mode 0600) and start serving."""
        if self._server is not None:
            raise RuntimeError("status server already started")
        path = ensure_runtime_dir(self._runtime_dir) / f"{self.role}-{os.getpid()}.sock"
        if len(os.fsencode(path)) > _MAX_SUN_PATH:
            raise ConfigError(f"status socket path is too long for a Unix socket: {path}")
        path.unlink(missing_ok=True)  # left by an earlier process with our pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))  # the 0700 dir keeps others out until the chmod
            path.chmod(0o600)
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(lambda: _Responder(self), sock=sock)
        except BaseException:
            sock.close()
            path.unlink(missing_ok=True)
            raise
        self.path = path

    async def stop(self) -> None:
        """Stop serving, drop open connections and remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for transport in list(self._transports):
            transport.abort()
        await server.wait_closed()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        await asyncio.sleep(0)  # let aborted transports run connection_lost

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def document(self) -> bytes:
        """The bytes a client receives: identity plus the current, scrubbed snapshot."""
        doc: dict[str, Any] = {
            "role": self.role,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "process": process_counters(),
        }
        try:
            doc["snapshot"] = scrub(to_jsonable(self._snapshot()))
        except Exception as exc:
            log.exception("status snapshot failed")
            doc["snapshot"] = {}
            doc["error"] = f"snapshot failed: {type(exc).__name__}"
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def process_counters() -> dict[str, int]:
    """Tasks, open file descriptors and resident memory: what leak tests watch."""
    counters = {"tasks": len(asyncio.all_tasks())}
    with contextlib.suppress(OSError):
        counters["fds"] = len(os.listdir("/proc/self/fd"))
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/self/statm", encoding="ascii") as statm,
    ):
        pages = int(statm.read().split()[1])
        counters["rss_kib"] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    return counters


class _Responder(asyncio.Protocol):
    """Writes the document and closes; a reader that stalls is dropped after a bound."""

    def __init__(self, server: StatusServer) -> None:
        self._server = server
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.WriteTransport, transport)  # uvloop: not a subclass
        self._transport = transport
        self._server._transports.add(transport)
        self._timer = asyncio.get_running_loop().call_later(WRITE_TIMEOUT, transport.abort)
        transport.write(self._server.document())
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._server._transports.discard(self._transport)


async def read_all_status(
    runtime_dir: Path | None = None,
    timeout: float = 2.0,
) -> list[dict[str, Any]]:
    """The documents of every running process, sorted by role and pid.

    Unanswered or malformed sockets are skipped; stale ones are removed. ``ConfigError``
    if the runtime dir is not private (its sockets cannot be trusted).
    """
    directory = runtime_dir if runtime_dir is not None else default_runtime_dir()
    if not directory.exists():
        return []
    ensure_runtime_dir(directory, create=False)
    paths = sorted(p for p in directory.iterdir() if _SOCKET_NAME.fullmatch(p.name))
    results = await asyncio.gather(*(_read_one(p, timeout) for p in paths))
    docs = [doc for doc in results if doc is not None]
    return sorted(docs, key=lambda d: (str(d["role"]), int(d["pid"])))


def read_all_status_sync(
    runtime_dir: Path | None = None, timeout: float = 2.0
) -> list[dict[str, Any]]:
    """:func:`read_all_status` for code without an event loop (the CLI)."""
    return asyncio.run(read_all_status(runtime_dir, timeout))


async def _read_one(path: Path, seconds: float) -> dict[str, Any] | None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_unix_connection(path)
            data = b""
            while len(data) <= MAX_DOCUMENT and (chunk := await reader.read(65536)):
                data += chunk
    except ConnectionRefusedError:
        _remove_if_stale(path)
        return None
    except (OSError, TimeoutError) as exc:
        log.debug("status socket %s unreadable: %s", path.name, exc)
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return _parse(path, data)


def _parse(path: Path, data: bytes) -> dict[str, Any] | None:
    if len(data) > MAX_DOCUMENT:
        log.debug("status socket %s sent more than %d bytes", path.name, MAX_DOCUMENT)
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        log.debug("status socket %s sent malformed JSON", path.name)
        return None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("role"), str)
        or not isinstance(doc.get("pid"), int)
    ):
        return None
    return doc


def _remove_if_stale(path: Path) -> None:
    """Remove a refused socket if its process is gone (a live one may not listen yet)."""
    match = _SOCKET_NAME.fullmatch(path.name)
    if match is None or _pid_alive(int(match[2])):
        return
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
