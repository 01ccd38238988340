"""add / remove / use: what is written, where, and what is never touched."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from core.errors import KubeconfigError, KubeconfigLockError, KubeconfigParseError
from core.kube import (
    Entry,
    KubeconfigPaths,
    Mode,
    UserRef,
    WriteOptions,
    add_cluster_contexts,
    load_merged,
    remove_cluster_contexts,
    use_context,
    write_owned_entries,
)
from core.kube.model import owner_marker
from core.kube.writer import backup_files
from tests.kube.helpers import WICKET_BIN, ca_pem, foreign_kubeconfig, paths_for, spec

FAST = WriteOptions(settle=0)


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text())
    assert isinstance(data, dict)
    return data


def _entry(data: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(item for item in data[kind] if item["name"] == name)
    return entry


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(foreign_kubeconfig(3))
    path.chmod(0o600)
    return path


def test_new_file_in_new_directory(tmp_path: Path) -> None:
    paths = KubeconfigPaths.resolve(env={}, home=str(tmp_path))
    change = add_cluster_contexts(paths, spec("prod", 7443))
    config = tmp_path / ".kube" / "config"
    assert change.written == (str(config),)
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = _load(config)
    cluster = _entry(data, "clusters", "wicket-prod")["cluster"]
    assert cluster["server"] == "https://127.0.0.1:7443"
    assert cluster["tls-server-name"] == "kubernetes.default.svc"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca_pem()
    assert "insecure-skip-tls-verify" not in cluster
    assert cluster["extensions"] == [
        {
            "name": "wicket.dev/owner",
            "extension": {"managed-by": "wicket", "cluster": "prod", "mode": "passthrough"},
        }
    ]
    user = _entry(data, "users", "wicket-prod")["user"]
    assert user["exec"] == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": WICKET_BIN,
        "args": ["credential", "--cluster", "prod"],
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
    }
    assert set(user) == {"exec", "extensions"}  # never a token
    context = _entry(data, "contexts", "wicket-prod")["context"]
    assert (context["cluster"], context["user"]) == ("wicket-prod", "wicket-prod")
    assert not data.get("current-context")  # adding never switches
    assert [c["name"] for c in data["contexts"]] == ["wicket-prod"]


def test_add_is_idempotent_and_updates_in_place(config: Path) -> None:
    paths = paths_for(str(config))
    add_cluster_contexts(paths, spec(public="https://k.example"))
    first = config.read_bytes()
    assert add_cluster_contexts(paths, spec(public="https://k.example")).written == ()
    assert config.read_bytes() == first
    add_cluster_contexts(paths, spec(port=9000, mode=Mode.INSPECT))
    data = _load(config)
    names = [c["name"] for c in data["contexts"]]
    assert names == ["ctx-0", "ctx-1", "ctx-2", "wicket-prod"]  # public one gone
    cluster = _entry(data, "clusters", "wicket-prod")["cluster"]
    assert cluster["server"] == "https://127.0.0.1:9000"
    assert cluster["extensions"][0]["extension"]["mode"] == "inspect"


def test_user_reference_replaces_the_exec_user(config: Path) -> None:
    paths = paths_for(str(config))
    add_cluster_contexts(paths, spec())
    ref = spec()
    ref = type(ref)(**{**ref.__dict__, "credentials": UserRef("u1")})
    add_cluster_contexts(paths, ref)
    data = _load(config)
    assert _entry(data, "contexts", "wicket-prod")["context"]["user"] == "u1"
    assert [u["name"] for u in data["users"]][-1] == "aws"
    bad = type(ref)(**{**ref.__dict__, "credentials": UserRef("nobody")})
    before = config.read_bytes()
    with pytest.raises(KubeconfigError, match="no user 'nobody'"):
        add_cluster_contexts(paths, bad)
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("- context: {cluster: c0, user: u0}\n  name: wicket-prod\n", "not written by Wicket"),
        (
            "- context:\n    cluster: c0\n    extensions:\n    - name: wicket.dev/owner\n"
            "      extension: {managed-by: wicket, cluster: other}\n  name: wicket-prod\n",
            "belongs to Wicket cluster 'other'",
        ),
    ],
)
def test_foreign_entries_are_never_overwritten(config: Path, extra: str, message: str) -> None:
    text = config.read_text().replace("current-context:", extra + "current-context:")
    config.write_text(text)
    with pytest.raises(KubeconfigError, match=message):
        add_cluster_contexts(paths_for(str(config)), spec())
    remove_cluster_contexts(paths_for(str(config)), "prod")
    assert config.read_text() == text
    assert backup_files(str(config)) == []


def test_remove_clears_the_active_context_only(config: Path) -> None:
    paths = paths_for(str(config))
    original = config.read_bytes()
    add_cluster_contexts(paths, spec())
    assert remove_cluster_contexts(paths, "prod").cleared_current_context is False
    assert config.read_bytes() == original
    add_cluster_contexts(paths, spec())
    use_context(paths, "wicket-prod")
    assert load_merged(paths).current_context == "wicket-prod"
    change = remove_cluster_contexts(paths, "prod")
    assert change.cleared_current_context
    assert load_merged(paths).current_context == ""
    assert remove_cluster_contexts(paths, "prod").written == ()


def test_use_context_refuses_unknown_names(config: Path) -> None:
    paths = paths_for(str(config))
    before = config.read_bytes()
    with pytest.raises(KubeconfigError, match="no context 'nope'"):
        use_context(paths, "nope")
    assert config.read_bytes() == before
    assert use_context(paths, "ctx-0").written == ()  # already current
    use_context(paths, "ctx-2")
    assert load_merged(paths).current_context == "ctx-2"


def test_several_files_follow_client_go(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("apiVersion: v1\ncontexts:\n- name: ctx-a\n  context: {cluster: x}\n")
    b.write_text(foreign_kubeconfig(2, current=1))
    env = {"KUBECONFIG": f"{c}:{a}:{b}"}
    paths = KubeconfigPaths.resolve(env=env, home=str(tmp_path))
    view = load_merged(paths)
    assert view.current_context == "ctx-1" and view.current_context_source == str(b)
    assert view.files == (str(a), str(b))
    assert [ctx.name for ctx in view.contexts] == ["ctx-a", "ctx-0", "ctx-1"]
    add_cluster_contexts(paths, spec())  # new entries: the first existing file
    assert "wicket-prod" in a.read_text() and "wicket-prod" not in b.read_text()
    use_context(paths, "wicket-prod")
    assert "current-context: wicket-prod" in a.read_text()
    assert load_merged(paths).context("wicket-prod") is not None
    assert not c.exists()
    remove_cluster_contexts(paths, "prod")
    assert "wicket" not in a.read_text()
    assert load_merged(paths).current_context == "ctx-1"  # b's shows through again


def test_first_file_wins_and_edits_go_back_to_their_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("apiVersion: v1\n")
    paths_b = paths_for(str(b))
    add_cluster_contexts(paths_b, spec(port=1111))
    b_text = b.read_text()
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": f"{a}:{b}"}, home=str(tmp_path))
    add_cluster_contexts(paths, spec(port=2222))
    assert a.read_text() == "apiVersion: v1\n"
    assert b.read_text() == b_text.replace("1111", "2222")


def test_parse_error_in_any_file_writes_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(foreign_kubeconfig(2))
    b.write_text("apiVersion: v1\nclusters:\n- name: x\n  cluster: {server: [}\n")
    paths = KubeconfigPaths.resolve(env={"KUBECONFIG": f"{a}:{b}"}, home=str(tmp_path))
    before = {p: p.read_bytes() for p in (a, b)}
    with pytest.raises(KubeconfigParseError, match=rf"^{b}:4: ") as info:
        add_cluster_contexts(paths, spec())
    assert (info.value.path, info.value.line) == (str(b), 4)
    assert {p: p.read_bytes() for p in (a, b)} == before
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # no lock, temp or backup left


def test_stale_lock_is_a_clear_error(config: Path) -> None:
    lock = Path(f"{config}.lock")
    lock.write_text("")
    before = config.read_bytes()
    started = time.monotonic()
    with pytest.raises(KubeconfigLockError, match=rf"{lock}: .*stale"):
        add_cluster_contexts(paths_for(str(config)), spec(), options=WriteOptions(lock_timeout=0.3))
    assert 0.3 <= time.monotonic() - started < 3
    assert config.read_bytes() == before and lock.exists()
    lock.unlink()
    add_cluster_contexts(paths_for(str(config)), spec(), options=WriteOptions(lock_timeout=0.3))
    assert not lock.exists()


def test_symlink_is_kept_and_both_names_are_locked(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "kubeconfig"
    target.parent.mkdir()
    target.write_text(foreign_kubeconfig(2))
    link = tmp_path / "kube" / "config"
    link.parent.mkdir()
    link.symlink_to(target)
    Path(f"{target}.lock").write_text("")
    with pytest.raises(KubeconfigLockError, match=r"kubeconfig\.lock"):
        add_cluster_contexts(paths_for(str(link)), spec(), options=WriteOptions(lock_timeout=0.1))
    Path(f"{target}.lock").unlink()
    add_cluster_contexts(paths_for(str(link)), spec())
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "wicket-prod" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [Path(p).parent for p in backup_files(str(link))] == [target.parent]
    assert sorted(os.listdir(link.parent)) == ["config"]


def test_backups_are_private_and_pruned(config: Path) -> None:
    config.chmod(0o644)
    paths = paths_for(str(config))
    previous = []
    for port in range(5000, 5006):
        previous.append(config.read_bytes())
        add_cluster_contexts(paths, spec(port=port), options=FAST)
    backups = backup_files(str(config))
    assert len(backups) == 3
    assert [Path(p).read_bytes() for p in backups] == previous[-3:]
    for path in [*backups, str(config)]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_threads_lose_no_update(config: Path) -> None:
    paths = paths_for(str(config))
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            add_cluster_contexts(paths, spec(f"t{n}", 7000 + n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = {ctx.name for ctx in load_merged(paths).contexts}
    assert {f"wicket-t{n}" for n in range(8)} <= names


def test_load_merged_needs_an_explicit_file_to_exist(tmp_path: Path) -> None:
    paths = KubeconfigPaths.resolve(str(tmp_path / "none"), env={}, home=str(tmp_path))
    with pytest.raises(KubeconfigError, match="no such kubeconfig"):
        load_merged(paths)
    empty = KubeconfigPaths.resolve(env={}, home=str(tmp_path))
    assert load_merged(empty).contexts == ()


def test_load_merged_marks_wicket_contexts(config: Path) -> None:
    paths = paths_for(str(config))
    add_cluster_contexts(paths, spec(public="https://k.example:6443"))
    view = load_merged(paths)
    wicket = {ctx.name: ctx for ctx in view.contexts if ctx.wicket_cluster}
    assert set(wicket) == {"wicket-prod", "wicket-prod-public"}
    assert wicket["wicket-prod-public"].server == "https://k.example:6443"
    assert view.context("ctx-0") is not None and view.context("ctx-0").wicket_cluster is None  # type: ignore[union-attr]
    assert view.cluster_sources["wicket-prod"] == str(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "bad name"}, "invalid cluster name"),
        ({"port": 0}, "out of range"),
        ({"ca_pem": b"nope"}, "not a PEM"),
        ({"public_server": "http://x"}, "public server 'http://x': not an https:// URL"),
        ({"public_server": "https://k.example/api"}, "no user, path, query or fragment"),
        ({"public_server": "https://k.example:0"}, "port 0 is not a port"),
        ({"tls_server_name": ""}, "tls-server-name"),
    ],
)
def test_spec_is_checked(change: dict[str, Any], message: str) -> None:
    base = spec()
    with pytest.raises(KubeconfigError, match=message):
        type(base)(**{**base.__dict__, **change})


# -- hand-built entries (the demo's) ------------------------------------------------------


def _demo_entries(token: str) -> list[Entry]:
    return [
        Entry("clusters", "wicket-demo", {"server": "https://127.0.0.1:9443"}),
        Entry("users", "wicket-demo", {"token": token}),
        Entry("contexts", "wicket-demo", {"cluster": "wicket-demo", "user": "wicket-demo"}),
    ]


def test_owned_entries_are_stamped_and_switch_only_if_unset(config: Path) -> None:
    paths = KubeconfigPaths.single(str(config))
    before = load_merged(paths).current_context
    change = write_owned_entries(
        paths, "demo", _demo_entries("t1"), current="wicket-demo", switch="if-unset", options=FAST
    )
    assert change.written == (str(config),)
    assert change.current_context == before != "wicket-demo"
    data = _load(config)
    user = _entry(data, "users", "wicket-demo")["user"]
    assert user == {"token": "t1", "extensions": [owner_marker("demo", Mode.PASSTHROUGH)]}
    assert load_merged(paths).context("wicket-demo").wicket_cluster == "demo"  # type: ignore[union-attr]
    again = write_owned_entries(
        paths, "demo", _demo_entries("t2"), current="wicket-demo", switch="always", options=FAST
    )
    assert again.current_context == "wicket-demo"
    assert _entry(_load(config), "users", "wicket-demo")["user"]["token"] == "t2"
    same = config.read_bytes()
    assert write_owned_entries(paths, "demo", _demo_entries("t2"), options=FAST).written == ()
    assert config.read_bytes() == same


@pytest.mark.parametrize("owner", [None, "other"])
def test_owned_entries_never_overwrite_what_wicket_did_not_write(
    tmp_path: Path, owner: str | None
) -> None:
    path = tmp_path / "config"
    paths = KubeconfigPaths.single(str(path))
    if owner is None:
        path.write_text("clusters:\n- name: wicket-demo\n  cluster: {server: https://x:1}\n")
    else:
        write_owned_entries(paths, owner, _demo_entries("t0"), options=FAST)
    before = path.read_bytes()
    with pytest.raises(KubeconfigError, match=r"not written by|belongs to"):
        write_owned_entries(paths, "demo", _demo_entries("t1"), options=FAST)
    assert path.read_bytes() == before
