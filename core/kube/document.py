"""One kubeconfig file in ruamel's round-trip mode: parse, check, edit, dump.

Round-trip mode keeps comments, key order, quoting and fields Wicket does not know, so
an edit changes only the entries it names. ruamel attaches the comment lines that
follow a list item to that item's last scalar; removing the item would drop them (a
user's ``# staging`` header above ``contexts:`` went with the last cluster), so the
edits here move those lines to the neighbouring item and back.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken

from core.errors import KubeconfigParseError
from core.kube.model import BODY_KEY, KINDS, Kind

_SEQ_OFFSET = re.compile(r"^[^\s#][^\n]*:[ \t]*\n(?:[ \t]*(?:#[^\n]*)?\n)*( *)- ", re.MULTILINE)


class Document:
    """A parsed kubeconfig file; ``original`` is ``None`` for a file not yet created."""

    def __init__(self, path: str, original: bytes | None) -> None:
        self.path = path
        self.original = original
        self.dirty = False
        text = _decode(path, original)
        self._offset = _guess_offset(text)
        self._explicit_start = text.lstrip().startswith("---")
        try:
            data = _yaml(self._offset).load(text)
        except MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise KubeconfigParseError(path, line, problem) from None
        except YAMLError as exc:
            raise KubeconfigParseError(path, None, str(exc)) from None
        # A file holding only comments parses as None: keep its text ahead of the data.
        self._preamble = text if data is None and text.strip() else ""
        if self._preamble and not self._preamble.endswith("\n"):
            self._preamble += "\n"
        if data is None:
            data = CommentedMap()
        _check(path, data)
        self.data: CommentedMap = data

    # -- reading ---------------------------------------------------------------------

    def items(self, kind: Kind) -> list[CommentedMap]:
        seq = self.data.get(kind)
        return list(seq) if isinstance(seq, CommentedSeq) else []

    def find(self, kind: Kind, name: str) -> CommentedMap | None:
        return next((item for item in self.items(kind) if entry_name(item) == name), None)

    @property
    def current_context(self) -> str:
        value = self.data.get("current-context")
        return str(value) if value else ""

    # -- editing ---------------------------------------------------------------------

    def set_current_context(self, name: str) -> None:
        if self.current_context == name:
            return
        if "current-context" in self.data:
            # Via None: ruamel would otherwise keep the old value's quoting style.
            self.data["current-context"] = None
            self.data["current-context"] = name
        else:
            keys = list(self.data)
            pos = keys.index("contexts") + 1 if "contexts" in keys else len(keys)
            self.data.insert(pos, "current-context", name)
        self.dirty = True

    def put_entry(self, kind: Kind, name: str, body: dict[str, Any]) -> None:
        """Create the entry, or replace its body if it differs from ``body``."""
        item = self.find(kind, name)
        if item is not None:
            if plain(item.get(BODY_KEY[kind])) == body:
                return
            tail = _take_tail(item)
            item[BODY_KEY[kind]] = _node(body)
            _put_tail(item, tail)
        else:
            item = CommentedMap([("name", name), (BODY_KEY[kind], _node(body))])
            seq = self.data.get(kind)
            if isinstance(seq, CommentedSeq) and (len(seq) or seq.fa.flow_style() is not True):
                if len(seq):
                    _put_tail(item, _take_tail(seq[-1]))
                seq.append(item)
            else:
                # Missing, null or ``[]``: a fresh block list, taking the lines after it.
                if kind in self.data:
                    self.data[kind] = CommentedSeq([item])
                else:
                    self.data.insert(_kind_position(self.data, kind), kind, CommentedSeq([item]))
                _put_tail(item, _take_slot(self.data, kind, 2))
        self.dirty = True

    def remove_entry(self, kind: Kind, name: str) -> None:
        seq = self.data.get(kind)
        item = self.find(kind, name)
        if item is None or not isinstance(seq, CommentedSeq):
            return
        index = next(i for i, other in enumerate(seq) if other is item)
        tail = _take_tail(item)
        del seq[index]
        if index > 0:
            _put_tail(seq[index - 1], tail)
        else:
            if not seq:
                empty = CommentedSeq()
                empty.fa.set_flow_style()
                self.data[kind] = empty
            _put_slot(self.data, kind, 2, tail)
        self.dirty = True

    def dump(self) -> bytes:
        """The file's new bytes (the original ones when nothing was edited)."""
        if not self.dirty and self.original is not None:
            return self.original
        yaml = _yaml(self._offset)
        yaml.explicit_start = self._explicit_start
        out = io.StringIO()
        yaml.dump(self.data, out)
        return (self._preamble + out.getvalue()).encode("utf-8")


def new_document(path: str) -> Document:
    """An empty kubeconfig in kubectl's layout, for a file that does not exist yet."""
    doc = Document(path, None)
    doc.data.update([("apiVersion", "v1"), ("kind", "Config"), ("preferences", CommentedMap())])
    return doc


def entry_name(item: CommentedMap) -> str:
    value = item.get("name")
    return str(value) if value is not None else ""


def plain(node: Any) -> Any:
    """Plain Python data for comparisons; nulls in mappings count as absent."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    return node


# -- parsing ---------------------------------------------------------------------------


def _decode(path: str, raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise KubeconfigParseError(path, line, "not UTF-8 text") from None


def _yaml(offset: int) -> YAML:
    # A fresh instance per call: YAML objects are not thread-safe.
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2 + offset, offset=offset)
    return yaml


def _guess_offset(text: str) -> int:
    """Indentation of ``-`` under a key: kubectl writes 0, many hand-written files 2."""
    match = _SEQ_OFFSET.search(text)
    return min(len(match.group(1)), 4) if match else 0


def _line(node: CommentedBase, key: Any) -> int | None:
    try:
        if isinstance(node, CommentedMap):
            return int(node.lc.value(key)[0]) + 1
        return int(node.lc.item(key)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _check(path: str, data: Any) -> None:
    """Refuse shapes kubectl would refuse, so Wicket never rewrites a file it misread."""
    if not isinstance(data, CommentedMap):
        raise KubeconfigParseError(path, 1, f"expected a mapping, found {_kind_of(data)}")
    current = data.get("current-context")
    if current is not None and not isinstance(current, str):
        raise KubeconfigParseError(
            path, _line(data, "current-context"), "current-context is not a string"
        )
    for kind in KINDS:
        seq = data.get(kind)
        if seq is None:
            continue
        if not isinstance(seq, CommentedSeq):
            raise KubeconfigParseError(
                path, _line(data, kind), f"{kind} is {_kind_of(seq)}, not a list"
            )
        seen: set[str] = set()
        for index, item in enumerate(seq):
            line = _line(seq, index)
            if not isinstance(item, CommentedMap):
                raise KubeconfigParseError(
                    path, line, f"{kind} entry is {_kind_of(item)}, not a mapping"
                )
            name = item.get("name")
            if name is not None and not isinstance(name, str):
                raise KubeconfigParseError(path, line, f"{kind} entry name is not a string")
            if entry_name(item) in seen:
                raise KubeconfigParseError(path, line, f"duplicate name {name!r} in {kind}")
            seen.add(entry_name(item))
            body = item.get(BODY_KEY[kind])
            if body is not None and not isinstance(body, CommentedMap):
                raise KubeconfigParseError(
                    path, line, f"{kind} entry {name!r}: {BODY_KEY[kind]} is not a mapping"
                )
            extensions = body.get("extensions") if body is not None else None
            if extensions is not None and not (
                isinstance(extensions, CommentedSeq)
                and all(isinstance(ext, CommentedMap) for ext in extensions)
            ):
                raise KubeconfigParseError(
                    path, line, f"{kind} entry {name!r}: extensions is not a list of mappings"
                )


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"a scalar ({value!r:.40})"


def _kind_position(data: CommentedMap, kind: Kind) -> int:
    """Where kubectl's alphabetical layout would put a missing list."""
    keys = list(data)
    return next((i for i, key in enumerate(keys) if str(key) > kind), len(keys))


# -- building ------------------------------------------------------------------------


def _node(value: Any) -> Any:
    if isinstance(value, dict):
        return CommentedMap((k, _node(v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_node(v) for v in value)
    return value


# -- comments that trail an item ---------------------------------------------------------


def _tail_slots(node: Any) -> list[tuple[CommentedBase, Any, int]]:
    """Comment slots along the last-child path, outermost first.

    ruamel stores the lines after a block collection in the slot of its deepest last
    scalar (position 2 of a mapping key, 0 of a list index).
    """
    slots: list[tuple[CommentedBase, Any, int]] = []
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        if node.fa.flow_style() is True:
            break
        if isinstance(node, CommentedMap):
            key: Any = list(node)[-1]
            slots.append((node, key, 2))
        else:
            key = len(node) - 1
            slots.append((node, key, 0))
        node = node[key]
    return slots


def _take_slot(container: CommentedBase, key: Any, pos: int) -> str:
    """Detach the whole comment lines after ``key``; leave its end-of-line comment."""
    entry = container.ca.items.get(key)
    token = entry[pos] if entry and len(entry) > pos else None
    if not isinstance(token, CommentToken):
        return ""
    value: str = token.value
    eol, _, rest = value.partition("\n")
    if eol.strip():
        token.value = eol + "\n"
    else:
        entry[pos] = None
    return rest


def _take_tail(node: Any) -> str:
    return "".join(_take_slot(c, k, p) for c, k, p in reversed(_tail_slots(node)))


def _put_slot(container: CommentedBase, key: Any, pos: int, lines: str) -> None:
    if not lines:
        return
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    token = entry[pos]
    if isinstance(token, CommentToken):
        token.value = token.value + lines
    else:
        entry[pos] = CommentToken("\n" + lines, CommentMark(0), None)


def _put_tail(node: Any, lines: str) -> None:
    slots = _tail_slots(node)
    if slots:
        _put_slot(*slots[-1], lines)
