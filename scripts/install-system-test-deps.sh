#!/usr/bin/env bash
# Debian packages the test suite needs (real peers and backends, not fakes).
# Installs only what is missing; needs root (as on CI and the developers' machines).
set -euo pipefail
pkgs=(
  # keep one package a line; say which test needs it
  gnome-keyring    # tests/secrets: a real SecretService (gnome-keyring-daemon --unlock)
  dbus-daemon      # tests/secrets: the private session bus for it
  dbus-bin         # tests/secrets: dbus-run-session
  bsdutils         # tests/secrets: script(1) gives `wicket credential` a terminal
  desktop-file-utils     # tests/packaging: desktop-file-validate, update-desktop-database
  appstream              # tests/packaging: appstreamcli validate / validate-tree
  gtk-update-icon-cache  # tests/packaging: the user's icon cache refreshed by desktop install
  patchelf         # tests/packaging (make dist): build-bundle.sh drops build-machine RUNPATHs
  binutils         # tests/packaging (make dist): strip, in build-bundle.sh
  lintian          # tests/packaging/test_deb.py: the .deb has no lintian error
  systemd          # tests/packaging/test_systemd.py: systemd-analyze verify and security
  libseccomp2      # tests/packaging/test_systemd.py: the units' seccomp filters (sandbox.py)
  postgresql             # tests/registry: the registry on PostgreSQL (tests/support/postgres.py runs its own server)
  haproxy                # tests/fleet: the load balancer in front of three relays (one address)
  gcc              # tests/test_compiled.py: the compiled hot path is built (core/compiled)
  python3-dev      # tests/test_compiled.py: Python.h for it (both variants are then tested)
)
# tests/packaging (test_bundle.py loads every Qt plugin; test_deb.py installs the .deb):
# the .deb's Depends, the display stack the bundle takes from the machine
depends=$(sed -n 's/^Depends: //p' "$(dirname "$0")/../packaging/debian/control")
IFS=', ' read -r -a runtime <<<"$(sed 's/ ([^)]*)//g' <<<"$depends")"
pkgs+=("${runtime[@]}")
missing=()
for p in "${pkgs[@]+"${pkgs[@]}"}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-system-test-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
