#!/usr/bin/env bash
# Set up and run every check and test: formatting, clippy (warnings are
# errors), unit + integration + doc tests against the real sample scene,
# the real models and the real onnxruntime.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --quiet 2>&1 | tee "${TMPDIR:-/tmp}/nexttile-test.log"
# schemathesis against the real daemon's /openapi.json (a venv it makes; bounded to 300 s).
scripts/test_fuzz.sh
# Every shipped encoder exported for Deepness and read back as Deepness and GeoDeep read it.
scripts/test_deepness.sh
scripts/test_deploy.sh
# deploy/slurm/ on a real one-node Slurm cluster it starts and stops (installs slurm-wlm and munge when missing).
scripts/test_slurm.sh
# The QGIS plugin in real QGIS against the real daemon (installs python3-qgis when missing).
scripts/test_plugin.sh
