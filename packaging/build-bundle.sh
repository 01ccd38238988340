#!/usr/bin/env bash
# The standalone one-folder bundle: dist/bundle/wicket/ (run dist/bundle/wicket/wicket).
#
#   packaging/build-bundle.sh [--force]
#
# Needs patchelf and binutils (scripts/install-system-test-deps.sh).
# PyInstaller (packaging/pyinstaller/wicket.spec) over this tree's core/, gui/ and
# resources/ with the venv's dependencies. The build is skipped while
# dist/bundle/wicket.stamp matches its inputs (the sources, the spec, the Python and
# package versions), so `make dist` and the packaging tests build it once.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=dist/bundle
STAMP=$OUT/wicket.stamp

inputs() {
  find core gui resources packaging/pyinstaller pyproject.toml -type f \
    -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  git rev-parse HEAD 2>/dev/null || true  # `wicket --version` reports the commit
  "$PYTHON" -c 'import importlib.metadata as m, sys
print(sys.version)
for d in sorted(m.distributions(), key=lambda d: d.name.lower()): print(d.name, d.version)'
}

want=$(inputs | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != --force ] && [ -x "$OUT/wicket/wicket" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  echo "build-bundle: $OUT/wicket is up to date"
  exit 0
fi
rm -f "$STAMP"
start=$SECONDS
PYTHONPATH="$PWD" "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$OUT" --workpath build/pyinstaller packaging/pyinstaller/wicket.spec
# What a Debian package's libraries must be (dh_strip, dh_fixperms), done here so the
# bundle and the .deb are one: no symbols a program does not link against, not
# executable, and no RUNPATH into the build machine's Python (/root/.pyenv/...): only
# $ORIGIN-relative ones stay. Never the program itself: its archive is appended to it.
find "$OUT/wicket/_internal" -type f -name '*.so*' -print0 | while IFS= read -r -d '' lib; do
  rpath=$(patchelf --print-rpath "$lib")
  keep=$(tr ':' '\n' <<<"$rpath" | grep '^\$ORIGIN' | paste -sd: || true)
  if [ "$keep" != "$rpath" ]; then
    if [ -n "$keep" ]; then patchelf --set-rpath "$keep" "$lib"; else patchelf --remove-rpath "$lib"; fi
  fi
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib"
  chmod 0644 "$lib"
done
"$OUT/wicket/wicket" --version >/dev/null  # it starts, or the build failed
echo "$want" >"$STAMP"
echo "build-bundle: $OUT/wicket ($(du -sh "$OUT/wicket" | cut -f1)) in $((SECONDS - start)) s"
