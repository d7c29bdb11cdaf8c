#!/usr/bin/env python3
"""Does a EuroSAT-trained pair transfer to a real Sentinel-2 L1C scene? Label-free checks.

EuroSAT-RGB's patches are 8-bit JPEGs (quality 100, 4:2:0 chroma subsampling); a real scene is
uncompressed 12-bit reflectance. A pair whose head reads the scene like the JPEGs passes:

1. classes:  the head's predicted classes on the scene's fully valid 64-px tiles (the host's
   preprocessing: B04/B03/B02 x 1/2800, clipped, standardised with the encoder's metadata);
2. jpeg agreement: the share of tiles whose class stays the same when the tile is stored the way
   EuroSAT's files are (8 bit, JPEG q100 4:2:0) before it goes through the same pair; for
   comparison also after 8 bit alone and after an 8-bit JPEG q100 without subsampling (4:4:4),
   and the classes the pair gives the 4:2:0 copy;
3. water: the scene's own physics as a reference: per tile, the share of pixels with
   NDWI = (B03 - B08) / (B03 + B08) > 0 (McFeeters 1996, doi:10.1080/01431169608948714);
   tiles over 90 % water should be SeaLake or River, tiles under 5 % should not;
4. vegetation: the classes given to dry tiles where over half the pixels have
   NDVI = (B08 - B04) / (B08 + B04) > 0.5 (vegetated land: no Highway, River or SeaLake).

    /tmp/rcfvenv/bin/python onnx/check_scene.py onnx/eurosat_simsiam onnx/rcf_fast [--scene samples/chincoteague_s2.tif]

Needs numpy, pillow, tifffile, onnxruntime. Prints one JSON object per model folder.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TILE = 64
WATER = ("SeaLake", "River")


def meta(sess) -> dict:
    return dict(sess.get_modelmeta().custom_metadata_map)


def scene_tiles(path: Path, scale: float, mean, std):
    """Standardised B04/B03/B02 tiles (N x 3 x 64 x 64), each tile's NDWI water share and NDVI > 0.5 share."""
    import tifffile

    a = tifffile.imread(str(path))
    if a.ndim == 3 and a.shape[-1] == 13:
        a = np.moveaxis(a, -1, 0)
    a = a.astype(np.float32)
    rgb = a[[3, 2, 1]]
    green, nir = a[2], a[7]
    ndwi = (green - nir) / np.maximum(green + nir, 1.0)
    ndvi = (nir - a[3]) / np.maximum(nir + a[3], 1.0)
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    sd = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    x = (np.clip(rgb * np.float32(scale), 0, 1) - m) / sd
    valid = (a > 0).all(0)
    tiles, water, veg = [], [], []
    for ty in range(x.shape[1] // TILE):
        for tx in range(x.shape[2] // TILE):
            sl = (slice(ty * TILE, (ty + 1) * TILE), slice(tx * TILE, (tx + 1) * TILE))
            if valid[sl].all():
                tiles.append(x[:, sl[0], sl[1]])
                water.append(float((ndwi[sl] > 0).mean()))
                veg.append(float((ndvi[sl] > 0.5).mean()))
    return np.stack(tiles).astype(np.float32), np.array(water), np.array(veg)


def eurosat_jpeg(t: np.ndarray, mean, std, subsampling: int | None = 2) -> np.ndarray:
    """Standardised tiles stored the way EuroSAT-RGB's are (8 bit, JPEG q100 4:2:0), standardised again.
    subsampling: PIL's (2 = 4:2:0, 0 = 4:4:4); None = 8 bit only, no JPEG."""
    from PIL import Image

    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    sd = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    u8 = np.clip(np.round((t * sd + m) * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    out = np.empty_like(u8)
    for i in range(len(u8) if subsampling is not None else 0):
        buf = io.BytesIO()
        Image.fromarray(u8[i]).save(buf, "JPEG", quality=100, subsampling=subsampling)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    if subsampling is None:
        out = u8
    v = np.clip(out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, 0, 1)
    return ((v - m) / sd).astype(np.float32)


def predict(enc, head, t: np.ndarray) -> np.ndarray:
    iname = enc.get_inputs()[0].name
    e = np.concatenate([enc.run(None, {iname: t[i : i + 32]})[0] for i in range(0, len(t), 32)])
    return head.run(["probs"], {"embedding": e})[0]


def check(folder: Path, scene: Path) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    enc = ort.InferenceSession(str(folder / "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(folder / "head.onnx"), opts, providers=["CPUExecutionProvider"])
    em, hm = meta(enc), meta(head)
    mean, std = json.loads(em["standardization_mean"]), json.loads(em["standardization_std"])
    classes = json.loads(hm["class_names"])
    classes = [classes[str(i)] for i in range(len(classes))]
    t, water, veg = scene_tiles(scene, float(em["input_scale"]), mean, std)
    p = predict(enc, head, t).argmax(1)
    pj = predict(enc, head, eurosat_jpeg(t, mean, std)).argmax(1)
    p8 = predict(enc, head, eurosat_jpeg(t, mean, std, None)).argmax(1)
    p444 = predict(enc, head, eurosat_jpeg(t, mean, std, 0)).argmax(1)
    names = np.array(classes)[p]
    wet, dry = water > 0.9, water < 0.05
    green = dry & (veg > 0.5)
    counts = collections.Counter(names.tolist())
    return {
        "model": str(folder),
        "scene": str(scene),
        "tiles": int(len(t)),
        "classes": dict(counts.most_common()),
        "largest_class_share": round(max(counts.values()) / len(t), 3),
        "jpeg_agreement": round(float((p == pj).mean()), 3),
        "jpeg_classes": dict(collections.Counter(np.array(classes)[pj].tolist()).most_common(4)),
        "8bit_agreement": round(float((p == p8).mean()), 3),
        "jpeg444_agreement": round(float((p == p444).mean()), 3),
        "water_tiles": int(wet.sum()),
        "water_tiles_called_water": round(float(np.isin(names[wet], WATER).mean()), 3) if wet.any() else None,
        "dry_tiles": int(dry.sum()),
        "dry_tiles_called_water": round(float(np.isin(names[dry], WATER).mean()), 3) if dry.any() else None,
        "vegetated_dry_tiles": int(green.sum()),
        "vegetated_dry_tiles_classes": dict(collections.Counter(names[green].tolist()).most_common()),
    }


def main(argv) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="model folders holding encoder.onnx and head.onnx")
    p.add_argument("--scene", type=Path, default=REPO / "samples" / "chincoteague_s2.tif")
    a = p.parse_args(argv)
    for folder in a.models:
        print(json.dumps(check(folder, a.scene)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
