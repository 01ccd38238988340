"""core.aio.status and ``wicket status``: real Unix sockets in private tmp dirs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pytest

from core.aio.status import StatusServer, ensure_runtime_dir, read_all_status, to_jsonable
from core.cli.status import human_duration, render_process
from core.errors import ConfigError
from core.format import host_port, human_bytes
from core.pki.tokens import Token, TokenKind, encode
from tests.support.cli import run_wicket

REPO = Path(__file__).resolve().parents[2]


class State(enum.Enum):
    UP = "up"


class Session(NamedTuple):
    cluster: str
    rtt_ms: float


@dataclasses.dataclass
class Stream:
    id: int
    bytes_up: int
    state: State
    key: bytes = dataclasses.field(default=b"\x00" * 32, repr=False)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _dead_pid() -> int:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        pass
    return proc.pid


async def test_two_servers_are_read_concurrently(run_dir: Path) -> None:
    relay = StatusServer("relay", lambda: {"sessions": [Session("prod", 12.5)]}, run_dir)
    endpoint = StatusServer("endpoint", lambda: {"streams": [Stream(1, 10, State.UP)]}, run_dir)
    async with relay, endpoint:
        assert relay.path == run_dir / f"relay-{os.getpid()}.sock"
        assert _mode(run_dir) == 0o700
        assert relay.path is not None and endpoint.path is not None
        assert _mode(relay.path) == 0o600 and stat.S_ISSOCK(relay.path.lstat().st_mode)
        docs = await read_all_status(run_dir, timeout=2.0)
    assert [(d["role"], d["pid"]) for d in docs] == [
        ("endpoint", os.getpid()),
        ("relay", os.getpid()),
    ]
    assert docs[0]["snapshot"] == {"streams": [{"id": 1, "bytes_up": 10, "state": "up"}]}
    assert docs[1]["snapshot"] == {"sessions": [{"cluster": "prod", "rtt_ms": 12.5}]}
    assert dt.datetime.fromisoformat(docs[1]["started_at"]).tzinfo == dt.UTC
    assert list(run_dir.iterdir()) == []
    assert await read_all_status(run_dir) == []


async def test_snapshot_is_live_and_scrubbed(run_dir: Path) -> None:
    text = encode(Token.new(TokenKind.CLIENT, "relay.example.com:443", "cd" * 32, "laptop"))
    state: dict[str, Any] = {"n": 0, "note": f"enrolled with {text}", "secret": "s3cr3t"}
    async with StatusServer("agent", lambda: state, run_dir):
        first = (await read_all_status(run_dir))[0]["snapshot"]
        state["n"] = 1
        second = (await read_all_status(run_dir))[0]["snapshot"]
    assert (first["n"], second["n"]) == (0, 1)
    raw = json.dumps(second)
    assert text not in raw and "s3cr3t" not in raw
    assert second["note"] == "enrolled with wicket-client-v1.<redacted>"


async def test_a_failing_snapshot_still_answers(run_dir: Path) -> None:
    def broken() -> Mapping[str, Any]:
        return {"bad": b"bytes are refused"}

    async with StatusServer("relay", broken, run_dir):
        (doc,) = await read_all_status(run_dir)
    assert doc["snapshot"] == {}
    assert doc["error"] == "snapshot failed: TypeError"


async def test_stale_socket_of_a_dead_process_is_removed(run_dir: Path) -> None:
    ensure_runtime_dir(run_dir)
    stale, alive = run_dir / f"agent-{_dead_pid()}.sock", run_dir / f"ghost-{os.getpid()}.sock"
    for path in (stale, alive):  # bound, never listening: connection refused
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(os.fspath(path))
    (run_dir / "notes.txt").write_text("not a socket name")
    async with StatusServer("relay", dict, run_dir):
        docs = await read_all_status(run_dir)
    assert [d["role"] for d in docs] == ["relay"]
    assert not stale.exists()
    assert alive.exists()  # its process lives: maybe between bind and listen
    assert (run_dir / "notes.txt").exists()


async def test_silent_or_garbled_sockets_never_hang_the_reader(run_dir: Path) -> None:
    ensure_runtime_dir(run_dir)
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(os.fspath(run_dir / "silent-1.sock"))
    silent.listen()  # accepts (backlog) but never answers
    garbled = await asyncio.get_running_loop().create_unix_server(
        _Garbage, os.fspath(run_dir / "garbled-1.sock")
    )
    try:
        async with StatusServer("relay", dict, run_dir):
            started = time.monotonic()
            docs = await read_all_status(run_dir, timeout=0.3)
            elapsed = time.monotonic() - started
    finally:
        silent.close()
        garbled.close()
        await garbled.wait_closed()
    assert [d["role"] for d in docs] == ["relay"]
    assert elapsed < 2.0
    assert (run_dir / "silent-1.sock").exists()  # alive (pid 1), so not removed


class _Garbage(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"{not json")
        transport.close()


async def test_insecure_runtime_dirs_are_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o700)
    open_dir.chmod(0o755)
    with pytest.raises(ConfigError, match=r"mode 0755.*chmod 700"):
        await StatusServer("relay", dict, open_dir).start()
    with pytest.raises(ConfigError, match="accessible by other users"):
        await read_all_status(open_dir)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a directory"):
        await StatusServer("relay", dict, link).start()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    with pytest.raises(ConfigError, match="invalid status role"):
        StatusServer("../x", dict, tmp_path / "run")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
async def test_runtime_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 12345, 12345)
    with pytest.raises(ConfigError, match="owned by uid 12345"):
        ensure_runtime_dir(foreign)


def test_default_runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.aio.status import default_runtime_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", os.fspath(tmp_path))
    assert default_runtime_dir() == tmp_path / "wicket"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_runtime_dir() == Path(f"/tmp/wicket-{os.getuid()}")


def test_to_jsonable() -> None:
    when = dt.datetime(2026, 11, 26, 5, 40, tzinfo=dt.UTC)
    value = {
        "stream": Stream(7, 1, State.UP),
        "session": Session("prod", 1.5),
        "path": PurePosixPath("/a/b"),
        "when": when,
        "age": dt.timedelta(seconds=90),
        "set": {3, 1, 2},
        "nan": float("nan"),
        5: (None, True),
    }
    assert to_jsonable(value) == {
        "stream": {"id": 7, "bytes_up": 1, "state": "up"},
        "session": {"cluster": "prod", "rtt_ms": 1.5},
        "path": "/a/b",
        "when": "2026-11-26T05:40:00+00:00",
        "age": 90.0,
        "set": [1, 2, 3],
        "nan": None,
        "5": [None, True],
    }
    for bad in (b"key", object(), Stream):
        with pytest.raises(TypeError):
            to_jsonable(bad)


def test_human_units_and_rendering() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 GiB",
    ]
    assert [human_duration(s) for s in (0.0042, 0.25, 8.25, 185, 7260, 90000)] == [
        "4.2ms",
        "250ms",
        "8.2s",
        "3m05s",
        "2h01m",
        "1d01h",
    ]
    doc = {
        "role": "endpoint",
        "pid": 42,
        "started_at": "2026-11-26T05:00:00.000Z",
        "snapshot": {
            "version": "0.1.0",
            "endpoints": [],
            "clusters": {"prod": {"state": "connected"}},
            "streams": [
                {"id": 1, "bytes_up": 2048, "bytes_down": None, "rate_down": 1.5e6, "age_s": 75},
                {"id": 2, "state": "open\x1b[31m"},
            ],
        },
    }
    now = dt.datetime(2026, 11, 26, 6, 2, 3, tzinfo=dt.UTC)
    assert render_process(doc, now) == [
        "endpoint  pid 42  up 1h02m",
        "  version: 0.1.0",
        "  endpoints: none",
        "  clusters (1)",
        "    NAME  STATE",
        "    prod  connected",
        "  streams (2)",
        "    ID  BYTES UP  BYTES DOWN  RATE DOWN  AGE    STATE",
        "    1   2.0 KiB   -           1.4 MiB/s  1m15s  -",
        "    2   -         -           -          -      open?[31m",
    ]


def test_nested_objects_render_as_sections_not_json() -> None:
    """The demo's snapshot holds its endpoint's: a section with its own lines and tables."""
    doc = {
        "role": "demo",
        "pid": 7,
        "started_at": "2026-11-26T06:00:00.000Z",
        "snapshot": {
            "apiserver": "https://127.0.0.1:6443",
            "endpoint": {
                "url": "https://127.0.0.1:7000",
                "session": {"state": "online", "rtt": 0.0021},
                "streams": [{"id": 1, "bytes_up": 4096, "opened_at": 1795680000.25}],
            },
        },
    }
    now = dt.datetime(2026, 11, 26, 6, 0, 5, tzinfo=dt.UTC)
    opened = dt.datetime.fromtimestamp(1795680000.25).strftime("%H:%M:%S")  # local time
    assert render_process(doc, now) == [
        "demo  pid 7  up 5.0s",
        "  apiserver: https://127.0.0.1:6443",
        "  endpoint:",
        "    url: https://127.0.0.1:7000",
        "    session:",
        "      state: online",
        "      rtt: 2.1ms",
        "    streams (1)",
        "      ID  BYTES UP  OPENED AT",
        f"      1   4.0 KiB   {opened}",
    ]


_SERVER = """
import asyncio, signal, sys
from core.aio.status import StatusServer

async def main():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    snapshot = {"sessions": [{"cluster": sys.argv[2], "rtt_ms": 3.5}]}
    async with StatusServer(sys.argv[1], lambda: snapshot) as server:
        print(server.path, flush=True)
        await stop.wait()

asyncio.run(main())
"""


@pytest.fixture
def xdg(tmp_path: Path) -> Iterator[dict[str, str]]:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    yield {**os.environ, "XDG_RUNTIME_DIR": os.fspath(runtime)}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_wicket("status", *args, env=env, cwd=REPO, timeout=30, check=True)


def _spawn(env: dict[str, str], role: str, cluster: str) -> subprocess.Popen[str]:
    """A background Wicket-like process serving its status until SIGTERM."""
    args = [sys.executable, "-c", _SERVER, role, cluster]
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)


async def test_cli_reads_processes_and_cleans_up_after_a_killed_one(
    xdg: dict[str, str],
) -> None:
    assert _cli(xdg).stdout == "no running Wicket processes\n"
    with _spawn(xdg, "agent", "prod") as agent, _spawn(xdg, "relay", "edge") as relay:
        try:
            assert agent.stdout is not None and relay.stdout is not None
            agent_sock, relay_sock = (
                Path(agent.stdout.readline().strip()),
                Path(relay.stdout.readline().strip()),
            )
            assert agent_sock.parent == Path(xdg["XDG_RUNTIME_DIR"]) / "wicket"

            docs = json.loads(_cli(xdg, "--json").stdout)
            assert [(d["role"], d["pid"]) for d in docs] == [
                ("agent", agent.pid),
                ("relay", relay.pid),
            ]
            assert docs[0]["snapshot"] == {"sessions": [{"cluster": "prod", "rtt_ms": 3.5}]}
            human = _cli(xdg).stdout
            assert f"relay  pid {relay.pid}  up " in human
            assert "    edge     3.5ms" in human

            relay.send_signal(signal.SIGTERM)
            assert relay.wait(timeout=10) == 0
            assert not relay_sock.exists()  # removed by its own stop()
            agent.kill()
            agent.wait(timeout=10)
            assert agent_sock.exists()  # SIGKILL: nobody cleaned up
            assert json.loads(_cli(xdg, "--json").stdout) == []
            assert not agent_sock.exists()  # removed by the reader
        finally:
            for proc in (agent, relay):
                proc.kill()


def test_host_port_brackets_ipv6_literals() -> None:
    assert host_port("127.0.0.1", 6443) == "127.0.0.1:6443"
    assert host_port("::1", 6443) == "[::1]:6443"
    assert host_port("[::1]", "0") == "[::1]:0"
    assert host_port("fe80::1%eth0", 443) == "[fe80::1%eth0]:443"
    assert host_port("relay.example", 443) == "relay.example:443"
