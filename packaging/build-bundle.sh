#!/usr/bin/env bash
# The standalone one-folder bundle: dist/bundle/wicket/ (run dist/bundle/wicket/wicket).
#
#   packaging/build-bundle.sh [--force]
#
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
"$OUT/wicket/wicket" --version >/dev/null  # it starts, or the build failed
echo "$want" >"$STAMP"
echo "build-bundle: $OUT/wicket ($(du -sh "$OUT/wicket" | cut -f1)) in $((SECONDS - start)) s"
