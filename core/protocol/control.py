"""Control-stream messages: 4-byte big-endian length + a strict JSON object (sans-I/O).

Spec: docs/control.md. ``MESSAGES`` is the table of every message type: its direction
and its fields with their types; a message must match its row exactly. The decoder
checks the length prefix the moment its four bytes arrive, before buffering any body,
and turns every malformed input into ``RemoteProtocolError`` (never another exception),
queued *after* the messages that preceded it so that chunking cannot change what is
delivered. ``encode_message`` applies the same table to what we send
(``LocalProtocolError``), so a peer never receives something we would refuse.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import LocalProtocolError, RemoteProtocolError
from core.pki.identity import is_valid_name

PROTOCOL_VERSION = 1
#: Version 2 adds ``members`` (a relay fleet's member list, to agents). An agent says 2
#: in ``hello``; a relay answers ``hello_ok`` with the version the peer said, so a
#: version-1 peer never receives a message it does not know.
FLEET_VERSION = 2
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION, FLEET_VERSION})
MAX_MEMBERS = 64
MAX_MESSAGE_SIZE = 64 * 1024
_HEADER = 4
SECRET_FIELDS = frozenset({"secret"})
_MAX_UINT = 2**53 - 1
_MAX_PEM = 16 * 1024

Message = dict[str, Any]
Check = Callable[[object], bool]


class Sender(enum.Enum):
    """Who sent a message: the relay, or a peer (agent or desktop client)."""

    PEER = "peer"
    RELAY = "relay"


class ErrorCode(enum.StrEnum):
    """Values of ``error.code``; deliberately coarse (no detail for attackers)."""

    UNSUPPORTED_VERSION = "unsupported_version"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INVALID_TOKEN = "invalid_token"  # noqa: S105
    BAD_REQUEST = "bad_request"
    UNKNOWN_CLUSTER = "unknown_cluster"
    CONFLICT = "conflict"
    INTERNAL = "internal"


# -- field types ---------------------------------------------------------------------

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
_PEM_CHARS = re.compile(r"[A-Za-z0-9+/= \r\n-]*")
_SECRET = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def _uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_UINT


def _bool(value: object) -> bool:
    return type(value) is bool


def _name(value: object) -> bool:
    return isinstance(value, str) and is_valid_name(value)


def _text(limit: int) -> Check:
    def check(value: object) -> bool:
        return isinstance(value, str) and len(value) <= limit and not _CONTROL_CHARS.search(value)

    return check


def _nullable(inner: Check) -> Check:
    return lambda value: value is None or inner(value)


def _one_of(*choices: str) -> Check:
    return lambda value: isinstance(value, str) and value in choices


def _pattern(regex: re.Pattern[str]) -> Check:
    return lambda value: isinstance(value, str) and regex.fullmatch(value) is not None


def _pem(label: str) -> Check:
    begin = f"-----BEGIN {label}-----"
    return lambda value: (
        isinstance(value, str)
        and len(value) <= _MAX_PEM
        and value.startswith(begin)
        and _PEM_CHARS.fullmatch(value) is not None
    )


_MEMBER_ID = re.compile(r"[0-9a-f]{16}")


def _members(value: object) -> bool:
    """A list of at most ``MAX_MEMBERS`` ``{"id": member_id, "address": text(255)}``."""
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        return False
    address = _text(255)
    return all(
        isinstance(m, dict)
        and set(m) == {"id", "address"}
        and _pattern(_MEMBER_ID)(m["id"])
        and address(m["address"])
        for m in value
    )


_ROLE = _one_of("agent", "client")
_ADDR = _nullable(_text(255))
_CSR = _pem("CERTIFICATE REQUEST")
_CERT = _pem("CERTIFICATE")


@dataclass(frozen=True)
class MessageSpec:
    """One row of the message table: who may send it and its exact fields."""

    senders: frozenset[Sender]
    fields: Mapping[str, Check]


_P = frozenset({Sender.PEER})
_R = frozenset({Sender.RELAY})
_B = frozenset(Sender)

MESSAGES: Mapping[str, MessageSpec] = {
    "hello": MessageSpec(_P, {"version": _uint, "role": _ROLE, "name": _name}),
    "hello_ok": MessageSpec(_R, {"version": _uint, "role": _ROLE, "name": _name}),
    "enroll": MessageSpec(
        _P,
        {
            "version": _uint,
            "token_id": _pattern(_TOKEN_ID),
            "secret": _pattern(_SECRET),
            "csr_pem": _CSR,
        },
    ),
    "renew": MessageSpec(_P, {"csr_pem": _CSR}),
    "enrolled": MessageSpec(_R, {"role": _ROLE, "name": _name, "cert_pem": _CERT, "ca_pem": _CERT}),
    "register": MessageSpec(_P, {"cluster": _name, "target": _text(255)}),
    "registered": MessageSpec(_R, {"cluster": _name, "public_address": _ADDR}),
    "list_clusters": MessageSpec(_P, {"watch": _bool}),
    "cluster": MessageSpec(
        _R,
        {"name": _name, "state": _one_of("online", "offline", "removed"), "public_address": _ADDR},
    ),
    "clusters_end": MessageSpec(_R, {"count": _uint}),
    "members": MessageSpec(_R, {"self": _nullable(_pattern(_MEMBER_ID)), "members": _members}),
    "stream_opened": MessageSpec(
        _B,
        {
            "stream_id": _uint,
            "cluster": _name,
            "endpoint": _one_of("local", "public"),
            "client": _ADDR,
        },
    ),
    "stream_closed": MessageSpec(
        _B,
        {
            "stream_id": _uint,
            "bytes_in": _uint,
            "bytes_out": _uint,
            "duration_ms": _uint,
            "reason": _one_of("eof", "reset", "timeout", "refused", "error"),
        },
    ),
    "error": MessageSpec(_B, {"code": _one_of(*ErrorCode), "message": _text(1024)}),
}


def validate_message(message: Mapping[str, object], sender: Sender) -> str | None:
    """The first problem with ``message`` as sent by ``sender``, or ``None`` if valid."""
    kind = message.get("type")
    if not isinstance(kind, str):
        return "message has no string 'type'"
    spec = MESSAGES.get(kind)
    if spec is None:
        return f"unknown message type {kind[:40]!r}"
    if sender not in spec.senders:
        return f"{kind!r} may not be sent by the {sender.value}"
    names = set(message) - {"type"}
    if names != set(spec.fields):
        extra, missing = sorted(names - set(spec.fields)), sorted(set(spec.fields) - names)
        return f"{kind!r}: missing fields {missing}, unexpected fields {extra}"[:200]
    for name, check in spec.fields.items():
        if not check(message[name]):
            return f"{kind!r}: invalid field {name!r}"
    return None


def redacted(message: Mapping[str, object]) -> Message:
    """A copy safe to log: the fields that carry secrets are replaced."""
    return {k: "<redacted>" if k in SECRET_FIELDS else v for k, v in message.items()}


def encode_message(message: Mapping[str, object], sender: Sender) -> bytes:
    """Frame one message; ``LocalProtocolError`` if it does not match the table."""
    problem = validate_message(message, sender)
    if problem is not None:
        raise LocalProtocolError(problem)
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    data = body.encode("utf-8")
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return len(data).to_bytes(_HEADER, "big") + data


def decode_body(body: bytes, sender: Sender) -> Message:
    """Parse and validate one message body (without its length prefix)."""
    try:
        text = body.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("control message is not valid UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError("control message is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError("control message is not a JSON object")
    problem = validate_message(obj, sender)
    if problem is not None:
        raise RemoteProtocolError(problem)
    return obj


class ControlDecoder:
    """Bytes in (``receive_data``/``receive_eof``), validated messages out (``next_message``).

    ``sender`` is who is on the other end: a relay decodes ``Sender.PEER`` messages.
    After an error the decoder is dead: it drops further input and raises again.
    """

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._buffer = bytearray()
        # A list, not a deque: a few messages at most, and an empty deque costs 760 bytes
        # in each of the thousands of idle sessions a relay holds.
        self._messages: list[Message] = []
        self._error: RemoteProtocolError | None = None
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise LocalProtocolError("receive_data after receive_eof")
        if self._error is not None:
            return
        self._buffer += data
        self._parse()

    def receive_eof(self) -> None:
        """The stream ended; a partial message left in the buffer is an error."""
        self._eof = True
        if self._error is None and self._buffer:
            self._fail(RemoteProtocolError("control stream ended inside a message"))

    def next_message(self) -> Message | None:
        """The next complete message, ``None`` if more bytes are needed."""
        if self._messages:
            return self._messages.pop(0)
        if self._error is not None:
            raise self._error
        return None

    def messages_received(self) -> list[Message]:
        """Every complete message so far; raises only when an error is all that is left."""
        out = list(self._messages)
        self._messages.clear()
        if not out and self._error is not None:
            raise self._error
        return out

    def _parse(self) -> None:
        buf, pos = self._buffer, 0
        try:
            while len(buf) - pos >= _HEADER:
                length = int.from_bytes(buf[pos : pos + _HEADER], "big")
                if not 1 <= length <= MAX_MESSAGE_SIZE:
                    raise RemoteProtocolError(
                        f"control message length {length} outside 1..{MAX_MESSAGE_SIZE}"
                    )
                end = pos + _HEADER + length
                if len(buf) < end:
                    break
                self._messages.append(decode_body(bytes(buf[pos + _HEADER : end]), self._sender))
                pos = end
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        del buf[:pos]

    def _fail(self, error: RemoteProtocolError) -> None:
        self._error = error
        self._buffer.clear()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
