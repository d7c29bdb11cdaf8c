#!/usr/bin/env python3
"""Render a PNG of a NextTile run: the scene's true colour, the uncertainty
heatmap blended over it, and the suggested tiles outlined with their rank.

    /usr/bin/python3 scripts/render_preview.py samples/chincoteague_s2.tif out/demo docs/demo.png

Needs Debian's python3-gdal, python3-numpy and python3-pil (Debian's Python,
not a venv). Reads heatmap.tif and suggestions.geojson from the run folder.
"""
import json
import sys

import numpy as np
from osgeo import gdal
from PIL import Image, ImageDraw

VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def ramp(t):
    t = np.clip(t, 0, 1) * (len(VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(VIRIDIS) - 2)
    f = (t - i)[..., None]
    return VIRIDIS[i] * (1 - f) + VIRIDIS[i + 1] * f


def main(scene_path, run_dir, out_png, metric="least_confidence", scale=1 / 2800.0, width=960):
    ds = gdal.Open(scene_path)
    names = {ds.GetRasterBand(i).GetDescription(): i for i in range(1, ds.RasterCount + 1)}
    rgb = np.stack([ds.GetRasterBand(names[b]).ReadAsArray().astype(np.float64) for b in ("B04", "B03", "B02")], -1)
    rgb = np.clip(rgb * scale, 0, 1) ** 0.8 * 255
    hm = gdal.Open(f"{run_dir}/heatmap.tif")
    bands = {hm.GetRasterBand(i).GetDescription(): i for i in range(1, hm.RasterCount + 1)}
    h = hm.GetRasterBand(bands[metric]).ReadAsArray().astype(np.float64)
    meta = hm.GetMetadata()
    stride = int(meta.get("NEXTTILE_STRIDE", "64"))
    tile = int(meta.get("NEXTTILE_TILE_SIZE", "64"))
    valid = h >= 0
    hmax = h[valid].max() if valid.any() else 1.0
    up = np.kron(h, np.ones((stride, stride)))
    upv = np.kron(valid, np.ones((stride, stride), dtype=bool))
    H, W = min(up.shape[0], rgb.shape[0]), min(up.shape[1], rgb.shape[1])
    col = ramp(up[:H, :W] / hmax)
    out = rgb.copy()
    m = upv[:H, :W]
    out[:H, :W][m] = 0.55 * rgb[:H, :W][m] + 0.45 * col[m]
    img = Image.fromarray(out.astype(np.uint8))
    k = width / img.width
    img = img.resize((width, int(img.height * k)), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    sugg = json.load(open(f"{run_dir}/suggestions.geojson"))
    for f in sugg["features"]:
        p = f["properties"]
        x0, y0 = p["col"] * stride * k, p["row"] * stride * k
        x1, y1 = x0 + tile * k, y0 + tile * k
        draw.rectangle([x0, y0, x1, y1], outline=(255, 40, 40), width=3)
        draw.text((x0 + 4, y0 + 3), str(p["rank"]), fill=(255, 255, 255))
    img.save(out_png)
    print(f"wrote {out_png} ({img.width}x{img.height}); heatmap max {metric} = {hmax:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
