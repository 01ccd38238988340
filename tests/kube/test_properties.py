"""Property tests over generated kubeconfigs: Wicket touches only what it owns.

The files are written in the two layouts people have (kubectl's, and hand-written with
indented list dashes) with comments, extensions and unknown fields in random places.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from core.errors import KubeconfigError
from core.kube import WriteOptions, add_cluster_contexts, load_merged, remove_cluster_contexts
from core.kube.model import PREFIX, owner_of
from tests.kube.helpers import paths_for, spec

NAMES = st.from_regex(r"(wicket-)?[a-z][a-z0-9]{0,5}", fullmatch=True)
COMMENT = st.from_regex(r"# [a-z ]{0,12}", fullmatch=True)
FAST = WriteOptions(settle=0)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def kubeconfigs(draw: st.DrawFn) -> str:
    dash = draw(st.sampled_from(["", "  "]))  # kubectl's layout or indented dashes
    pad = " " * len(dash)
    lines = [draw(COMMENT) + "\n"] if draw(st.booleans()) else []
    lines.append("apiVersion: v1\n")
    names_of: dict[str, list[str]] = {}
    for kind, body_key in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        names = names_of[kind] = draw(st.lists(NAMES, max_size=5, unique=True))
        if not names and draw(st.booleans()):
            lines.append(f"{kind}: []\n")
            continue
        lines.append(f"{kind}:\n")
        for name in names:
            if draw(st.booleans()):
                lines.append(f"{pad}{draw(COMMENT)}\n")
            eol = f"  {draw(COMMENT)}" if draw(st.booleans()) else ""
            lines.append(f"{dash}- name: {name}{eol}\n")
            lines.append(f"{pad}  {body_key}:\n")
            field = {"clusters": "server: https://10.1.2.3", "contexts": f"cluster: {name}"}
            lines.append(f"{pad}    {field.get(kind, 'token-file: /run/t')}\n")
            if draw(st.booleans()):
                lines += [
                    f"{pad}    extensions:\n",
                    f"{pad}    {dash}- name: example.com/x\n",
                    f"{pad}    {pad}  extension: {{a: 1}}\n",
                ]
        if draw(st.booleans()):
            lines.append(draw(COMMENT) + "\n")
    if draw(st.booleans()):
        current = draw(st.sampled_from([*names_of["contexts"], "elsewhere"]))
        lines.append(f"current-context: {current}\n")
    if draw(st.booleans()):
        lines.append("x-tool:\n  keep: [1, 2]  # unknown field\n")
    if draw(st.booleans()):
        lines.append(draw(COMMENT) + "\n")
    return "".join(lines)


def _foreign(path: Path) -> dict[str, Any]:
    """Everything in the file that Wicket does not own, as plain data."""
    data = YAML(typ="safe").load(path.read_text()) or {}
    out = dict(data)
    for kind, key in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        out[kind] = [
            item for item in data.get(kind) or [] if owner_of(item["name"], item.get(key)) is None
        ]
    return out


def _comments(text: str) -> Counter[str]:
    return Counter(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)


def _same(after: str, before: str) -> bool:
    """Byte-identical, except that an emptied list comes back as ``[]`` even if it was null."""
    for kind in ("clusters", "contexts", "users"):
        after = after.replace(f"\n{kind}: []\n", f"\n{kind}:\n")
        before = before.replace(f"\n{kind}: []\n", f"\n{kind}:\n")
    return after == before


def _collides(text: str, cluster: str) -> bool:
    return re.search(rf"name: {PREFIX}{cluster}(  #.*)?$", text, re.MULTILINE) is not None


@SETTINGS
@given(text=kubeconfigs(), cluster=st.sampled_from(["a", "b0", "prod"]))
def test_add_touches_only_owned_and_remove_restores_bytes(text: str, cluster: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "config"
        file.write_text(text)
        paths = paths_for(str(file))
        foreign = _foreign(file)
        if _collides(text, cluster):
            with pytest.raises(KubeconfigError, match="not written by Wicket"):
                add_cluster_contexts(paths, spec(cluster, public="https://k.example"), options=FAST)
            assert file.read_text() == text
            return
        add_cluster_contexts(paths, spec(cluster, public="https://k.example"), options=FAST)
        added = file.read_text()
        assert _foreign(file) == foreign
        assert _comments(added) == _comments(text)
        view = load_merged(paths)
        assert {c.name for c in view.contexts if c.wicket_cluster == cluster} == {
            f"wicket-{cluster}",
            f"wicket-{cluster}-public",
        }
        # Idempotent: the same add writes nothing.
        again = add_cluster_contexts(paths, spec(cluster, public="https://k.example"), options=FAST)
        assert again.written == () and file.read_text() == added
        # An update (port, no public endpoint) still keeps foreign content.
        add_cluster_contexts(paths, spec(cluster, port=1234), options=FAST)
        assert _foreign(file) == foreign
        remove_cluster_contexts(paths, cluster, options=FAST)
        assert _same(file.read_text(), text)
        assert remove_cluster_contexts(paths, cluster, options=FAST).written == ()


@SETTINGS
@given(text=kubeconfigs())
def test_interleaved_clusters_compose_to_the_identity(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "config"
        file.write_text(text)
        paths = paths_for(str(file))
        if _collides(text, "x1") or _collides(text, "x2"):
            return
        add_cluster_contexts(paths, spec("x1"), options=FAST)
        add_cluster_contexts(paths, spec("x2", public="https://k.example"), options=FAST)
        remove_cluster_contexts(paths, "x1", options=FAST)
        assert _foreign(file) == _foreign_of(text)
        remove_cluster_contexts(paths, "x2", options=FAST)
        assert _same(file.read_text(), text)


def _foreign_of(text: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "config"
        file.write_text(text)
        return _foreign(file)
