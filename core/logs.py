"""Structured, redacted logging for the ``wicket`` processes (relay, agent, endpoint).

One call at start-up, ``setup_logging(level)``, gives every logger one line per record::

    2026-11-26T05:40:00.123Z INFO wicket.relay agent connected cluster=prod peer="10.0.0.7:51234"

or, with ``json=True``, one JSON object per line (``ts``, ``level``, ``logger``, ``msg``,
``fields``, ``exc``). Structured fields are passed with :func:`log_event`, the one API::

    log_event(log, logging.INFO, "agent connected", cluster="prod", peer=peer)

(it is ``log.log(level, msg, extra={"fields": fields})``, which also works directly).

Secrets never reach a log line (docs/security.md: logs are read by more people than
tokens are meant for): :class:`RedactingFilter` sits on the root handler, so it sees
every record, including careless ones. It replaces Wicket tokens
(``core.pki.tokens.redact``) in the final message, every field value and the formatted
exception and stack text, and masks the values of fields (and nested mapping keys, as in
control messages) whose names look secret: ``secret``, ``token``, ``password``, ``key``…
"""

from __future__ import annotations

import json as _json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from core.errors import ConfigError
from core.pki.tokens import redact

__all__ = [
    "MASK",
    "JsonFormatter",
    "LogfmtFormatter",
    "RedactingFilter",
    "is_secret_name",
    "log_event",
    "scrub",
    "setup_logging",
]

MASK = "<redacted>"
_SECRET_SUBSTRINGS = (
    "secret", "token", "password", "passwd", "passphrase", "authorization",
    "credential", "cookie", "bearer", "apikey", "privatekey", "signature",
)  # fmt: skip
_SECRET_WORDS = frozenset({"key", "auth", "pass", "pwd", "pin", "otp"})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BARE = re.compile(r"[^\s\"=\\]+")
_PLAIN = logging.Formatter()
_STANDARD_LEVELS = ("debug", "info", "warning", "error", "critical")


def is_secret_name(name: str) -> bool:
    """True if a field called ``name`` probably holds a secret (its value gets masked)."""
    lowered = name.lower()
    if any(s in lowered.replace("_", "").replace("-", "") for s in _SECRET_SUBSTRINGS):
        return True
    return any(w.lower() in _SECRET_WORDS for w in _WORD_SPLIT.split(name) if w)


def scrub(value: object) -> object:
    """A copy of ``value`` safe to print: tokens redacted, secret-named keys masked.

    Mappings and sequences are copied recursively (keys become strings); numbers, bools
    and ``None`` pass; anything else becomes its redacted ``str``.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): MASK if is_secret_name(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    return redact(str(value))


def log_event(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log ``msg`` with structured ``fields`` (rendered as ``key=value`` or JSON)."""
    logger.log(level, msg, extra={"fields": fields}, stacklevel=2)


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so that nothing secret is left in it.

    After it ran, ``record.msg`` is the final redacted message (``args`` is cleared),
    ``record.fields`` is scrubbed, and ``record.exc_text``/``stack_info`` are the
    redacted traceback text (``exc_info`` is dropped so no formatter re-renders it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as exc:  # a careless call: bad %-args must not lose the record
            message = f"{record.msg!s} (log formatting failed: {type(exc).__name__})"
        record.msg, record.args = redact(message), None
        fields = getattr(record, "fields", None)
        if fields is not None:
            record.fields = scrub(fields) if isinstance(fields, Mapping) else {}
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _exc_text(record: logging.LogRecord) -> str | None:
    """The traceback text (already redacted when the record passed the filter)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = _PLAIN.formatException(record.exc_info)
    return record.exc_text


def _logfmt_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = (
        value if isinstance(value, str) else _json.dumps(value, separators=(",", ":"), default=str)
    )
    return text if _BARE.fullmatch(text) else _json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger> <message> key=value…``, one line per record.

    Control characters in the message are escaped (no forged lines); a traceback
    follows on indented lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = _CONTROL.sub(lambda m: repr(m[0])[1:-1], record.getMessage())
        parts = [_timestamp(record), record.levelname, record.name, message]
        for key, value in _fields(record).items():
            name = key if _BARE.fullmatch(key) else _json.dumps(key)
            parts.append(f"{name}={_logfmt_value(value)}")
        line = " ".join(parts)
        extra = [t for t in (_exc_text(record), record.stack_info) if t]
        return "\n".join([line, *("    " + ln for t in extra for ln in t.splitlines())])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and, if any,
    ``fields``, ``exc`` and ``stack``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if fields := _fields(record):
            doc["fields"] = dict(fields)
        if exc := _exc_text(record):
            doc["exc"] = exc
        if record.stack_info:
            doc["stack"] = record.stack_info
        return _json.dumps(doc, ensure_ascii=False, default=str)


class _WicketHandler(logging.StreamHandler[IO[str]]):
    """Marks the one handler ``setup_logging`` owns, so a second call replaces it."""


def setup_logging(level: str, *, stream: IO[str] = sys.stderr, json: bool = False) -> None:
    """Send every record at ``level`` or above to ``stream``, redacted, one per line.

    Idempotent: a later call replaces the handler of an earlier one (new level, stream or
    format) instead of adding a second. ``ConfigError`` for an unknown level.
    """
    name = level.strip().lower()
    if name not in _STANDARD_LEVELS:
        raise ConfigError(f"unknown log level {level!r} (one of {', '.join(_STANDARD_LEVELS)})")
    handler = _WicketHandler(stream)
    handler.setFormatter(JsonFormatter() if json else LogfmtFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WicketHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name.upper())
