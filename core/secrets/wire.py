"""The credential socket's wire format: one JSON line each way (``docs/secrets.md``).

Sans-I/O: bytes in, values out, and back. The server (:mod:`core.secrets.socket`) and
its client share these functions, so the two sides cannot drift apart. Parsers check
the size first, then the shape. A bad request becomes the error to reply; a bad reply raises
:class:`~core.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from core.errors import RemoteProtocolError
from core.pki.identity import is_valid_name

VERSION = 1
#: Longest request line, newline included (a cluster name is at most 63 characters).
MAX_REQUEST = 1024
#: Longest reply line, newline included (room for any bearer token a cluster issues).
MAX_REPLY = 64 * 1024


class ReplyError(enum.Enum):
    """Why the server gave no token; the ``error`` field of a reply."""

    BAD_REQUEST = "bad-request"
    """Not one JSON line, too long, or an invalid cluster name."""
    VERSION = "version"
    """A request version this server does not speak."""
    REFUSED = "refused"
    """The peer runs as another user."""
    BUSY = "busy"
    """Too many connections at once; try again later."""
    TIMEOUT = "timeout"
    """No complete request line within the read deadline."""
    UNAVAILABLE = "unavailable"
    """The lookup failed or did not answer in time."""


@dataclass(frozen=True)
class Reply:
    """A token, or ``None`` with no error (Wicket runs but has no token), or an error."""

    token: str | None = None
    error: ReplyError | None = None


def request_to_send(cluster: str) -> bytes:
    return _line({"v": VERSION, "cluster": cluster})


def reply_to_send(reply: Reply) -> bytes:
    body: dict[str, Any] = {"v": VERSION}
    if reply.error is not None:
        body["error"] = reply.error.value
    else:
        body["token"] = reply.token
    return _line(body)


def request_received(line: bytes) -> str | ReplyError:
    """The cluster asked for, or the error to reply with (the server never raises)."""
    body = _object(line, MAX_REQUEST)
    if body is None:
        return ReplyError.BAD_REQUEST
    if body.get("v") != VERSION:
        return ReplyError.VERSION
    cluster = body.get("cluster")
    if not isinstance(cluster, str) or not is_valid_name(cluster):
        return ReplyError.BAD_REQUEST
    return cluster


def reply_received(line: bytes) -> Reply:
    """The server's answer; raises :class:`RemoteProtocolError` for a malformed one."""
    body = _object(line, MAX_REPLY)
    if body is None or body.get("v") != VERSION:
        raise RemoteProtocolError("credential reply: not a version 1 reply line")
    if "error" in body:
        try:
            return Reply(error=ReplyError(body["error"]))
        except ValueError:
            raise RemoteProtocolError("credential reply: unknown error code") from None
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise RemoteProtocolError("credential reply: the token is not a non-empty string")
    return Reply(token=token)


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes, limit: int) -> dict[str, Any] | None:
    """The JSON object on one line of at most ``limit`` bytes, or None."""
    if len(line) > limit or not line.endswith(b"\n") or b"\n" in line[:-1]:
        return None
    try:
        body = json.loads(line)
    except ValueError:  # UnicodeDecodeError is one
        return None
    return body if isinstance(body, dict) else None
