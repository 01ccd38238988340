"""Kubernetes remote-command channel helpers (v4 over SPDY, v5 over WebSocket), no I/O.

* WebSocket ``v5.channel.k8s.io``: each binary message starts with a channel byte
  (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); ``FF <ch>`` half-closes a channel.
* SPDY ``v4.channel.k8s.io``: one SPDY stream per channel, named by its ``streamtype``
  header; the resize stream carries newline-separated JSON.
* Both end with a ``Status`` object on the error channel; a non-zero exit is the
  ``NonZeroExitCode`` failure whose cause carries the code.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import RemoteProtocolError

__all__ = [
    "CLOSE_CHANNEL",
    "EXEC_SPDY_PROTOCOLS",
    "PORTFORWARD_SPDY_PROTOCOL",
    "PORTFORWARD_WEBSOCKET_PROTOCOL",
    "V5_PROTOCOL",
    "Channel",
    "ChannelClosed",
    "ChannelData",
    "ResizeDecoder",
    "TerminalSize",
    "choose_protocol",
    "decode_message",
    "encode_close",
    "encode_message",
    "exit_code_from_status",
    "parse_resize",
    "status_exit_code",
    "status_failure",
    "status_success",
    "STREAM_TYPE_BY_NAME",
]

V5_PROTOCOL = "v5.channel.k8s.io"
PORTFORWARD_WEBSOCKET_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PORTFORWARD_SPDY_PROTOCOL = "portforward.k8s.io"
EXEC_SPDY_PROTOCOLS = ("v4.channel.k8s.io",)
"""SPDY remote-command versions we speak, best first (v4 carries exit codes)."""
CLOSE_CHANNEL = 255


class Channel(enum.IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    ERROR = 3
    RESIZE = 4


STREAM_TYPE_BY_NAME = {
    "stdin": Channel.STDIN,
    "stdout": Channel.STDOUT,
    "stderr": Channel.STDERR,
    "error": Channel.ERROR,
    "resize": Channel.RESIZE,
}
"""SPDY ``streamtype`` header value → channel."""


@dataclass(frozen=True)
class ChannelData:
    channel: int
    data: bytes


@dataclass(frozen=True)
class ChannelClosed:
    channel: int


def encode_message(channel: int, data: bytes = b"") -> bytes:
    """One v5 binary message: the channel byte, then the data."""
    return bytes([channel]) + data


def encode_close(channel: int) -> bytes:
    return bytes([CLOSE_CHANNEL, channel])


def decode_message(message: bytes) -> ChannelData | ChannelClosed:
    if not message:
        raise RemoteProtocolError("empty channel message")
    channel = message[0]
    if channel == CLOSE_CHANNEL:
        if len(message) != 2:
            raise RemoteProtocolError("malformed channel close message")
        return ChannelClosed(message[1])
    return ChannelData(channel, message[1:])


def choose_protocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """Our most preferred protocol among those offered (comma lists allowed), or None."""
    names = {p.strip() for item in offered for p in item.split(",")}
    return next((p for p in supported if p in names), None)


# -- Status --------------------------------------------------------------------------


def _status(body: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, **body}).encode()


def status_success() -> bytes:
    return _status({"status": "Success"})


def status_failure(message: str, reason: str = "InternalError", code: int = 500) -> bytes:
    return _status({"status": "Failure", "message": message, "reason": reason, "code": code})


def status_exit_code(exit_code: int) -> bytes:
    """The Status kubectl turns into its own exit code."""
    return _status(
        {
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: {exit_code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
        }
    )


def exit_code_from_status(raw: bytes) -> int | None:
    """0 for Success, the code for NonZeroExitCode, None for other failures."""
    status = _json(raw, "error channel")
    if not isinstance(status, dict):
        raise RemoteProtocolError("error channel is not a Status object")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    break
    return None


# -- resize --------------------------------------------------------------------------


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


def parse_resize(raw: bytes) -> TerminalSize:
    """One resize JSON object: ``{"Width":W,"Height":H}``."""
    return _size(_json(raw, "resize message"))


def _json(raw: bytes, what: str) -> object:
    """A JSON value from the peer; bytes that are not JSON are its protocol error."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RemoteProtocolError(f"{what} is not JSON: {exc}") from exc


def _size(obj: object) -> TerminalSize:
    if not isinstance(obj, dict):
        raise RemoteProtocolError("resize message is not an object")
    width, height = obj.get("Width", 0), obj.get("Height", 0)
    if type(width) is not int or type(height) is not int:  # JSON true is no width
        raise RemoteProtocolError("resize Width/Height are not integers")
    if not (0 <= width < 65536 and 0 <= height < 65536):
        raise RemoteProtocolError("resize Width/Height out of range")
    return TerminalSize(width, height)


class ResizeDecoder:
    """Incremental decoder for the SPDY resize stream (JSON values, newline-separated)."""

    MAX_PENDING = 4096

    def __init__(self) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()

    def receive_data(self, data: bytes) -> list[TerminalSize]:
        self._buffer += data.decode("utf-8", errors="replace")
        sizes: list[TerminalSize] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return sizes
            try:
                obj, end = self._json.raw_decode(text)
            except ValueError:
                if len(text) > self.MAX_PENDING:
                    raise RemoteProtocolError("resize stream is not JSON") from None
                self._buffer = text
                return sizes
            self._buffer = text[end:]
            sizes.append(_size(obj))
