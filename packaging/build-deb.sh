#!/usr/bin/env bash
# dist/wicket_<version>-1_<arch>.deb from the bundle (built first when missing or stale).
#
#   packaging/build-deb.sh [--force]
#
#   /opt/wicket/                       the bundle (packaging/build-bundle.sh)
#   /usr/bin/wicket                    -> /opt/wicket/wicket
#   /usr/share/applications, icons/hicolor, metainfo
#                                      staged by the bundle's own
#                                      `wicket desktop install --system-root`
#   /usr/lib/systemd/system/           wicket-relay.service, wicket-agent.service (not enabled)
#   /usr/lib/sysusers.d/wicket.conf    the relay's system user
#   /etc/default/wicket-{relay,agent}  the units' options (conffiles)
#   /usr/share/doc/wicket/             copyright, changelog.Debian.gz
#
# gzip -6: 7 s and 52 MB here; gzip -9 takes 25 s for the same size, xz -6 100 s for
# 48 MB, and zstd (5 s) is a lintian error (not yet accepted in Debian's archive).
# Skipped while dist/wicket.deb.stamp matches its inputs. Checked with lintian
# (packaging/README.md lists the tags accepted, with the reasons).
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/build-bundle.sh
BUNDLE=dist/bundle/wicket
DEBIAN=packaging/debian

version=$("$BUNDLE/wicket" --version | awk '{print $2}')-1
arch=$(dpkg --print-architecture)
deb=dist/wicket_${version}_${arch}.deb
stamp=dist/wicket.deb.stamp
want=$({ cat dist/bundle/wicket.stamp; find "$DEBIAN" packaging/systemd packaging/build-deb.sh \
  -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != --force ] && [ -f "$deb" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "build-deb: $deb is up to date"
  exit 0
fi
latest=$(sed -n '1s/^wicket (\([^)]*\)).*/\1/p' "$DEBIAN/changelog")
if [ "$latest" != "$version" ]; then
  echo "build-deb: $DEBIAN/changelog starts at $latest; add an entry for $version" >&2
  exit 1
fi
start=$SECONDS
rm -f "$stamp" dist/wicket_*.deb
root=build/deb/wicket
rm -rf build/deb
mkdir -p "$root/opt" "$root/usr/bin" "$root/DEBIAN"

cp -a "$BUNDLE" "$root/opt/wicket"
ln -s /opt/wicket/wicket "$root/usr/bin/wicket"
"$BUNDLE/wicket" desktop install --system-root "$root" >/dev/null
for unit in packaging/systemd/*.service; do
  install -D -m 0644 "$unit" "$root/usr/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0644 "$DEBIAN/wicket.sysusers" "$root/usr/lib/sysusers.d/wicket.conf"
install -D -m 0644 "$DEBIAN/wicket-relay.default" "$root/etc/default/wicket-relay"
install -D -m 0644 "$DEBIAN/wicket-agent.default" "$root/etc/default/wicket-agent"
install -D -m 0644 "$DEBIAN/copyright" "$root/usr/share/doc/wicket/copyright"
gzip -9n <"$DEBIAN/changelog" >"$root/usr/share/doc/wicket/changelog.Debian.gz"
install -D -m 0644 "$DEBIAN/lintian-overrides" "$root/usr/share/lintian/overrides/wicket"
chmod 0644 "$root/usr/share/doc/wicket/changelog.Debian.gz"

for script in postinst prerm postrm; do install -m 0755 "$DEBIAN/$script" "$root/DEBIAN/$script"; done
install -m 0644 "$DEBIAN/conffiles" "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  "$DEBIAN/control" >"$root/DEBIAN/control"

dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$deb" >/dev/null
echo "$want" >"$stamp"
echo "build-deb: $deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB) in $((SECONDS - start)) s"
