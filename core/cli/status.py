"""``wicket status``: what every running Wicket process on this machine is doing.

Reads each process's status socket (``core.aio.status``) and prints one block per
process. The snapshot is rendered generically, so a process can add lists without a CLI
change: a list of objects (or an object of objects) becomes a table, a nested object an
indented section, other values ``key: value`` lines. Column names choose the unit:
``*_ms`` and ``*_s``/``*_seconds``, ``age``, ``uptime``, ``rtt``… are durations; ``*_at``
(epoch seconds) a local time; ``*rate*`` and ``*_bps`` bytes per second; ``*bytes*``
byte counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from core.aio.status import read_all_status_sync
from core.cli import add_command
from core.format import human_bytes, utcnow

_DURATION_NAMES = ("age", "uptime", "duration", "rtt", "idle", "elapsed", "latency")
_UNIT_SUFFIX = re.compile(r"_(ms|s|secs|seconds|bps)$")


def human_duration(seconds: float) -> str:
    """Compact: ``12.4ms``, ``8.2s``, ``3m05s``, ``2h07m``, ``4d03h``."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:.1f}ms" if ms < 10 else f"{ms:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    total = int(seconds)
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _printable(text: str) -> str:
    """No terminal escapes from a peer-supplied string reach the screen."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _kind(key: str) -> str:
    name = key.lower()
    if name.endswith("_at"):
        return "time"
    if name.endswith("_ms"):
        return "ms"
    if "rate" in name or name.endswith(("_bps", "_per_s")):
        return "rate"
    if "bytes" in name:
        return "bytes"
    if name.endswith(("_s", "_secs", "_seconds")) or name.startswith(_DURATION_NAMES):
        return "seconds"
    return "plain"


def format_value(key: str, value: object) -> str:
    """One cell or value, in the unit its ``key`` implies."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        kind = _kind(key)
        if kind == "time":
            return dt.datetime.fromtimestamp(value).strftime("%H:%M:%S")
        if kind == "ms":
            return human_duration(value / 1000)
        if kind == "seconds":
            return human_duration(value)
        if kind == "bytes":
            return human_bytes(value)
        if kind == "rate":
            return human_bytes(value) + "/s"
        return str(value)
    if isinstance(value, str):
        return _printable(value)
    return _printable(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _header(key: str) -> str:
    return _UNIT_SUFFIX.sub("", key).replace("_", " ").upper()


def render_table(rows: Sequence[Mapping[str, Any]], indent: str = "    ") -> list[str]:
    """Aligned columns: the union of the rows' keys, in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    cells = [[_header(c) for c in columns]]
    cells += [[format_value(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]


def _is_table(value: object) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, Mapping) for v in value)
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value.values())
    )


def _uptime(started_at: object, now: dt.datetime) -> str:
    try:
        started = dt.datetime.fromisoformat(str(started_at))
    except ValueError:
        return "?"
    return human_duration(max(0.0, (now - started).total_seconds()))


def render_process(doc: Mapping[str, Any], now: dt.datetime | None = None) -> list[str]:
    """The block for one process: a heading line, then its snapshot."""
    now = now or utcnow()
    role, pid = _printable(str(doc.get("role"))), doc.get("pid")
    lines = [f"{role}  pid {pid}  up {_uptime(doc.get('started_at'), now)}"]
    if "error" in doc:
        lines.append(f"  error: {format_value('error', doc['error'])}")
    snapshot = doc.get("snapshot")
    if isinstance(snapshot, Mapping):
        lines += render_mapping(snapshot, "  ")
    return lines


def render_mapping(snapshot: Mapping[str, Any], indent: str) -> list[str]:
    """``key: value`` lines, nested objects as indented sections, then the tables."""
    lines: list[str] = []
    tables = []
    for key, value in snapshot.items():
        if _is_table(value):
            tables.append((key, value))
        elif isinstance(value, Mapping) and value:
            lines.append(f"{indent}{_printable(key)}:")
            lines += render_mapping(value, indent + "  ")
        elif isinstance(value, list):
            shown = ", ".join(format_value(key, v) for v in value) or "none"
            lines.append(f"{indent}{_printable(key)}: {shown}")
        else:
            lines.append(f"{indent}{_printable(key)}: {format_value(key, value)}")
    for key, value in tables:
        rows = value if isinstance(value, list) else [{"name": k, **v} for k, v in value.items()]
        lines.append(f"{indent}{_printable(key)} ({len(rows)})")
        lines += render_table(rows, indent + "  ")
    return lines


def run(args: argparse.Namespace) -> int:
    docs = read_all_status_sync(timeout=args.timeout)
    if args.json:
        json.dump(docs, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not docs:
        print("no running Wicket processes")
        return 0
    now = utcnow()
    print("\n\n".join("\n".join(render_process(doc, now)) for doc in docs))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_command(
        sub,
        "status",
        __doc__,
        help="show the live state of the Wicket processes running on this machine",
    )
    parser.add_argument("--json", action="store_true", help="print the raw documents as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to wait for each process to answer (default: 2)",
    )
    parser.set_defaults(func=run)
