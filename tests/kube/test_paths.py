"""Which files count, and which one is written: client-go's rules."""

from __future__ import annotations

from pathlib import Path

from core.kube import KubeconfigPaths


def test_explicit_file_alone(tmp_path: Path) -> None:
    env = {"KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"}
    paths = KubeconfigPaths.resolve(str(tmp_path / "x"), env=env, home=str(tmp_path))
    assert paths.precedence == (str(tmp_path / "x"),)
    assert paths.default_file == str(tmp_path / "x")


def test_kubeconfig_list_is_deduplicated_and_skips_empty_entries(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": f"{a}::{b}:{a}"}, home=str(tmp_path))
    assert paths.precedence == (a, b)


def test_home_when_kubeconfig_unset_or_empty(tmp_path: Path) -> None:
    for env in ({}, {"KUBECONFIG": ""}):
        paths = KubeconfigPaths.resolve(env=env, home=str(tmp_path))
        assert paths.precedence == (str(tmp_path / ".kube" / "config"),)
        assert paths.default_file == str(tmp_path / ".kube" / "config")


def test_default_file_with_several(tmp_path: Path) -> None:
    a, b, c = (str(tmp_path / n) for n in "abc")
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": f"{a}:{b}:{c}"}, home=str(tmp_path))
    assert paths.default_file == c  # none exists: the last one
    Path(b).write_text("")
    assert paths.default_file == b  # the first that exists
    Path(a).write_text("")
    assert paths.default_file == a


def test_single_kubeconfig_entry_even_if_missing(tmp_path: Path) -> None:
    a = str(tmp_path / "missing")
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": a}, home=str(tmp_path))
    assert paths.default_file == a
