"""The Wicket public-endpoint path for the anchors harness (``shared/bench``).

``python tests/bench/wicket_path.py --entry P --target T --relay-port R --dir D``

Stays in the foreground and starts, as separate processes, what a real deployment runs,
with ``wicket``'s defaults (log level, event loop, the compiled hot path when built):
a relay (TLS on 127.0.0.1:R, public endpoint for cluster ``bench`` on 127.0.0.1:P) and
an agent (enrolled with a one-time join token read from a 0600 file, never argv)
forwarding to 127.0.0.1:T. A client connecting to P goes client → relay → (TLS + mux)
→ agent → target. SIGTERM/SIGINT (the harness stops paths by process group) stops both
children and exits; if either child dies, the other is stopped and this exits non-zero.

Standard library only (it runs under the harness's interpreter); the children run
``wicket`` from the same virtualenv, or ``python -m core.cli`` if there is none.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CLUSTER = "bench"
HOST = "127.0.0.1"


def wicket_argv() -> list[str]:
    exe = Path(sys.executable).parent / "wicket"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "core.cli"]


class Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def listening(port: int) -> bool:
    """Something LISTENs on 127.0.0.1:port (/proc/net/tcp: no connection, no log noise)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(
            fields[1] == want and fields[3] == "0A"
            for fields in (line.split() for line in f.readlines()[1:])
        )


def wait_port(port: int, child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"wicket_path: {child.args!r} exited (rc={child.returncode})")
        if listening(port):
            return
        time.sleep(0.05)
    raise SystemExit(f"wicket_path: nothing listens on {HOST}:{port} after {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entry", type=int, required=True, help="public endpoint port")
    ap.add_argument("--target", type=int, required=True, help="target port (agent side)")
    ap.add_argument("--relay-port", type=int, required=True, help="relay TLS port")
    ap.add_argument("--dir", type=Path, required=True, help="scratch dir (state, token, logs)")
    ap.add_argument("--log-level", help="wicket --log-level (default: wicket's own default)")
    ap.add_argument("--loop", help="wicket --loop for relay and agent (default: wicket's)")
    a = ap.parse_args()

    base = a.dir.resolve() / "wicket"
    shutil.rmtree(base, ignore_errors=True)  # fresh state: a new CA, a new enrollment
    relay_dir, agent_dir, runtime = base / "relay", base / "agent", base / "run"
    for d in (relay_dir, agent_dir, runtime):
        d.mkdir(parents=True, mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))  # status sockets stay in here
    # The defaults are what is measured: no option unless asked for one.
    wicket = wicket_argv()
    wicket += ["--log-level", a.log_level] if a.log_level else []
    wicket += ["--loop", a.loop] if a.loop else []

    relay_addr = f"{HOST}:{a.relay_port}"
    # (``relay`` itself wants --state-dir too, before its token sub-command)
    join = [*wicket, "relay", "--state-dir", str(relay_dir), "join-token"]
    join += ["--state-dir", str(relay_dir), "--cluster", CLUSTER]
    join += ["--public-port", str(a.entry), "--address", relay_addr]
    relay = [*wicket, "relay", "--listen", relay_addr, "--state-dir", str(relay_dir)]
    relay += ["--public-host", HOST]
    # The harness holds 1,000 idle connections from one address: above the default quota
    # of public connections per source (64) and in all (1,024). Capacity, not speed.
    relay += ["--max-public-per-source", "2000", "--max-public", "2000"]
    token_file = base / "join.token"
    agent = [*wicket, "agent", "--token-file", str(token_file), "--target", f"{HOST}:{a.target}"]
    agent += ["--state-dir", str(agent_dir)]

    issued = subprocess.run(join, check=False, env=env, capture_output=True, text=True, timeout=60)
    if issued.returncode != 0:
        raise SystemExit(f"wicket_path: join-token failed: {issued.stderr.strip()}")
    token = issued.stdout.strip()
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    del token

    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rc = 0
    try:
        children.append(subprocess.Popen(relay, env=env, stdin=subprocess.DEVNULL))
        wait_port(a.relay_port, children[0])
        children.append(subprocess.Popen(agent, env=env, stdin=subprocess.DEVNULL))
        print(f"wicket path: {HOST}:{a.entry} -> relay :{a.relay_port} -> agent -> :{a.target}")
        sys.stdout.flush()
        pid, status = os.wait()  # blocks (no polling: our CPU counts as the tunnel's)
        print(f"wicket_path: child {pid} exited (status {status})")
        rc = 1
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return rc


if __name__ == "__main__":
    sys.exit(main())
