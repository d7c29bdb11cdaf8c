#!/usr/bin/env bash
# Builds the installable QGIS plugin ZIP (plugin/nexttile.zip; Plugins > Manage and
# Install Plugins > Install from ZIP). Tests, caches and compiled files are left out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/plugin"
out="$root/plugin/nexttile.zip"
rm -f "$out"
python3 - "$out" <<'PY'
import os, sys, zipfile
out = sys.argv[1]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for base, dirs, files in os.walk("nexttile"):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "tests", ".pytest_cache")]
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            z.write(os.path.join(base, f))
print(out)
PY
