"""The standalone bundle (``dist/bundle/wicket``): it starts without a checkout or a
Python, its Qt has the plugins the app needs and not the modules it leaves out, the app
comes up offscreen with the demo kubectl can use, and the headless commands work,
kubectl's exec credential plugin included (the kubeconfig names the bundle itself)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from core.version import version_text
from tests.packaging.conftest import KUBECTL, bundle_env
from tests.support.democluster import demo_cluster

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(1200),  # the first test may build the bundle
    pytest.mark.skipif(not KUBECTL.exists(), reason="needs .venv/bin/kubectl"),
]

PASSPHRASE = "correct horse battery staple"


def run(
    argv: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def kubectl_until_it_works(
    env: dict[str, str], *args: str, within: float = 30, saying: str = ""
) -> str:
    """kubectl's stdout once it succeeds and says ``saying`` (the demo, the tunnel or a
    pod's process may still be starting)."""
    deadline = time.monotonic() + within
    while True:
        got = run([str(KUBECTL), "--request-timeout=5s", *args], env)
        if got.returncode == 0 and saying in got.stdout:
            return got.stdout
        assert time.monotonic() < deadline, (got.returncode, got.stdout[-2000:], got.stderr)
        time.sleep(0.25)


class Started:
    """Processes a test started, each logging to a file; all stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-2000:]}" for name in self.procs)

    def stop(self, name: str, timeout: float = 30) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(name, 10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    s = Started(tmp_path)
    try:
        yield s
    finally:
        s.stop_all()


def test_version(bundle: Path, tmp_path: Path) -> None:
    got = run([str(bundle), "--version"], bundle_env(tmp_path))
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"wicket {version_text()}"  # the commit it was built from


QT_CHECK = """
import sys
from PySide6.QtGui import QGuiApplication, QIcon, QImageReader
app = QGuiApplication([])
formats = {bytes(f).decode() for f in QImageReader.supportedImageFormats()}
assert "svg" in formats, formats
from gui.icons import RESOURCES
for state in ("online", "degraded", "offline"):
    assert not QIcon(str(RESOURCES / f"wicket-{state}.svg")).pixmap(32, 32).isNull(), state
print("svg ok", RESOURCES)
"""


def test_qt_has_what_the_app_needs_and_not_what_it_leaves_out(bundle: Path, tmp_path: Path) -> None:
    qt = bundle.parent / "_internal" / "PySide6" / "Qt"
    for plugin in (
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "platforms/libqoffscreen.so",
        "wayland-shell-integration/libxdg-shell.so",
        "iconengines/libqsvgicon.so",
        "imageformats/libqsvg.so",
        "platformthemes/libqxdgdesktopportal.so",
        "tls/libqopensslbackend.so",
    ):
        assert (qt / "plugins" / plugin).is_file(), plugin
    inside = {p.name for p in bundle.parent.rglob("*")}
    for left_out in ("libQt6Qml.so.6", "libQt6Quick.so.6", "libQt6Pdf.so.6", "libqgtk3.so",
                     "libqeglfs.so", "libgtk-3.so.0", "QtQml.abi3.so", "qt_de.qm", "libqjpeg.so",
                     "libX11.so.6", "libxcb-cursor.so.0", "libfontconfig.so.1"):  # fmt: skip
        assert left_out not in inside, left_out
    assert not [p for p in bundle.parent.rglob("*") if p.is_symlink() and not p.exists()]
    got = run([str(bundle), "-c", QT_CHECK], bundle_env(tmp_path))  # the SVG tray icons
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("svg ok")
    assert str(bundle.parent) in got.stdout  # the bundle's own copy, not the checkout's


DLOPEN = """
import ctypes, sys
for path in sys.argv[1:]:
    ctypes.CDLL(path)
print("loaded", len(sys.argv) - 1)
"""


def test_every_qt_plugin_loads(bundle: Path, tmp_path: Path) -> None:
    """xcb, wayland and the rest link: the bundle's libraries plus the machine's display
    stack (the .deb's Depends, installed by scripts/install-system-test-deps.sh)."""
    plugins = sorted(str(p) for p in (bundle.parent / "_internal").rglob("plugins/*/*.so"))
    got = run([str(bundle), "-c", DLOPEN, *plugins], bundle_env(tmp_path))
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"loaded {len(plugins)}"
    assert len(plugins) > 20


@pytest.mark.slow
def test_the_app_starts_offscreen_and_its_demo_answers_kubectl(
    bundle: Path, tmp_path: Path, started: Started
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = bundle_env(home)
    app = started.start("app", [str(bundle)], env)
    pods = kubectl_until_it_works(env, "--context", "wicket-demo", "get", "pods", within=60)
    assert "web" in pods and "chat" in pods, started.logs()
    said = run([str(KUBECTL), "--context", "wicket-demo", "exec", "web", "--", "echo", "hi"], env)
    assert (said.returncode, said.stdout) == (0, "hi\n"), said.stderr
    # the chat pod is `sys.executable -u -c …`: the bundle runs it as Python would (a
    # frozen interpreter's start can lag the pod list: its log may still be empty)
    chat = kubectl_until_it_works(
        env, "--context", "wicket-demo", "logs", "chat", saying="[chat] hello"
    )
    assert "[chat] hello" in chat
    assert app.poll() is None
    assert started.stop("app") == 0, started.log("app")
    assert "Traceback" not in started.log("app")


def _private_cluster(bundle: Path, tmp: Path, started: Started) -> tuple[str, Path, str]:
    """The demo apiserver alone (the bundle runs it as Python code): target, CA, token."""
    program = "from core.demo.__main__ import main; main(['--state-dir', 'apiserver'])"
    started.start("apiserver", [str(bundle), "-c", program], bundle_env(tmp))
    kubeconfig = tmp / "apiserver" / "kubeconfig"
    return demo_cluster(kubeconfig, lambda: started.log("apiserver"), tmp)


@pytest.mark.slow
def test_headless_add_up_agent_and_the_credential_plugin(
    bundle: Path, tmp_path: Path, started: Started
) -> None:
    """``wicket cluster add``, ``agent`` and ``up`` from the bundle; kubectl gets its
    token from the bundle's ``wicket credential``, asking ``wicket up``."""
    target, ca, token = _private_cluster(bundle, tmp_path, started)
    (tmp_path / "upstream-token").write_text(token + "\n")
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    (tmp_path / "passphrase").chmod(0o600)
    (tmp_path / "run").mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    env = bundle_env(
        home,
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        WICKET_PASSPHRASE_FILE=str(tmp_path / "passphrase"),
    )
    added = run(
        [str(bundle), "cluster", "add", "lab", "--target", target, "--ca-file", str(ca),
         "--upstream-token-file", str(tmp_path / "upstream-token"),
         "--join-token-out", str(tmp_path / "join-token")],
        env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    users = YAML(typ="safe").load(Path(env["KUBECONFIG"]).read_text())["users"]
    (plugin,) = [u["user"]["exec"] for u in users if "exec" in u["user"]]
    assert plugin["command"] == str(bundle.resolve())
    assert plugin["args"] == ["credential", "--cluster", "lab"]

    command = added.stdout.strip().splitlines()[-1].split()
    assert command[:2] == ["wicket", "agent"]
    started.start("agent", [str(bundle), *command[1:-1], str(tmp_path / "agent")], env)
    started.start("up", [str(bundle), "up"], env)
    pods = kubectl_until_it_works(env, "--context", "wicket-lab", "get", "pods")
    assert "web" in pods, started.logs()
    status = run([str(bundle), "status"], env)
    assert status.returncode == 0 and "up" in status.stdout, status.stderr
    assert started.stop("up") == 0, started.log("up")
    assert "Traceback" not in started.logs()


@pytest.mark.slow
def test_wicket_demo_headless(bundle: Path, tmp_path: Path, started: Started) -> None:
    kubeconfig = tmp_path / "demo.kubeconfig"
    env = bundle_env(tmp_path, KUBECONFIG=str(kubeconfig))
    started.start("demo", [str(bundle), "demo", "--kubeconfig", str(kubeconfig)], env)
    pods = kubectl_until_it_works(env, "--context", "wicket-demo", "get", "pods", within=60)
    assert "ticker" in pods, started.logs()
    assert started.stop("demo") == 0, started.log("demo")
