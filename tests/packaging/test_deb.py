"""The Debian package: lintian finds no error, and it installs with apt, runs (version,
the app offscreen with its demo, the units systemd-analyze verifies in place), and purges
to nothing. Installing is a change to this machine: it happens under a lock, only where
no other wicket package is installed, and the purge always runs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.resources import APP_ID
from tests.packaging.conftest import KUBECTL, REPO, bundle_env
from tests.packaging.test_bundle import Started, kubectl_until_it_works, run

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # may build the bundle and the package first
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb (Debian)"),
]

#: lintian's warnings packaging/README.md accepts (its errors: none, overridden or not,
#: beyond the overrides in packaging/debian/lintian-overrides, listed there too).
ACCEPTED_WARNINGS = {"no-manual-page", "initial-upload-closes-no-bugs"}
LOCK = Path("/run/lock") / "wicket-deb-test.lock"
DESKTOP = Path("/usr/share/applications") / f"{APP_ID}.desktop"


def lintian_tags(deb: Path) -> list[tuple[str, str]]:
    got = subprocess.run(
        ["lintian", "--show-overrides", str(deb)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    tags = re.findall(r"^([EWIO]): wicket(?: \w+)?: (\S+)", got.stdout, re.MULTILINE)
    assert tags or got.returncode == 0, got.stdout + got.stderr
    return tags


@pytest.mark.skipif(not shutil.which("lintian"), reason="needs lintian")
def test_lintian_finds_no_error(deb: Path) -> None:
    tags = lintian_tags(deb)
    assert {tag for level, tag in tags if level == "E"} == set()
    assert {tag for level, tag in tags if level == "W"} <= ACCEPTED_WARNINGS
    overridden = {tag for level, tag in tags if level == "O"}
    readme = (REPO / "packaging" / "README.md").read_text()
    for tag in overridden | ACCEPTED_WARNINGS:
        assert f"`{tag}`" in readme, f"packaging/README.md must say why {tag} is accepted"


def control_depends() -> set[str]:
    control = (REPO / "packaging" / "debian" / "control").read_text()
    (line,) = re.findall(r"^Depends: (.*)$", control, re.MULTILINE)
    return {item.split()[0] for item in line.split(", ")}


def test_depends_covers_every_library_the_bundle_takes_from_the_machine(bundle: Path) -> None:
    """What ldd resolves outside the bundle (libc, GL, the display stack) is a library of
    a package in Depends; nothing is missing."""
    internal = bundle.parent / "_internal"
    env = {"LD_LIBRARY_PATH": str(internal), "PATH": "/usr/bin:/bin"}  # as the bootloader
    elves = [bundle, *internal.rglob("*.so*")]
    outside: set[str] = set()
    for elf in elves:
        got = run(["ldd", str(elf)], env)
        assert "not found" not in got.stdout, f"{elf}:\n{got.stdout}"
        outside |= {
            path for path in re.findall(r"=> (/\S+)", got.stdout)
            if not Path(path).resolve().is_relative_to(internal.resolve())
        }  # fmt: skip
    plain = {"PATH": "/usr/bin:/bin"}
    paths = sorted({str(Path(p).resolve()) for p in outside} | outside)  # usrmerge: either
    listing = run(["dpkg", "-S", *paths], plain).stdout  # nothing for a path no one has
    owner = {
        path: package
        for package, path in re.findall(r"^([^:\s]+)(?::[^:\s]+)?: (\S+)$", listing, re.M)
    }
    packages = set()
    for path in outside:
        found = owner.get(path) or owner.get(str(Path(path).resolve()))
        assert found, f"no package has {path}"
        packages.add(found)
    assert packages, "the bundle must take libc at least from the machine"
    assert packages <= control_depends(), packages - control_depends()


def dpkg_installed(package: str) -> bool:
    got = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return "install ok installed" in got.stdout


def apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-y", "-q", *args], capture_output=True, text=True, env=env, timeout=600,
        check=False,
    )  # fmt: skip


@contextlib.contextmanager
def installed(deb: Path) -> Iterator[None]:
    """The package installed for the block, then purged (also when the block fails)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one test run at a time installs it
        assert not dpkg_installed("wicket"), "a wicket package is installed here already"
        try:
            got = apt("install", "--no-install-recommends", str(deb.resolve()))
            assert got.returncode == 0, got.stdout[-2000:] + got.stderr
            yield
        finally:
            purged = apt("remove", "--purge", "wicket")
            assert purged.returncode == 0, purged.stdout[-2000:] + purged.stderr
            assert not dpkg_installed("wicket")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="needs root, apt")
@pytest.mark.skipif(not KUBECTL.exists(), reason="needs .venv/bin/kubectl")
def test_install_run_and_purge(deb: Path, bundle: Path, tmp_path: Path) -> None:
    with installed(deb):
        assert Path("/usr/bin/wicket").resolve() == Path("/opt/wicket/wicket")
        version = run(["/usr/bin/wicket", "--version"], bundle_env(tmp_path))
        assert version.returncode == 0, version.stderr
        assert version.stdout == run([str(bundle), "--version"], bundle_env(tmp_path)).stdout
        verify = subprocess.run(
            ["systemd-analyze", "verify", "wicket-relay.service", "wicket-agent.service"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        assert run(["getent", "passwd", "wicket-relay"], {}).returncode == 0
        assert "Exec=wicket\n" in DESKTOP.read_text()
        assert Path(f"/usr/share/metainfo/{APP_ID}.metainfo.xml").is_file()
        assert Path(f"/usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg").is_file()
        verified = run(["dpkg", "--verify", "wicket"], {"PATH": "/usr/bin:/bin:/usr/sbin"})
        assert (verified.returncode, verified.stdout) == (0, ""), verified.stdout

        home = tmp_path / "home"
        home.mkdir()
        env = bundle_env(home)
        with contextlib.closing(_Stopper(tmp_path)) as started:
            started.start("app", ["/usr/bin/wicket"], env)
            pods = kubectl_until_it_works(env, "--context", "wicket-demo", "get", "pods", within=60)
            assert "web" in pods, started.logs()
            assert started.stop("app") == 0, started.log("app")
        listed = run(["dpkg", "-L", "wicket"], {"PATH": "/usr/bin:/bin"}).stdout.split()
        assert "/usr/lib/systemd/system/wicket-relay.service" in listed
    assert not Path("/opt/wicket").exists()
    assert not DESKTOP.exists()
    assert not Path("/usr/bin/wicket").exists()
    assert not Path("/etc/default/wicket-relay").exists()
    assert not Path("/usr/lib/systemd/system/wicket-agent.service").exists()


class _Stopper(Started):
    def close(self) -> None:
        self.stop_all()
