#!/usr/bin/env bash
# Set up everything the benchmarks need (sample, onnxruntime, the Python
# reference's venv) and run them. Extra arguments go to the bench binary,
# e.g. `benches/run.sh --only e2e,mc --repeat 7`. Results: target/bench-pipeline.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
benches/setup_reference.sh >/dev/null
cargo bench --bench pipeline -- "$@"
