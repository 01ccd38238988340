"""Parsing refuses what it cannot round-trip safely, naming file and line."""

from __future__ import annotations

import pytest

from core.errors import KubeconfigParseError
from core.kube.document import Document

BAD = {
    "not a mapping": ("- a\n- b\n", 1, "expected a mapping"),
    "scalar": ("hello\n", 1, "expected a mapping"),
    "clusters not a list": ("apiVersion: v1\nclusters:\n  a: 1\n", 3, "clusters is a mapping"),
    "entry not a mapping": ("contexts:\n- ctx\n", 2, "not a mapping"),
    "name not a string": ("users:\n- name: [a]\n  user: {}\n", 2, "name is not a string"),
    "body not a mapping": ("clusters:\n- name: a\n  cluster: x\n", 2, "cluster is not a mapping"),
    "duplicate key": ("apiVersion: v1\nkind: Config\nkind: Config\n", 3, "duplicate key"),
    "duplicate name": (
        "contexts:\n- name: a\n  context: {}\n- name: a\n  context: {}\n",
        4,
        "duplicate name 'a'",
    ),
    "bad extensions": (
        "clusters:\n- name: a\n  cluster:\n    extensions: x\n",
        2,
        "extensions is not a list",
    ),
    "current-context": ("current-context: [x]\n", 1, "current-context is not a string"),
    "bad indentation": ("apiVersion: v1\nclusters:\n- name: a\n bad: 1\n", 4, ""),
    "two documents": ("a: 1\n---\nb: 2\n", 2, ""),
    "tab": ("a:\n\tb: 1\n", 2, ""),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_names_file_and_line(name: str) -> None:
    text, line, problem = BAD[name]
    with pytest.raises(KubeconfigParseError) as info:
        Document("/k/config", text.encode())
    assert info.value.path == "/k/config"
    assert info.value.line == line, str(info.value)
    assert problem in str(info.value)
    assert str(info.value).startswith(f"/k/config:{line}:")


def test_not_utf8() -> None:
    with pytest.raises(KubeconfigParseError, match=r"/k:2: not UTF-8"):
        Document("/k", b"a: 1\nb: \xff\n")


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nclusters: []\ncontexts:\nusers:\n",
        "clusters:\n  - name: a  # hand-written offset\n    cluster:\n      server: https://x\n",
        "---\napiVersion: v1\nkind: Config\n",
        '{"apiVersion": "v1", "kind": "Config", "clusters": []}\n',
    ],
)
def test_unchanged_documents_keep_their_bytes(text: str) -> None:
    doc = Document("/k", text.encode())
    doc.dirty = True  # force a real dump
    assert doc.dump() == text.encode()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_files_are_empty_configs(text: str) -> None:
    doc = Document("/k", text.encode())
    assert doc.items("contexts") == [] and doc.current_context == ""
    doc.put_entry("contexts", "wicket-a", {"cluster": "wicket-a"})
    assert doc.dump().decode().startswith(text.strip())
    assert Document("/k", doc.dump()).find("contexts", "wicket-a") is not None


def test_edits_keep_style_comments_and_unknown_fields() -> None:
    text = (
        "# head\n"
        "clusters:\n"
        "  - name: a  # eol\n"
        "    cluster:\n"
        "      server: 'https://x'\n"
        "      x-extra: {keep: me}\n"
        "# before contexts\n"
        "contexts: []\n"
        'current-context: "a"\n'
    )
    doc = Document("/k", text.encode())
    doc.put_entry("clusters", "wicket-b", {"server": "https://127.0.0.1:1"})
    doc.put_entry("contexts", "wicket-b", {"cluster": "wicket-b"})
    edited = doc.dump().decode()
    assert edited.index("# before contexts") > edited.index("name: wicket-b")
    assert "  - name: wicket-b\n    cluster:\n      server: https://127.0.0.1:1\n" in edited
    doc2 = Document("/k", edited.encode())
    doc2.remove_entry("clusters", "wicket-b")
    doc2.remove_entry("contexts", "wicket-b")
    assert doc2.dump() == text.encode()
