#!/usr/bin/env bash
# Set up, build, and score the bundled real Sentinel-2 sample:
# writes out/demo/heatmap.tif (+ .qml), suggestions.geojson, tiles.*, summary.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
cargo build --release --quiet
target/release/nexttile score samples/chincoteague_s2.tif --out out/demo "$@"
