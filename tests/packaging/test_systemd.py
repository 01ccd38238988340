"""The systemd units (packaging/systemd): valid, as hardened as packaging/README.md says,
their ExecStart parsed by the real ``wicket`` argparse, and the relay and the agent from
the bundle working under the units' seccomp sandbox (MemoryDenyWriteExecute= included:
Python, cffi and cryptography must not need writable executable memory)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import build_parser
from tests.packaging import sandbox
from tests.packaging.conftest import REPO
from tests.tunnel.harness import Tunnel, echo, payload, transfer

UNITS = REPO / "packaging" / "systemd"
DEFAULTS = REPO / "packaging" / "debian"
RELAY, AGENT = UNITS / "wicket-relay.service", UNITS / "wicket-agent.service"

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze"),
]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("unit", [RELAY, AGENT], ids=lambda u: u.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    """The unit as written; only the program is one that exists here (the .deb's test
    verifies the installed units with the real /usr/bin/wicket)."""
    text = unit.read_text()
    assert "ExecStart=/usr/bin/wicket " in text
    copy = tmp_path / unit.name
    copy.write_text(text.replace("/usr/bin/wicket", shutil.which("true") or "/bin/true"))
    got = analyze("verify", str(copy))
    assert got.returncode == 0 and not got.stderr.strip(), got.stderr


def exposure(unit: Path) -> float:
    got = analyze("security", "--offline=yes", str(unit))
    assert got.returncode == 0, got.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", got.stdout)
    assert found, got.stdout[-500:]
    return float(found.group(1))


@pytest.mark.parametrize("unit", [RELAY, AGENT], ids=lambda u: u.name)
def test_exposure_is_what_the_readme_says(unit: Path) -> None:
    score = exposure(unit)
    assert score <= 2.0, f"{unit.name}: exposure {score}"
    readme = (REPO / "packaging" / "README.md").read_text()
    assert f"| `{unit.name}` | {score:.1f} |" in readme, "update the table in packaging/README.md"


def _environment(unit: Path, defaults: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in sandbox.unit_settings(unit).get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = value
    for line in defaults.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def exec_start(unit: Path, defaults: Path) -> list[str]:
    """ExecStart's argv as systemd expands it: %-specifiers, ``${VAR}`` as one word,
    ``$VAR`` split on whitespace (nothing when empty), from Environment= and the
    EnvironmentFile= the .deb installs."""
    (line,) = sandbox.unit_settings(unit)["ExecStart"]
    env = _environment(unit, defaults)
    specifiers = {"%S": "/var/lib", "%t": "/run", "%d": f"/run/credentials/{unit.name}"}
    argv: list[str] = []
    for raw in shlex.split(line):
        word = raw
        for spec, value in specifiers.items():
            word = word.replace(spec, value)
        if whole := re.fullmatch(r"\$([A-Z_]+)", word):
            argv += env.get(whole.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], word))
    return argv


def test_relay_exec_start_is_a_real_relay_command_line() -> None:
    argv = exec_start(RELAY, DEFAULTS / "wicket-relay.default")
    assert argv[0] == "/usr/bin/wicket"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "relay" and args.relay_command is None
    assert (str(args.state_dir), args.listen) == ("/var/lib/wicket-relay", "0.0.0.0:7443")
    settings = sandbox.unit_settings(RELAY)
    assert settings["StateDirectory"] == ["wicket-relay"]
    assert settings["CapabilityBoundingSet"] == [""]


def test_agent_exec_start_reads_the_token_from_its_credential() -> None:
    argv = exec_start(AGENT, DEFAULTS / "wicket-agent.default")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "agent"
    assert args.token_file == "/run/credentials/wicket-agent.service/join-token"
    assert (args.target, str(args.state_dir)) == ("127.0.0.1:6443", "/var/lib/wicket-agent")
    settings = sandbox.unit_settings(AGENT)
    assert settings["LoadCredential"] == ["join-token:/etc/wicket/agent-join-token"]
    assert not any("token" in value.lower() for value in settings.get("Environment", []))


@pytest.mark.timeout(1200)  # may build the bundle
def test_the_fake_sandbox_enforces_what_it_claims(bundle: Path, tmp_path: Path) -> None:
    """So that the next test can fail: under the relay's sandbox, writable+executable
    memory, a netlink socket and setuid are refused, and no capability is left."""
    probe = (
        "import mmap, os, socket\n"
        "for attempt in (lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC),\n"
        "                lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),\n"
        "                lambda: os.setuid(0)):\n"
        "    try: attempt(); print('allowed')\n"
        "    except OSError as exc: print('refused', exc.errno)\n"
        "status = open('/proc/self/status').read()\n"
        "print(status.split('CapEff:')[1].split()[0], status.split('NoNewPrivs:')[1].split()[0])\n"
    )
    argv = [sys.executable, "-m", "tests.packaging.sandbox", str(RELAY), "--"]
    got = subprocess.run(
        [*argv, str(bundle), "-c", probe], capture_output=True, text=True, timeout=60,
        cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    refused = ["refused 1", "refused 97", "refused 1"]  # EPERM, EAFNOSUPPORT, EPERM
    assert got.stdout.split("\n")[:4] == [*refused, "0000000000000000 1"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # may build the bundle
async def test_relay_and_agent_from_the_bundle_run_under_their_units_sandbox(
    bundle: Path, tmp_path: Path
) -> None:
    tunnel = Tunnel(tmp_path, program=bundle)
    for role, unit in (("relay", RELAY), ("agent", AGENT)):
        tunnel.wrap[role] = [sys.executable, "-m", "tests.packaging.sandbox", str(unit), "--"]
    try:
        await tunnel.start_all()
        await echo(tunnel.endpoint_port, payload(64 * 1024, 1))
        digest, target_digest, size = await transfer(tunnel.endpoint_port, payload(8 << 20, 2))
        assert size == 8 << 20 and digest == target_digest
        assert tunnel.relay is not None and tunnel.agent is not None
        for proc in (tunnel.agent, tunnel.relay):  # a clean stop under the filter too
            assert proc.stop(timeout=10) == 0, tunnel.logs()
        assert "Traceback" not in tunnel.logs()
    finally:
        tunnel.close()
