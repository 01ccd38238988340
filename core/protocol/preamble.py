"""The stream preamble: a tiny binary request and status at the start of a data stream.

Spec: docs/control.md ("Stream preamble"). The opener names the cluster and the
endpoint kind (and, for display, the client address); the acceptor answers one status
before any user byte flows, so a client learns "agent offline" at once instead of
through a TLS timeout. Decoders are sans-I/O and return the parsed header **and the
bytes that followed it** in the same read (the start of the user's stream). Every
field is checked as soon as its byte arrives, so garbage (say, a TLS ClientHello sent
to the wrong place) is refused after one byte. Errors are ``RemoteProtocolError`` whose
``code`` is the ``Status`` to answer with.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from core.errors import LocalProtocolError, RemoteProtocolError
from core.format import host_port
from core.pki.identity import NAME_MAX, is_valid_name

MAGIC = b"WK"
VERSION = 1
_REQUEST_HEADER = 6
_STATUS_HEADER = 2
MAX_FIELD = 255
MAX_REQUEST_SIZE = _REQUEST_HEADER + NAME_MAX + MAX_FIELD
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_T = TypeVar("_T")
_ERRNO = re.compile(r"\[Errno (\d+)\]")
_ADDRESS = re.compile(r"\('([^']*)', (\d+)")


class EndpointKind(enum.IntEnum):
    """Which endpoint the stream came in through (for statistics and policy)."""

    LOCAL = 1
    PUBLIC = 2


class Status(enum.IntEnum):
    """The acceptor's answer; anything but ``OK`` is followed by the stream's end."""

    OK = 0
    UNKNOWN_CLUSTER = 1
    AGENT_OFFLINE = 2
    FORBIDDEN = 3
    TARGET_UNREACHABLE = 4
    BUSY = 5
    BAD_REQUEST = 6
    UNSUPPORTED_VERSION = 7


#: By wire value: a lookup, where ``EndpointKind(n)`` is an enum call on every stream.
_KINDS = {int(k): k for k in EndpointKind}
_STATUSES = {int(s): s for s in Status}
#: The ``client`` of an inspect endpoint's streams: it is their TLS client, and the
#: requests they carry are what the user counts (``ServiceSnapshot.open_streams``).
INSPECT_CLIENT = "inspect"


@dataclass(frozen=True, init=False)
class StreamRequest:
    """What the opener asks for: ``cluster`` via ``endpoint``; ``client`` is display-only.

    (An ``__init__`` of its own, here and in ``StreamStatus``: compiled, it is C, where
    the dataclass one stays Python; both are made for every stream.)
    """

    cluster: str
    endpoint: EndpointKind
    client: str = ""

    def __init__(self, cluster: str, endpoint: EndpointKind, client: str = "") -> None:
        object.__setattr__(self, "cluster", cluster)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "client", client)

    def encode(self) -> bytes:
        if not _valid_cluster(self.cluster):
            raise LocalProtocolError(f"invalid cluster name {self.cluster!r}")
        if not _printable_ascii(self.client) or len(self.client) > MAX_FIELD:
            raise LocalProtocolError("client address must be printable ASCII, at most 255 bytes")
        client = self.client.encode("ascii")
        cluster = self.cluster.encode("ascii")
        header = bytes([VERSION, self.endpoint, len(cluster), len(client)])
        return MAGIC + header + cluster + client


@dataclass(frozen=True, init=False)
class StreamStatus:
    """The acceptor's answer; ``message`` explains an error to the human."""

    status: Status
    message: str = ""

    def __init__(self, status: Status, message: str = "") -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "message", message)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def encode(self) -> bytes:
        message = self.message.encode("utf-8")
        if self.ok and message:
            raise LocalProtocolError("an ok status carries no message")
        if len(message) > MAX_FIELD or _CONTROL_CHARS.search(self.message):
            raise LocalProtocolError("status message must be ≤ 255 bytes, no control chars")
        return bytes([self.status, len(message)]) + message


def os_error_words(message: str) -> str:
    """``[Errno 111] Connect call failed (…)`` as a person reads it: ``connection refused``
    (any other message is returned as it is)."""
    errno = _ERRNO.search(message)
    return os.strerror(int(errno.group(1))).lower() if errno else message


_REFUSALS = {
    Status.UNKNOWN_CLUSTER: "the relay does not know this cluster",
    Status.AGENT_OFFLINE: "the cluster's agent is not connected to the relay (is it running?)",
    Status.FORBIDDEN: "the relay or agent refused this client for the cluster",
    Status.BUSY: "too many streams are open",
    Status.BAD_REQUEST: "the relay or agent refused the stream",
    Status.UNSUPPORTED_VERSION: "the relay or agent speaks another protocol version",
}


def refusal_words(status: StreamStatus) -> str:
    """A refused ``StreamStatus`` in words a user can act on, after its status name
    (the prefix a passthrough endpoint's ``last_refusal`` has too):
    ``target_unreachable: the agent could not reach the apiserver at 10.0.0.1:6443:
    connection refused``."""
    name = status.status.name.lower()
    if status.status is Status.TARGET_UNREACHABLE:
        address = _ADDRESS.search(status.message)
        where = f" at {host_port(address[1], address[2])}" if address else ""
        _, _, reason = status.message.rpartition("target: ")
        words = f"the agent could not reach the apiserver{where}: {os_error_words(reason)}"
    else:
        words = _REFUSALS.get(status.status, name)
        if status.message:
            words += f": {status.message}"
    return f"{name}: {words}"


class _OneShotDecoder(Generic[_T]):
    """Buffers until one value is complete, then hands it back with the bytes after it.

    The bytes after it are the start of the user's stream; a second value is never
    decoded (the stream belongs to the splice from then on).
    """

    _what: ClassVar[str]

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False

    def receive_data(self, data: bytes) -> tuple[_T, bytes] | None:
        """``(value, remaining bytes)`` once complete, else ``None`` (need more)."""
        if self._done:
            raise LocalProtocolError(f"the {self._what} is already decoded")
        buf = self._buffer = self._buffer + data
        parsed = self._parse(buf)
        if parsed is None:
            return None
        value, end = parsed
        self._done, self._buffer = True, b""
        return value, buf[end:]

    def _parse(self, buf: bytes) -> tuple[_T, int] | None:
        """The value and where it ends, ``None`` to wait; every byte checked on arrival."""
        raise NotImplementedError


class RequestDecoder(_OneShotDecoder[StreamRequest]):
    """Decode one ``StreamRequest``; then hand the stream to the splice."""

    _what = "preamble"

    def _parse(self, buf: bytes) -> tuple[StreamRequest, int] | None:
        _check_magic(buf)
        if len(buf) < _REQUEST_HEADER:
            return None
        version, kind, cluster_len, client_len = buf[2], buf[3], buf[4], buf[5]
        if version != VERSION:
            raise RemoteProtocolError(
                f"preamble version {version} not supported", Status.UNSUPPORTED_VERSION
            )
        if kind not in _KINDS:
            raise _bad(f"unknown endpoint kind {kind}")
        if not 1 <= cluster_len <= NAME_MAX:
            raise _bad(f"cluster name length {cluster_len} outside 1..{NAME_MAX}")
        end = _REQUEST_HEADER + cluster_len + client_len
        if len(buf) < end:
            return None
        cluster = buf[_REQUEST_HEADER : _REQUEST_HEADER + cluster_len].decode("latin-1")
        client = buf[_REQUEST_HEADER + cluster_len : end].decode("latin-1")
        if not _printable_ascii(cluster) or not _valid_cluster(cluster):
            raise _bad("invalid cluster name")
        if not _printable_ascii(client):
            raise _bad("client address is not printable ASCII")
        return StreamRequest(cluster, _KINDS[kind], client), end


class StatusDecoder(_OneShotDecoder[StreamStatus]):
    """Decode the acceptor's ``StreamStatus``."""

    _what = "status"

    def _parse(self, buf: bytes) -> tuple[StreamStatus, int] | None:
        if not buf:
            return None
        if buf[0] not in _STATUSES:
            raise _bad(f"unknown stream status {buf[0]}")
        if len(buf) < _STATUS_HEADER:
            return None
        status, length = _STATUSES[buf[0]], buf[1]
        if status is Status.OK and length:
            raise _bad("an ok status carries no message")
        end = _STATUS_HEADER + length
        if len(buf) < end:
            return None
        try:
            message = buf[_STATUS_HEADER:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("status message is not UTF-8") from exc
        if _CONTROL_CHARS.search(message):
            raise _bad("status message contains control characters")
        return StreamStatus(status, message), end


def _printable_ascii(text: str) -> bool:
    """Only 0x20..0x7E: what ``[\\x20-\\x7e]*`` matches, without a regex match per call."""
    return text.isascii() and text.isprintable()


#: Cluster names already found valid: a stream names one of a handful, every time.
_VALID_CLUSTERS: set[str] = set()


def _valid_cluster(name: str) -> bool:
    if name in _VALID_CLUSTERS:
        return True
    if not is_valid_name(name):
        return False
    if len(_VALID_CLUSTERS) >= 1024:  # bounded: a peer cannot grow it without end
        _VALID_CLUSTERS.clear()
    _VALID_CLUSTERS.add(name)
    return True


def _check_magic(buf: bytes) -> None:
    head = buf[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise _bad("not a Wicket stream preamble")


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, Status.BAD_REQUEST)
