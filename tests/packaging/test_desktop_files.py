"""The desktop integration: the entry, icons and metainfo pass the freedesktop.org
validators, ``wicket desktop install`` puts them in the user's XDG folders (the entry
running this very ``wicket``) and ``uninstall`` takes exactly them away again;
``--system-root`` stages the system-wide layout a package ships."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.resources import APP_ID, resource_dir
from core.service import freedesktop
from tests.support.cli import run_wicket
from tests.support.freedesktop import (
    ACCEPTED_APPSTREAM,
    appstream_issues,
    exec_argv,
    tool,
    validate_entry,
)
from tests.support.home import fresh_home

RESOURCES = resource_dir()


def tree(root: Path) -> dict[str, int]:
    """Every file and folder below ``root``: relative path → mode."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def test_the_packaged_entry_and_metainfo_pass_the_validators() -> None:
    assert RESOURCES is not None
    validate_entry(RESOURCES / f"{APP_ID}.desktop")
    metainfo = RESOURCES / f"{APP_ID}.metainfo.xml"
    assert appstream_issues("validate", str(metainfo)) <= ACCEPTED_APPSTREAM
    text = metainfo.read_text()
    for shot in re.findall(r"<image[^>]*>([^<]+)</image>", text):
        # each screenshot is one of the README's, at the URL GitHub serves it from
        prefix = "https://github.com/kubewicket/wicket/raw/main/"
        assert shot.startswith(prefix), shot
        path = shot.removeprefix(prefix)
        assert (RESOURCES.parent / path).is_file(), shot
        assert path in (RESOURCES.parent / "README.md").read_text(), shot


def test_the_system_layout_is_staged_as_a_package_ships_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = run_wicket("desktop", "install", "--system-root", str(root))
    assert proc.returncode == 0, proc.stderr
    share = "usr/share"
    icons = [f"{share}/icons/hicolor/{n}x{n}/apps/{APP_ID}.png" for n in freedesktop.ICON_SIZES]
    files = {
        f"{share}/applications/{APP_ID}.desktop",
        f"{share}/metainfo/{APP_ID}.metainfo.xml",
        f"{share}/icons/hicolor/scalable/apps/{APP_ID}.svg",
        *icons,
    }
    staged = tree(root)
    assert {p for p, mode in staged.items() if (root / p).is_file()} == files
    assert {mode for p, mode in staged.items() if p in files} == {0o644}
    assert {mode for p, mode in staged.items() if p not in files} == {0o755}
    for line in files:
        assert f"  {root / line}" in proc.stdout.splitlines()
    entry = root / share / "applications" / f"{APP_ID}.desktop"
    assert exec_argv(entry) == ["wicket"]
    validate_entry(entry)
    # validate-tree also checks that the launchable's entry and the icon are there
    assert appstream_issues("validate-tree", str(root)) <= ACCEPTED_APPSTREAM
    for size in freedesktop.ICON_SIZES:
        png = (root / share / f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20]) == int.from_bytes(png[20:24]) == size

    again = run_wicket("desktop", "uninstall", "--system-root", str(root))
    assert again.returncode == 0, again.stderr
    assert tree(root) == {}


def test_install_and_uninstall_for_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fresh_home(tmp_path, monkeypatch)
    share = home / ".local" / "share"
    (home / ".config").mkdir()
    # what the user has already: another app's entry and icon, and the caches
    (share / "applications").mkdir(parents=True)
    (share / "applications" / "other.desktop").write_text("[Desktop Entry]\n")
    hicolor = share / "icons" / "hicolor"
    (hicolor / "48x48" / "apps").mkdir(parents=True)
    (hicolor / "48x48" / "apps" / "other.png").write_bytes(b"png")
    for command in (
        ["update-desktop-database", str(share / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", str(hicolor)],
    ):
        subprocess.run([tool(command[0]), *command[1:]], check=True, capture_output=True)
    cache = hicolor / "icon-theme.cache"
    before = tree(home)

    proc = run_wicket("desktop", "install")
    assert proc.returncode == 0, proc.stderr
    layout = freedesktop.user_layout()
    assert layout.share == share
    for path in layout.files():
        assert path.is_file(), path
        assert f"  {path}" in proc.stdout.splitlines()
    entry = layout.entry
    validate_entry(entry)
    argv = exec_argv(entry)
    assert len(argv) == 1 and os.path.isabs(argv[0])  # this wicket, wherever it is
    version = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("wicket ")
    assert APP_ID.encode() in cache.read_bytes()  # the existing icon cache was refreshed
    assert (
        layout.icon(None).read_bytes()
        == (resource_dir() or tmp_path).joinpath("wicket.svg").read_bytes()
    )

    freedesktop.set_autostart(True, argv[0])
    autostart = home / ".config" / "autostart" / f"{APP_ID}.desktop"
    assert exec_argv(autostart) == [argv[0], freedesktop.AUTOSTART_FLAG]

    removed = run_wicket("desktop", "uninstall")
    assert removed.returncode == 0, removed.stderr
    assert f"  {autostart}" in removed.stdout.splitlines()
    assert tree(home) == before  # exactly what was there (the caches refreshed in place)
    assert APP_ID.encode() not in cache.read_bytes()
    assert (share / "applications" / "other.desktop").is_file()

    nothing = run_wicket("desktop", "uninstall")
    assert nothing.returncode == 0
    assert "Nothing to remove" in nothing.stdout


@pytest.mark.parametrize(
    "path",
    [
        "/opt/My Apps/bin/wicket",
        '/tmp/a "quoted" $HOME `x` back\\slash 100%/wicket',
        "/tmp/semi;colon&amp(paren)/wicket",
    ],
)
def test_exec_survives_any_path(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_home(tmp_path, monkeypatch)
    freedesktop.set_autostart(True, path)
    entry = freedesktop.autostart_path()
    assert exec_argv(entry) == [path, freedesktop.AUTOSTART_FLAG]
    validate_entry(entry)
    assert freedesktop.autostart_enabled()
    assert freedesktop.set_autostart(False) == entry
    assert not entry.exists() and not freedesktop.autostart_enabled()
    assert freedesktop.set_autostart(False) is None


def test_a_line_break_in_the_command_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_home(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="line break"):
        freedesktop.set_autostart(True, "/tmp/a\nb/wicket")
    assert not freedesktop.autostart_path().exists()


def test_an_installation_without_resources_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_home(tmp_path, monkeypatch)
    monkeypatch.setattr("core.resources.CANDIDATES", (tmp_path / "nowhere",))
    with pytest.raises(ConfigError, match="no resource files"):
        freedesktop.install_user("/usr/bin/wicket")
    assert not (tmp_path / "home" / ".local").exists()


def test_xdg_folders_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fresh_home(tmp_path, monkeypatch)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")  # ignored, as the spec asks
    assert freedesktop.user_layout().share == tmp_path / "data"
    assert freedesktop.autostart_path() == home / ".config" / "autostart" / f"{APP_ID}.desktop"
