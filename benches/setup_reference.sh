#!/usr/bin/env bash
# Idempotent set-up of the Python reference pipeline (benches/reference_pipeline.py):
#   - Debian's python3 with GDAL's bindings (python3-gdal) and numpy, plus python3-venv;
#   - a venv at .cache/benchenv that sees those system packages
#     (--system-site-packages), with onnxruntime==1.31.1 (the version NextTile is
#     checked against) installed into it from PyPI.
# Re-running only checks. Prints the venv's python path on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ORT_VERSION=1.31.1
venv="${NEXTTILE_BENCH_VENV:-$root/.cache/benchenv}"
log() { printf '[setup_reference] %s\n' "$*" >&2; }

. "$root/scripts/lib.sh"
ensure_debian_packages setup_reference python3 python3-venv python3-gdal python3-numpy

if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv (with system site-packages for osgeo + numpy)"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi

have=$("$venv/bin/python" -c 'import onnxruntime as o; print(o.__version__)' 2>/dev/null || true)
if [ "$have" != "$ORT_VERSION" ]; then
  log "installing onnxruntime==$ORT_VERSION into $venv (had: ${have:-none})"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION"
fi

"$venv/bin/python" - <<'PY' >&2
from osgeo import gdal
import numpy, onnxruntime
print(f"[setup_reference] ok: GDAL {gdal.__version__}, numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}")
PY
echo "$venv/bin/python"
