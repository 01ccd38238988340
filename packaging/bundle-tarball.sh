#!/usr/bin/env bash
# dist/wicket-<version>-linux-<machine>.tar.gz: the bundle (dist/bundle/wicket) to unpack
# anywhere and run as wicket/wicket.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(dist/bundle/wicket/wicket --version | awk '{print $2}')
out=dist/wicket-$version-linux-$(uname -m).tar.gz
tar -C dist/bundle --owner=0 --group=0 --numeric-owner -czf "$out" wicket
echo "bundle-tarball: $out ($(du -h "$out" | cut -f1))"
