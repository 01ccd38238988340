"""The desktop configuration: migrated from the app's old format and from version 1,
validated, refused when newer or damaged (and then left as it is), changed one writer at
a time."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.mode import Mode
from core.service import save_user_file
from core.service.config import (
    SCHEMA_VERSION,
    ClusterConfig,
    DesktopConfig,
    SecretStorage,
    cluster_doc,
)

OLD_FORMAT = {
    "demo": False,
    "clusters": [
        {
            "name": "lab",
            "relay": "embedded",
            "port": 43120,
            "mode": "inspect",
            "cluster_ca": "PEM",
            "server_name": "lab.example",
        }
    ],
}


LAB_V1 = {
    "name": "lab",
    "relay": "embedded",
    "port": 43120,
    "mode": "passthrough",
    "cluster_ca": "PEM",
    "server_name": "lab.example",
    "target": "10.0.0.1:6443",
    "secrets": "encrypted-file",
    "user": "",
}
VERSION_1 = {
    "version": 1,
    "demo": True,
    "demo_mode": "inspect",
    "relay": {"listen": "127.0.0.1:41234"},
    "clusters": [
        LAB_V1,
        {"name": "far", "relay": "relay.example:443", "port": 43121, "user": "admin"},
    ],
}


def test_the_apps_old_format_is_read_and_written_back_versioned(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps(OLD_FORMAT))
    config = DesktopConfig.load(path)
    assert config.demo is False
    assert config.clusters == [
        ClusterConfig("lab", "embedded", 43120, Mode.INSPECT, "PEM", "lab.example")
    ]
    assert config.clusters[0].secrets is SecretStorage.KEYRING
    DesktopConfig.update(path, lambda c: setattr(c, "relay_listen", "127.0.0.1:7000"))
    doc = json.loads(path.read_text())
    assert doc["version"] == SCHEMA_VERSION == 2
    assert doc["relay"] == {"listen": "127.0.0.1:7000"}
    assert doc["clusters"][0]["mode"] == "inspect"
    assert doc["clusters"][0]["public_server"] == ""
    assert DesktopConfig.load(path).clusters == config.clusters
    assert path.stat().st_mode & 0o077 == 0


def test_version_1_is_migrated_and_the_public_server_kept(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps(VERSION_1))
    config = DesktopConfig.load(path)
    lab, far = config.clusters
    assert lab == ClusterConfig(
        "lab",
        "embedded",
        43120,
        Mode.PASSTHROUGH,
        "PEM",
        "lab.example",
        "10.0.0.1:6443",
        SecretStorage.ENCRYPTED_FILE,
    )
    assert (far.relay, far.user, far.public_server) == ("relay.example:443", "admin", "")
    assert (config.demo_mode, config.relay_listen) == (Mode.INSPECT, "127.0.0.1:41234")

    public = "https://relay.example:7443"
    DesktopConfig.update(path, lambda c: c.put(replace(lab, public_server=public)))
    doc = json.loads(path.read_text())
    assert doc["version"] == 2
    assert doc["clusters"] == [{**LAB_V1, "public_server": public}, cluster_doc(far)]
    assert cluster_doc(far)["public_server"] == ""
    again = DesktopConfig.load(path)
    assert again.clusters == [replace(lab, public_server=public), far]
    assert (again.demo_mode, again.relay_listen) == (Mode.INSPECT, "127.0.0.1:41234")
    DesktopConfig.update(path, lambda c: c.put(replace(lab, public_server="")))
    assert DesktopConfig.load(path).clusters == [lab, far]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://relay.example:7443", "not an https:// URL"),
        ("relay.example:7443", "not an https:// URL"),
        ("https://:7443", "no host in it"),
        ("https://relay.example:99999", "Port out of range"),
        ("https://relay.example:7443/api", "no user, path, query or fragment"),
        ("https://relay example", "is not a host name"),
    ],
)
def test_a_public_server_that_is_no_https_url_is_refused(
    tmp_path: Path, url: str, problem: str
) -> None:
    path = tmp_path / "clusters.json"
    content = json.dumps(
        {**VERSION_1, "version": 2, "clusters": [{"name": "x", "public_server": url}]}
    )
    path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        DesktopConfig.load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: clusters[0].public_server: {url!r}: ")
    assert problem in message and message.endswith("left as it is")
    with pytest.raises(ConfigError):
        DesktopConfig.update(path, lambda c: c.drop("x"))
    assert path.read_text() == content  # byte for byte
    with pytest.raises(ConfigError, match=f"public server {re.escape(repr(url))}: "):
        ClusterConfig("x", "embedded", 0, public_server=url)  # nor from code


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ('{"version": 99, "clusters": []}', "version: schema version 99 is newer"),
        ("{not json", "not JSON"),
        ('{"clusters": [{"name": "x", "port": "80"}]}', "clusters[0].port: expected int"),
        ('{"clusters": [{"name": "x", "port": 70000}]}', "clusters[0].port: port 70000"),
        ('{"clusters": [{"name": "x", "mode": "loud"}]}', "clusters[0].mode:"),
        ('{"clusters": [{"name": "x", "secrets": "paper"}]}', "clusters[0].secrets:"),
        ('{"clusters": [{"name": "x"}, {"name": "x"}]}', "clusters[1]: a second cluster"),
        ('{"relay": []}', "relay: expected dict"),
        ('{"demo_mode": "loud"}', "demo_mode:"),
    ],
)
def test_a_refused_file_is_named_and_left_as_it_is(
    tmp_path: Path, content: str, names: str
) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        DesktopConfig.load(path)
    assert str(path) in str(refused.value) and names in str(refused.value)
    with pytest.raises(ConfigError):
        DesktopConfig.update(path, lambda c: c.put(ClusterConfig("new", "embedded", 1)))
    assert path.read_text() == content


def test_put_replaces_in_place_and_drop_removes(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    for cfg in (ClusterConfig(n, "embedded", 0) for n in ("a", "b", "c")):
        DesktopConfig.update(path, cfg_adder(cfg))
    DesktopConfig.update(path, lambda c: c.put(ClusterConfig("b", "relay.example:443", 5)))
    DesktopConfig.update(path, lambda c: c.drop("a"))
    config = DesktopConfig.load(path)
    assert [(c.name, c.relay, c.port) for c in config.clusters] == [
        ("b", "relay.example:443", 5),
        ("c", "embedded", 0),
    ]
    assert config.clusters[1].embedded and not config.clusters[0].embedded


def cfg_adder(cfg: ClusterConfig) -> Callable[[DesktopConfig], None]:
    return lambda config: config.put(cfg)


def test_a_missing_file_is_the_defaults(tmp_path: Path) -> None:
    config = DesktopConfig.load(tmp_path / "none.json")
    assert (config.demo, config.relay_listen, config.clusters) == (True, "", [])


def test_the_demos_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    assert DesktopConfig.load(path).demo_mode is Mode.PASSTHROUGH
    DesktopConfig.update(path, lambda c: setattr(c, "demo_mode", Mode.INSPECT))
    assert DesktopConfig.load(path).demo_mode is Mode.INSPECT
    assert json.loads(path.read_text())["demo_mode"] == "inspect"


def test_a_file_the_user_saves_is_private_and_whole(tmp_path: Path) -> None:
    target = tmp_path / "wicket-join-token"
    target.write_text("old")
    target.chmod(0o644)
    save_user_file(target, "secret-token\n")
    assert target.read_text() == "secret-token\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["wicket-join-token"]
    with pytest.raises(ConfigError, match="cannot save"):
        save_user_file(tmp_path / "missing-dir" / "x", "y")
