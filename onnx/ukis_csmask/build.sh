#!/usr/bin/env bash
# Build onnx/ukis_csmask/encoder.onnx (git-ignored, ~34 MB): the EfficientNet-B4
# encoder of the ukis-csmask 1.0.0 Sentinel-2 L1C cloud model (Apache-2.0, DLR),
# cut before the U-Net decoder by derive_encoder.py --embedding multiscale: the
# stem, the three other skip maps and the bottleneck, each global-average-pooled,
# concatenated to a 744-d embedding (see README.md here; the bottleneck-only
# 448-d variant, --embedding bottleneck, measured worse than random weights).
#
# Idempotent: does nothing when encoder.onnx exists with the expected SHA-256.
# Otherwise fetches the ukis-csmask wheel from PyPI (or uses $UKIS_CSMASK_WHEEL,
# a path to ukis_csmask-1.0.0-py3-none-any.whl), checks its SHA-256, and derives
# the encoder with python3 + onnx 1.17.0 + numpy. If python3 lacks those, they
# are pip-installed into .cache/ukis_csmask/pydeps (with --target, so it also
# works on Debian's externally managed python3). The output is byte-deterministic
# and checked against the expected SHA-256 (the head in head.onnx records it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/encoder.onnx"
EXPECTED_SHA256=04c9809b515b42ce5553381a9dc0379f5fe638c2b7a612c41a056d4314bc2f35
WHEEL_SHA256=898d6efe59b3908ec92aabad3f61a56394ff81d997a2ebe5675732503a18d1f1
WHEEL=ukis_csmask-1.0.0-py3-none-any.whl
log() { printf '\033[1m[ukis_csmask]\033[0m %s\n' "$*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$out" ] && [ "$(sha "$out")" = "$EXPECTED_SHA256" ]; then
  log "encoder.onnx up to date"
  echo "$EXPECTED_SHA256  $out"
  exit 0
fi

# python deps: onnx 1.17.0 (fixed: the output bytes are pinned) and numpy
py_ok() { python3 -c 'import numpy, onnx, sys; sys.exit(onnx.__version__ != "1.17.0")' 2>/dev/null; }
if ! py_ok; then
  deps="$root/.cache/ukis_csmask/pydeps"
  export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"
  if ! py_ok; then
    log "installing onnx==1.17.0 numpy into $deps"
    python3 -m pip install --quiet --disable-pip-version-check --target "$deps" onnx==1.17.0 numpy
    py_ok || { log "onnx 1.17.0 / numpy still not importable"; exit 1; }
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${UKIS_CSMASK_WHEEL:-}" ]; then
  wheel="$UKIS_CSMASK_WHEEL"
else
  log "downloading ukis-csmask 1.0.0 from PyPI (145 MB)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: ukis-csmask==1.0.0 -d "$tmp"
  wheel="$tmp/$WHEEL"
fi
[ -f "$wheel" ] || { log "wheel not found: $wheel"; exit 1; }
got=$(sha "$wheel")
[ "$got" = "$WHEEL_SHA256" ] || { log "wheel sha256 $got != expected $WHEEL_SHA256"; exit 1; }

python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for n in ("ukis_csmask/model_6b_l1c.onnx", "ukis_csmask/model_6b_l1c.json"):
        z.extract(n, dest)
PY

python3 "$here/derive_encoder.py" --src "$tmp/ukis_csmask/model_6b_l1c.onnx" --out "$tmp/encoder.onnx" \
  --embedding multiscale --compute fp16 >/dev/null
got=$(sha "$tmp/encoder.onnx")
if [ "$got" != "$EXPECTED_SHA256" ]; then
  log "derived encoder sha256 $got != expected $EXPECTED_SHA256 (onnx/protobuf version drift?); not installed"
  exit 1
fi
mv "$tmp/encoder.onnx" "$out"
log "wrote $out"
echo "$EXPECTED_SHA256  $out"
