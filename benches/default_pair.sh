#!/usr/bin/env bash
# End-to-end `score` on the sample with the default pair (onnx/rcf_chroma, at its own batch
# size and at 64) against the SimSiam pair (the default until 2026-12-06) and rcf_fast (the
# same encoder without its chroma stage), alternating runs in one session so the ratios
# compare like with like. Prints seconds and peak RSS (KiB) per run.
#   cargo build --release --bin nexttile && benches/default_pair.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/nexttile
scene=samples/chincoteague_s2.tif
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chroma="--encoder onnx/rcf_chroma/encoder.onnx --head onnx/rcf_chroma/head.onnx"
configs=(
  "simsiam|--encoder onnx/eurosat_simsiam/encoder.onnx --head onnx/eurosat_simsiam/head.onnx"
  "rcf_chroma|$chroma"
  "rcf_chroma_b64|$chroma --batch-size 64"
  "rcf_fast|--encoder onnx/rcf_fast/encoder.onnx --head onnx/rcf_fast/head.onnx"
)
for _ in $(seq "${1:-5}"); do
  for cfg in "${configs[@]}"; do
    name=${cfg%%|*}
    # shellcheck disable=SC2086
    set -- ${cfg#*|}
    start=$(date +%s.%N)
    /usr/bin/time -f %M -o "$out/rss" "$bin" score "$scene" --no-cache --out "$out/$name" "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    printf '%-14s %6.3f s  peak RSS %s KiB\n' "$name" "$(echo "$end - $start" | bc)" "$(cat "$out/rss")"
  done
done
