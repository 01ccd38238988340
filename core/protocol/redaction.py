"""Header lines as inspect mode records them: credentials redacted at the source, bounded.

The inspector shows each request's and response's headers, and its records travel on:
into snapshots, the GUI thread, screenshots, the clipboard. So no credential is ever
recorded: a value becomes ``<redacted>`` when its name is a credential header
(``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``) or names a
secret (contains ``token``, ``secret``, ``password`` or ``key``, any case), and when the
value itself carries an HTTP credential (``Bearer …`` or ``Basic …`` anywhere in it,
whatever the name). The authorization headers keep a known scheme word (``Bearer
<redacted>``): which kind of credential kubectl sent is worth seeing, the credential is not.

Bounds: a value longer than ``MAX_VALUE`` characters is shortened (saying by how much); a
head keeps at most ``MAX_LINES`` lines and ``MAX_BYTES`` characters of names and values,
and the lines past either bound are counted, not kept (``RecordedHeaders.cut``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_BYTES",
    "MAX_LINES",
    "MAX_VALUE",
    "NO_HEADERS",
    "REDACTED",
    "RecordedHeaders",
    "record_headers",
    "redact",
]

REDACTED = "<redacted>"
MAX_LINES = 64
"""Header lines kept per message head."""
MAX_BYTES = 8 * 1024
"""Characters of names and (redacted, shortened) values kept per message head."""
MAX_VALUE = 512
"""A longer value is kept shortened to this many characters."""

_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SCHEMED = frozenset({"authorization", "proxy-authorization"})
_SECRET_WORDS = ("token", "secret", "password", "key")
_CREDENTIAL_VALUE = re.compile(r"(?:bearer|basic)\s+\S", re.IGNORECASE)
_SCHEMES = frozenset({"basic", "bearer", "digest", "negotiate", "ntlm", "aws4-hmac-sha256"})
"""Authorization schemes whose word is kept; any other first word may be the credential."""
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RecordedHeaders:
    """One message head's header lines, redacted, in order, as far as they fit.

    ``cut_lines`` lines (``cut_bytes`` characters of names and values) did not fit.
    """

    lines: tuple[tuple[str, str], ...] = ()
    cut_lines: int = 0
    cut_bytes: int = 0

    @property
    def cut(self) -> str | None:
        """What was not recorded, in words (None if nothing)."""
        if not self.cut_lines:
            return None
        lines = "line" if self.cut_lines == 1 else "lines"
        return f"{self.cut_lines} more {lines} ({self.cut_bytes} characters) not recorded"


NO_HEADERS = RecordedHeaders()
"""The record of no head (yet): a request refused before parsing, a pending response."""


def redact(name: str, value: str) -> str:
    """``value`` as it may be recorded under ``name`` (see the module docstring)."""
    lowered = name.lower()
    if lowered in _SCHEMED:
        words = value.split(None, 1)
        if len(words) == 2 and words[0].lower() in _SCHEMES:
            return f"{words[0]} {REDACTED}"
        return REDACTED
    if (
        lowered in _CREDENTIAL_HEADERS
        or any(word in lowered for word in _SECRET_WORDS)
        or _CREDENTIAL_VALUE.search(value)
    ):
        return REDACTED
    return value


def _printable(text: str) -> str:
    """Control characters escaped (``\\x09``), so a record prints as one line."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def record_headers(items: Iterable[tuple[bytes, bytes]]) -> RecordedHeaders:
    """The record of a head's ``(name, value)`` lines: redacted first, then bounded."""
    kept: list[tuple[str, str]] = []
    used = cut_lines = cut_bytes = 0
    for raw_name, raw_value in items:
        name = raw_name.decode("latin-1")
        value = _printable(redact(name, raw_value.decode("latin-1")))
        name = _printable(name)
        if len(value) > MAX_VALUE:
            value = f"{value[:MAX_VALUE]}… ({len(value) - MAX_VALUE} more characters)"
        size = len(name) + len(value)
        if cut_lines or len(kept) >= MAX_LINES or used + size > MAX_BYTES:
            cut_lines += 1
            cut_bytes += size
            continue
        kept.append((name, value))
        used += size
    return RecordedHeaders(tuple(kept), cut_lines, cut_bytes)
