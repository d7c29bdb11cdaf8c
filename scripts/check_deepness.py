#!/usr/bin/env python3
"""Check `set_metadata.py --deepness` exports the way Deepness and GeoDeep read them.

    python scripts/check_deepness.py SOURCE.onnx EXPORT.onnx

Reads EXPORT's metadata with the same calls Deepness 0.6
(src/deepness/processing/models/model_base.py: json.loads of model_type,
resolution, tile_size, tiles_overlap, standardization_mean/std; one graph input;
cv2.resize to input_shape[2:4]) and GeoDeep (geodeep/inference.py: json.loads of
model_type, float() of resolution and tiles_overlap, tile size = input_shape[-1])
make, then feeds both files random raw tiles: SOURCE the way NextTile does
(clip(raw * input_scale + input_offset, lo, hi), then (x - mean) / std) and EXPORT
the way Deepness does (raw / 255, then (x - mean') / std'), and asserts the
embeddings agree. Needs numpy, onnx and onnxruntime. Exit 1 on any difference.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def deepness_reads(path):
    """What Deepness and GeoDeep read from the file; raises where they would."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    if len(inputs) > 1:
        raise AssertionError("ONNX model: unsupported number of inputs")  # both tools' message
    meta = sess.get_modelmeta().custom_metadata_map
    model_type = str(json.loads(meta["model_type"])).capitalize()
    assert model_type == "Recognition", model_type
    shape = inputs[0].shape
    h, w = shape[2:4]
    assert isinstance(h, int) and isinstance(w, int), f"dynamic input {shape}: cv2.resize cannot take it"
    got = {
        "resolution": float(json.loads(meta["resolution"])),
        "tile_size": int(json.loads(meta["tile_size"])),
        "tiles_size": int(json.loads(meta["tiles_size"])),
        "tiles_overlap": int(json.loads(meta["tiles_overlap"])),
        "mean": np.array([float(x) for x in json.loads(meta["standardization_mean"])], dtype=np.float32),
        "std": np.array([float(x) for x in json.loads(meta["standardization_std"])], dtype=np.float32),
        # GeoDeep
        "geodeep_resolution": float(meta["resolution"]),
        "geodeep_overlap": float(meta["tiles_overlap"]),
        "geodeep_tiles_size": shape[-1],
    }
    assert got["tile_size"] == got["tiles_size"] == h == w == got["geodeep_tiles_size"], got
    assert len(got["mean"]) == len(got["std"]) == shape[1], got
    return sess, got


def nexttile_input(raw, meta):
    c = raw.shape[1]
    scale = float(meta.get("input_scale", "1").strip('"'))
    offset = float(meta.get("input_offset", "0").strip('"'))
    x = raw.astype(np.float64) * scale + offset
    if "input_clip" in meta:
        lo, hi = json.loads(meta["input_clip"])
        x = np.clip(x, lo, hi)
    mean = np.array(json.loads(meta.get("standardization_mean", json.dumps([0.0] * c))))
    std = np.array(json.loads(meta.get("standardization_std", json.dumps([1.0] * c))))
    return ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)


def main(source, export):
    sess, got = deepness_reads(export)
    src = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    src_meta = src.get_modelmeta().custom_metadata_map
    n, c, size = 4, len(got["mean"]), got["tile_size"]
    rng = np.random.default_rng(14)
    # Raw values over the whole range the source's scaling maps into [0, 1.3] and past its clip.
    scale = float(src_meta.get("input_scale", "1").strip('"'))
    top = 1.3 / scale if scale != 1 else 4000.0
    raw = rng.uniform(0, top, size=(n, c, size, size)).astype(np.float32)
    if scale == 1:  # raw units (dB for S1 bands are negative)
        raw -= 30.0
    # Deepness: ModelBase.preprocessing on N x H x W x C tiles.
    tiles = np.transpose(raw, (0, 2, 3, 1))
    tiles = np.float32(tiles * 1.0 / 255.0)
    tiles = (tiles - got["mean"]) / got["std"]
    deepness_in = np.transpose(tiles, (0, 3, 1, 2)).astype(np.float32)
    out_d = sess.run(None, {sess.get_inputs()[0].name: deepness_in})[0]
    name = src_meta.get("input_name", src.get_inputs()[0].name).strip('"')
    feed = {name: nexttile_input(raw, src_meta)}
    out_n = src.run([src_meta.get("embedding_output", src.get_outputs()[0].name).strip('"')], feed)[0]
    err = float(np.max(np.abs(out_d - out_n)) / (np.max(np.abs(out_n)) + 1e-12))
    print(f"{export}: Deepness reads model_type Recognition, tile {size} px, "
          f"resolution {got['resolution']} cm/px; embeddings vs NextTile on the source: max rel. diff {err:.2e}")
    if err > 1e-3:
        sys.exit(f"{export}: Deepness's input gives other embeddings than NextTile's (max rel. diff {err})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
