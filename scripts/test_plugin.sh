#!/usr/bin/env bash
# The QGIS plugin's tests in real QGIS (Debian python3-qgis, headless) against the
# real daemon binary. Installs QGIS from Debian when missing; needs target/debug/nexttile
# (cargo build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
ensure_debian_packages plugin-tests python3-qgis qgis-providers python3-gdal xvfb
[ -x target/debug/nexttile ] || cargo build --quiet --bin nexttile
QT_QPA_PLATFORM=offscreen /usr/bin/python3 plugin/tests/run.py
