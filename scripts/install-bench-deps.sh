#!/usr/bin/env bash
# Debian packages `make bench` needs for the anchors it compares Wicket against
# (tests/bench/tunnel_bench.py runs ../shared/bench: direct and ssh -L through a
# throwaway sshd). Installs only what is missing; needs root (as on CI).
# No system service is started: the throwaway sshd is run by the benchmark itself.
set -euo pipefail
pkgs=(
  # keep one package a line; say what needs it
  openssh-server   # the ssh anchor: /usr/sbin/sshd -D on a loopback port
  openssh-client   # the ssh anchor: ssh -N -L, and ssh-keygen for throwaway keys
  openssl          # the harness's throwaway TLS certificate
  iperf3           # the C reference printed beside the direct path
  strace           # tests/bench/conn_breakdown.py: syscalls per connection
  valgrind         # tests/bench/conn_breakdown.py: user-space instructions (callgrind)
  linux-perf       # tests/bench/conn_breakdown.py: CPU by shared object
)
# conn_breakdown.py samples Python frames with py-spy: a dev tool, in the venv, not a
# runtime dependency.
if [ -x .venv/bin/python ] && [ ! -x .venv/bin/py-spy ]; then
  .venv/bin/python -m pip install --quiet py-spy || echo "install-bench-deps: py-spy not installed" >&2
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
need_run_sshd=0
[ -d /run/sshd ] || need_run_sshd=1
if [ ${#missing[@]} -eq 0 ] && [ "$need_run_sshd" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  [ ${#missing[@]} -gt 0 ] &&
    echo "install-bench-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  [ "$need_run_sshd" = 1 ] &&
    echo "install-bench-deps: /run/sshd is missing (sshd's privilege-separation dir; run as root)" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' maintainer scripts from starting a system sshd (port 22, all
  # interfaces): a policy-rc.d that refuses every start, only while we install.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    added_policy=1
  fi
  cleanup() { [ "$added_policy" = 1 ] && rm -f "$policy"; return 0; }
  trap cleanup EXIT
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd
