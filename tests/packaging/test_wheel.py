"""The wheel and sdist as a user gets them: built from this tree with ``python -m build``
(which leaves the tree as it was), the sdist building the same wheel again, and the wheel
installed (not the checkout) into a fresh virtualenv whose ``wicket`` then says its
version and commit, runs the demo for the real kubectl (get, exec), brings the demo
online in the desktop app (offscreen) and installs its desktop files.

One build and one virtualenv for the module: pip's cache provides the dependencies
(PySide6 is not downloaded again), and the virtualenv sees no other site-packages.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import __version__
from core.resources import APP_ID
from core.service.instance import LOCK_FILE
from core.version import git_commit
from tests.demo.fixtures import skip_without_kubectl
from tests.demo.kubectl import KUBECTL
from tests.support.freedesktop import exec_argv, validate_entry

pytestmark = [pytest.mark.packaging, pytest.mark.slow]
skip_without_kubectl()

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    from_sdist: Path
    venv: Path
    commit: str | None
    tree_before: list[str]
    tree_after: list[str]

    def wicket(self) -> str:
        return str(self.venv / "bin" / "wicket")


def tree_state() -> list[str]:
    """``git status`` with ignored files: what a build could leave behind (byte-code
    caches aside, which this test's own imports may write)."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line for line in out.splitlines() if "__pycache__" not in line)


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """``args`` to success; with ``env`` (a user's) it runs in that user's HOME, away from
    the checkout (``python -c`` would import the current directory's packages)."""
    proc = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=env["HOME"] if env else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def build(*args: str | Path) -> None:
    run(sys.executable, "-m", "build", *args)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("packaging")
    before = tree_state()
    build("--sdist", "--wheel", "--outdir", tmp / "dist", REPO)
    after = tree_state()
    (wheel,) = (tmp / "dist").glob("kubewicket-*.whl")
    (sdist,) = (tmp / "dist").glob("kubewicket-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "src", filter="data")
    (source,) = (tmp / "src").iterdir()
    build("--wheel", "--outdir", tmp / "from-sdist", source)
    (from_sdist,) = (tmp / "from-sdist").glob("kubewicket-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    # this pip, its cache: the dependencies come from there (PySide6 is ~100 MB)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel)
    return Built(wheel, sdist, from_sdist, venv, git_commit(REPO), before, after)


def user_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A fresh user with no PYTHONPATH: only the virtualenv's copy can be imported."""
    home = tmp / "home"
    runtime = tmp / "runtime"
    for folder in (home, runtime):
        folder.mkdir(mode=0o700, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "KUBECONFIG": str(home / ".kube" / "config"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "LANG": "C.UTF-8",
        **extra,
    }


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    kube_env = {**env, "KUBECACHEDIR": str(Path(env["HOME"]) / ".kube" / "cache")}
    return subprocess.run(
        [str(KUBECTL), "--request-timeout=10s", *args],
        env=kube_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts: SIGTERMed (then killed) if the test did not end them."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start(
    procs: list[subprocess.Popen[bytes]], log: Path, env: dict[str, str], *args: str
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args), env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT
        )
    procs.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], log: Path) -> str:
    """SIGTERM, as a desktop session's end does: exit 0 and no traceback."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text, text
    return text


@pytest.mark.timeout(600)
def test_the_build_leaves_the_tree_as_it_was_and_the_sdist_builds_the_same_wheel(
    built: Built,
) -> None:
    assert built.tree_after == built.tree_before
    name = f"kubewicket-{__version__}"
    assert built.wheel.name == f"{name}-py3-none-any.whl"
    assert built.sdist.name == f"{name}.tar.gz"
    with zipfile.ZipFile(built.wheel) as tree, zipfile.ZipFile(built.from_sdist) as again:
        files = sorted(tree.namelist())
        assert files == sorted(again.namelist())
        for member in ("core/_build_info.py", f"core/resources/{APP_ID}.desktop"):
            assert tree.read(member) == again.read(member)
    for member in (
        f"core/resources/{APP_ID}.metainfo.xml",
        "core/resources/wicket-online.svg",
        f"core/resources/icons/hicolor/512x512/apps/{APP_ID}.png",
        "core/protocol/data/spdy3-dictionary.bin",
        "gui/launcher.py",
    ):
        assert member in files
    assert not [f for f in files if f.startswith(("tests/", "resources/")) or ".keep" in f]
    with tarfile.open(built.sdist) as archive:
        names = archive.getnames()
    for member in ("setup.py", "MANIFEST.in", "CHANGELOG.md", "core/_build_info.py"):
        assert f"{name}/{member}" in names
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]


@pytest.mark.timeout(600)
def test_the_installed_wicket_says_its_version_and_commit(built: Built, tmp_path: Path) -> None:
    env = user_env(tmp_path)
    out = subprocess.run(
        [built.wicket(), "--version"], env=env, capture_output=True, text=True, check=True
    ).stdout
    expected = f"wicket {__version__}"
    if built.commit is not None:  # a checkout (a build from an sdist carries its own)
        expected += f" (commit {built.commit})"
    assert out.strip() == expected
    code = (
        "import core, gui, importlib.metadata as m; from core.service import resource_dir; "
        "print(core.__file__, gui.__file__, resource_dir(), m.version('kubewicket'))"
    )
    where = run(built.venv / "bin" / "python", "-c", code, env=env).split()
    site = str(built.venv / "lib")
    assert all(path.startswith(site) for path in where[:3]), where
    assert where[3] == __version__


@pytest.mark.timeout(600)
def test_the_installed_demo_serves_kubectl(
    built: Built, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    env = user_env(tmp_path)
    log = tmp_path / "demo.log"
    demo = start(started, log, env, built.wicket(), "demo", "--port", "0")
    deadline = time.monotonic() + WAIT_SECONDS
    while "Ctrl-C" not in log.read_text():
        assert demo.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    match = re.search(r"^\s*export KUBECONFIG=(.+)$", log.read_text(), re.MULTILINE)
    assert match, log.read_text()
    env["KUBECONFIG"] = shlex.split(match[1])[0]
    pods = kubectl(env, "get", "pods")
    assert pods.returncode == 0, pods.stderr
    assert "web" in pods.stdout
    said = kubectl(env, "exec", "web", "--", "echo", "through the installed wheel")
    assert said.returncode == 0, said.stderr
    assert said.stdout == "through the installed wheel\n"
    stop(demo, log)


@pytest.mark.timeout(600)
def test_the_installed_app_brings_the_demo_online(
    built: Built, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    env = user_env(tmp_path, QT_QPA_PLATFORM="offscreen")
    log = tmp_path / "app.log"
    app = start(started, log, env, built.wicket())
    deadline = time.monotonic() + WAIT_SECONDS
    while True:  # online: kubectl reaches the demo through the app's local endpoint
        assert app.poll() is None, log.read_text()
        got = kubectl(env, "--context", "wicket-demo", "get", "pods")
        if got.returncode == 0:
            break
        assert time.monotonic() < deadline, f"{got.stderr}\n{log.read_text()}"
        time.sleep(0.5)
    assert "web" in got.stdout
    lock = Path(env["XDG_RUNTIME_DIR"], "wicket", LOCK_FILE)
    assert lock.read_text() == f"app {app.pid}\n"
    stop(app, log)


@pytest.mark.timeout(600)
def test_the_installed_wicket_installs_its_desktop_files(built: Built, tmp_path: Path) -> None:
    env = user_env(tmp_path)
    out = run(built.wicket(), "desktop", "install", env=env)
    entry = Path(env["HOME"], ".local", "share", "applications", f"{APP_ID}.desktop")
    assert f"  {entry}" in out.splitlines()
    validate_entry(entry)
    assert exec_argv(entry) == [built.wicket()]
    run(built.wicket(), "desktop", "uninstall", env=env)
    assert not entry.exists()
