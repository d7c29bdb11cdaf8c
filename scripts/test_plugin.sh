#!/usr/bin/env bash
# The QGIS plugin's tests in real QGIS (Debian python3-qgis) under Xvfb (a real X
# display: the review panel's GUI tests send key presses to shown widgets) against the
# real daemon binary. Installs QGIS and Xvfb from Debian when missing; needs
# target/debug/nexttile (cargo build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
ensure_debian_packages plugin-tests python3-qgis qgis-providers python3-gdal xvfb xauth
[ -x target/debug/nexttile ] || cargo build --quiet --bin nexttile
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3 plugin/tests/run.py
