#!/usr/bin/env bash
# Every shipped encoder exported for Deepness with `onnx/set_metadata.py --deepness`
# and read back the way Deepness and GeoDeep read it (scripts/check_deepness.py):
# JSON-decoded metadata, a fixed input shape, and embeddings equal to NextTile's on
# the original for the same raw tiles. Per-band encoders are refused by the export
# (Deepness cannot feed one band at a time), and that refusal is checked too.
#
# Python with numpy, onnx and onnxruntime: NEXTTILE_DEEPNESS_PYTHON if set, else a
# venv this script makes once under target/deepness-venv (pinned versions).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh

py=${NEXTTILE_DEEPNESS_PYTHON:-}
if [ -z "$py" ]; then
  venv=$root/target/deepness-venv
  py=$venv/bin/python
  if ! "$py" -c "import numpy, onnx, onnxruntime" 2>/dev/null; then
    echo "[deepness] installing numpy, onnx, onnxruntime in $venv" >&2
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      ensure_debian_packages deepness python3-venv
      rm -rf "$venv"
      python3 -m venv "$venv"
    fi
    find_links=()
    [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${find_links[@]}" \
      "numpy==2.4.6" "onnx==1.23.2" "onnxruntime==1.32.0"
  fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nexttile-deepness.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
n=0
for enc in onnx/*/encoder.onnx; do
  name=$(basename "$(dirname "$enc")")
  out=$tmp/$name.onnx
  # Read the whole listing first: `grep -q` stops reading at its match, and the
  # writer's broken pipe would fail the pipeline under pipefail.
  meta=$("$py" onnx/set_metadata.py "$enc")
  if grep -qx 'per_band = true' <<<"$meta"; then
    if "$py" onnx/set_metadata.py "$enc" --deepness "$out" 2>"$tmp/err"; then
      echo "[deepness] $enc is per-band but was exported" >&2; exit 1
    fi
    grep -q "one band at a time" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    echo "[deepness] $enc: per-band, refused as expected"
    continue
  fi
  sha_before=$(sha256sum "$enc" | cut -c1-64)
  "$py" onnx/set_metadata.py "$enc" --deepness "$out"
  [ "$(sha256sum "$enc" | cut -c1-64)" = "$sha_before" ] || { echo "[deepness] $enc was changed" >&2; exit 1; }
  "$py" scripts/check_deepness.py "$enc" "$out"
  n=$((n + 1))
done
# The tool's key=value writes: the values Deepness reads with json.loads come out as JSON.
cp tests/fixtures/sum_head_2.onnx "$tmp/head.onnx"
"$py" onnx/set_metadata.py "$tmp/head.onnx" model_type=Classifier 'class_names=["land","water"]' tiles_size=64
"$py" onnx/set_metadata.py "$tmp/head.onnx" >"$tmp/meta"
for want in 'model_type = "Classifier"' 'class_names = {"0": "land", "1": "water"}' 'tiles_size = 64' 'tile_size = 64'; do
  grep -qxF "$want" "$tmp/meta" || { echo "[deepness] set_metadata.py wrote no '$want':" >&2; cat "$tmp/meta" >&2; exit 1; }
done
if "$py" onnx/set_metadata.py "$tmp/head.onnx" resolution=ten 2>"$tmp/err"; then
  echo "[deepness] set_metadata.py took resolution=ten" >&2; exit 1
fi
grep -q "plain number" "$tmp/err"

[ "$n" -ge 5 ] || { echo "[deepness] only $n encoders exported" >&2; exit 1; }
echo "[deepness] $n shipped encoders export to files Deepness and GeoDeep read, with NextTile's input"
