#!/usr/bin/env python3
"""Measured sanity check of the derived ukis-csmask encoder (see README.md).

Everything runs through onnxruntime (CPU, 1 thread) on the exported files:

1. Sen1Floods11 chip Spain_7370579 (512 x 512 px Sentinel-2 L1C at ~10 m, hand
   labels water / not water): 64 px crops on a stride-16 grid; a crop is
   "water" when more than half of its valid label pixels are water. Spatial
   hold-out: train on crops that lie wholly in one half of the chip, test on
   crops wholly in the other half (left->right, right->left, top->bottom,
   bottom->top). No test pixel is ever inside a training crop. Reported per
   feature set: logistic-regression probe and kNN accuracy, balanced accuracy,
   ROC AUC, majority-class accuracy, and the R^2 of a ridge regression of the
   crop's water fraction; also on the 32 non-overlapping 64 px tiles of the
   test half.
   Feature sets: the shipped encoder.onnx (pretrained weights; since the
   switch to multiscale, the 744-d pooled skip maps + bottleneck); the SAME
   graph with all weights re-initialised (seeded He-normal convs, identity
   BatchNorm, zero biases, float32), i.e. the same multiscale pooling on a
   random network; the 448-d bottleneck-only variant (derive_encoder.py
   --embedding bottleneck: from --bottleneck-encoder, or derived in memory
   from --wheel-model) and its random-weight twin; the 6 standardised band
   means of the crop; the 6 band means + 6 band standard deviations.
2. The head recipe of train_head.py (MLP, dihedral augmentation, exported to
   ONNX with MC dropout) trained on one half and tested on the other.
3. Preprocessing check: the ORIGINAL ukis-csmask model, fed exactly as the
   metadata says, should find (almost) no cloud in these cloud-free images.
4. Timing per 64 px tile (batch 1 and 16) and per 128 px tile, 1 thread, of
   the shipped encoder (and of the bottleneck variant), and the whole sample
   scene samples/chincoteague_s2.tif when present.

    python evaluate.py [--encoder encoder.onnx] [--head head.onnx] [--wheel-model DIR/model_6b_l1c.onnx]
                       [--bottleneck-encoder bottleneck.onnx]

Needs numpy, onnx, onnxruntime, scikit-learn (and torch for item 2), and GDAL
(python osgeo, or the gdal_translate CLI) to read the GeoTIFFs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

DEFAULT_CHIP = Path(os.environ.get("NEXTTILE_SHARED_DATA", REPO.parent / "shared" / "data")) / "sen1floods11-spain-7370579"
CHIP_ID = "Spain_7370579"
TILE = 64
STRIDE = 16
SEED = 0


# --------------------------------------------------------------------------
# rasters
# --------------------------------------------------------------------------


def canonical_band(name: str) -> str:
    """'B2' -> 'B02', 'B8A' -> 'B8A', 'B08' -> 'B08'."""
    n = name.strip().upper()
    if n.startswith("B") and n[1:].isdigit():
        return f"B{int(n[1:]):02d}"
    return n


def read_raster(path: Path, bands: list[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """(array bands x rows x cols, band descriptions) via osgeo, else gdal_translate -of ENVI."""
    try:
        from osgeo import gdal

        ds = gdal.Open(str(path))
        idx = bands or list(range(1, ds.RasterCount + 1))
        arr = np.stack([ds.GetRasterBand(i).ReadAsArray() for i in idx])
        return arr, [ds.GetRasterBand(i).GetDescription() for i in idx]
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.envi"
        cmd = ["gdal_translate", "-q", "-of", "ENVI", "-co", "INTERLEAVE=BSQ"]
        for b in bands or []:
            cmd += ["-b", str(b)]
        subprocess.run(cmd + [str(path), str(out)], check=True)
        hdr, key, buf = {}, None, ""
        for line in (Path(tmp) / "r.hdr").read_text().splitlines():
            if key is None:
                if "=" not in line:
                    continue
                k, v = line.split("=", 1)
                key, buf = k.strip().lower(), v.strip()
            else:
                buf += " " + line.strip()
            if not buf.startswith("{") or buf.endswith("}"):
                hdr[key], key = buf, None
        dt = {"1": np.uint8, "2": np.int16, "3": np.int32, "4": np.float32, "5": np.float64, "12": np.uint16}[hdr["data type"]]
        dt = np.dtype(dt).newbyteorder(">" if hdr.get("byte order", "0") == "1" else "<")
        shape = (int(hdr["bands"]), int(hdr["lines"]), int(hdr["samples"]))
        arr = np.fromfile(out, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
        names = []
        if "band names" in hdr:
            names = [s.strip() for s in hdr["band names"].strip("{}").split(",")]
        return arr, names


def preprocess(raw: np.ndarray, meta: dict) -> np.ndarray:
    """Contract preprocessing: raw * scale + offset, optional clip, per-band standardisation."""
    x = raw.astype(np.float32) * float(meta["input_scale"]) + float(meta.get("input_offset", "0"))
    if "input_clip" in meta:
        lo, hi = json.loads(meta["input_clip"])
        x = np.clip(x, lo, hi)
    mean = np.array(json.loads(meta["standardization_mean"]), np.float32)[:, None, None]
    std = np.array(json.loads(meta["standardization_std"]), np.float32)[:, None, None]
    return (x - mean) / std


def load_chip(chip_dir: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    s2, names = read_raster(chip_dir / f"{CHIP_ID}_S2Hand.tif")
    names = [canonical_band(n) for n in names]
    want = json.loads(meta["input_bands"])
    raw = s2[[names.index(b) for b in want]]
    lab, _ = read_raster(chip_dir / f"{CHIP_ID}_LabelHand.tif")
    return preprocess(raw, meta), lab[0]


# --------------------------------------------------------------------------
# crops and splits
# --------------------------------------------------------------------------


def crop_grid(h: int, w: int, tile: int = TILE, stride: int = STRIDE) -> np.ndarray:
    rs = np.arange(0, h - tile + 1, stride)
    cs = np.arange(0, w - tile + 1, stride)
    return np.array([(r, c) for r in rs for c in cs], dtype=np.int64)


def crops(x: np.ndarray, pos: np.ndarray, tile: int = TILE) -> np.ndarray:
    return np.stack([x[:, r : r + tile, c : c + tile] for r, c in pos]).astype(np.float32)


def water_fraction(lab: np.ndarray, pos: np.ndarray, tile: int = TILE) -> tuple[np.ndarray, np.ndarray]:
    frac, valid = [], []
    for r, c in pos:
        l = lab[r : r + tile, c : c + tile]
        v = l >= 0
        valid.append(v.mean())
        frac.append((l == 1).sum() / max(v.sum(), 1))
    return np.array(frac), np.array(valid)


def split_masks(pos: np.ndarray, h: int, w: int, tile: int = TILE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    r, c = pos[:, 0], pos[:, 1]
    left, right = c + tile <= w // 2, c >= w // 2
    top, bottom = r + tile <= h // 2, r >= h // 2
    return {
        "left->right": (left, right),
        "right->left": (right, left),
        "top->bottom": (top, bottom),
        "bottom->top": (bottom, top),
    }


# --------------------------------------------------------------------------
# onnx
# --------------------------------------------------------------------------


def session(model, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    src = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def embed(sess, x: np.ndarray, batch: int = 32) -> np.ndarray:
    meta = sess.get_modelmeta().custom_metadata_map
    inp = meta.get("input_name", sess.get_inputs()[0].name)
    out = meta.get("embedding_output", sess.get_outputs()[0].name)
    return np.concatenate([sess.run([out], {inp: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def random_init_encoder(path, seed: int = SEED):
    """The same encoder graph with every weight re-initialised (float32):
    Conv weights ~ N(0, 2 / fan_in) (He), Conv biases 0, BatchNorm scale 1,
    shift 0, running mean 0, running var 1."""
    import onnx
    from onnx import numpy_helper

    from derive_encoder import widen_fp16

    if isinstance(path, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(path)
    else:
        m = onnx.load(str(path))
    nodes, inits = widen_fp16(list(m.graph.node), list(m.graph.initializer))
    role = {}
    for n in nodes:
        if n.op_type == "Conv":
            role[n.input[1]] = "conv_w"
            if len(n.input) > 2:
                role[n.input[2]] = "zero"
        elif n.op_type == "BatchNormalization":
            role[n.input[1]], role[n.input[2]], role[n.input[3]], role[n.input[4]] = "one", "zero", "zero", "one"
    rng = np.random.default_rng(seed)
    new = []
    for t in inits:
        a = numpy_helper.to_array(t)
        kind = role.get(t.name)
        if kind == "conv_w":
            fan_in = int(np.prod(a.shape[1:]))
            a = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=a.shape).astype(np.float32)
        elif kind == "zero":
            a = np.zeros_like(a, dtype=np.float32)
        elif kind == "one":
            a = np.ones_like(a, dtype=np.float32)
        else:
            raise SystemExit(f"initializer {t.name} has no known role")
        new.append(numpy_helper.from_array(a, t.name))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.initializer[:]
    m.graph.initializer.extend(new)
    return m


def embedding_parts(path: Path) -> list[tuple[str, int, int]]:
    """(source tensor, start, end) of each pooled part of a multiscale encoder's
    embedding (the inputs of nexttile/embedding_concat, in order); [] if none."""
    import onnx

    m = onnx.load(str(path))
    concat = [n for n in m.graph.node if n.name == "nexttile/embedding_concat"]
    if not concat:
        return []
    prod = {o: n for n in m.graph.node for o in n.output}
    vi = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    out, start = [], 0
    for part in concat[0].input:
        t = prod[prod[part].input[0]].input[0]  # Flatten <- GlobalAveragePool <- (Cast <-) tap
        if prod[t].name.startswith("nexttile/"):
            t = prod[t].input[0]
        d = int(vi[part].type.tensor_type.shape.dim[1].dim_value)
        out.append((t, start, start + d))
        start += d
    return out


# --------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------


def probe_scores(ftr, ytr, fte, yte, wtr, wte) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(ftr)
    a, b = sc.transform(ftr), sc.transform(fte)
    lr = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000).fit(a, ytr)
    p = lr.predict_proba(b)[:, 1]
    yl = (p > 0.5).astype(int)
    knn = KNeighborsClassifier(n_neighbors=5).fit(a, ytr)
    yk = knn.predict(b)
    pk = knn.predict_proba(b)[:, 1]
    rid = Ridge(alpha=10.0).fit(a, wtr)
    both = len(np.unique(yte)) == 2
    return {
        "linear_acc": round(float((yl == yte).mean()), 4),
        "linear_balanced_acc": round(float(balanced_accuracy_score(yte, yl)), 4) if both else None,
        "linear_auc": round(float(roc_auc_score(yte, p)), 4) if both else None,
        "knn5_acc": round(float((yk == yte).mean()), 4),
        "knn5_balanced_acc": round(float(balanced_accuracy_score(yte, yk)), 4) if both else None,
        "knn5_auc": round(float(roc_auc_score(yte, pk)), 4) if both else None,
        "ridge_water_fraction_r2": round(float(r2_score(wte, np.clip(rid.predict(b), 0, 1))), 4),
    }


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def timing(sessions: dict, c: int, reps: int = 15) -> dict:
    """ms per tile (median of `reps`), the sessions interleaved so that load
    from other processes hits them alike."""
    rng = np.random.default_rng(0)
    res = {k: {} for k in sessions}
    for bs, hw in [(1, 64), (16, 64), (1, 128), (16, 128)]:
        x = rng.normal(size=(bs, c, hw, hw)).astype(np.float32)
        ts = {k: [] for k in sessions}
        for s in sessions.values():
            embed(s, x, bs)
        for _ in range(reps):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                embed(s, x, bs)
                ts[k].append(time.perf_counter() - t0)
        for k in sessions:
            res[k][f"ms_per_tile_{hw}px_batch{bs}"] = round(1000 * float(np.median(ts[k])) / bs, 2)
    return res


def original_cloud_check(wheel_model: Path, x: np.ndarray, lab: np.ndarray | None = None) -> dict:
    """Run the full ukis-csmask U-Net on 256 px windows of a standardised image.
    Returns the fraction of pixels per predicted class (0 clear, 1 cloud, 2 shadow)
    and, with a water label, how the predictions fall on water."""
    s = session(str(wheel_model))
    name = s.get_inputs()[0].name
    _, h, w = x.shape
    counts = np.zeros(3)
    on_water = np.zeros(3)
    for r in range(0, h - 255, 256):
        for c in range(0, w - 255, 256):
            y = s.run(None, {name: x[None, :, r : r + 256, c : c + 256]})[0][0].argmax(0)
            counts += np.bincount(y.ravel(), minlength=3)[:3]
            if lab is not None:
                on_water += np.bincount(y[lab[r : r + 256, c : c + 256] == 1], minlength=3)[:3]
    f = counts / counts.sum()
    out = {"clear": round(float(f[0]), 4), "cloud": round(float(f[1]), 4), "shadow": round(float(f[2]), 4), "pixels": int(counts.sum())}
    if lab is not None:
        out["shadow_pixels_labelled_water"] = round(float(on_water[2] / max(counts[2], 1)), 4)
        out["water_pixels_predicted_shadow"] = round(float(on_water[2] / max(on_water.sum(), 1)), 4)
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", type=Path, default=HERE / "encoder.onnx")
    p.add_argument("--head", type=Path, default=HERE / "head.onnx")
    p.add_argument("--chip", type=Path, default=DEFAULT_CHIP)
    p.add_argument("--scene", type=Path, default=REPO / "samples" / "chincoteague_s2.tif")
    p.add_argument("--wheel-model", type=Path, default=None, help="original model_6b_l1c.onnx (optional check 3)")
    p.add_argument(
        "--bottleneck-encoder",
        type=Path,
        default=None,
        help="derive_encoder.py --embedding bottleneck output (448-d baseline); default: derived in memory from --wheel-model",
    )
    p.add_argument("--skip-head", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "metrics.json")
    args = p.parse_args(argv)
    t_start = time.time()

    import hashlib

    enc = session(str(args.encoder))
    meta = enc.get_modelmeta().custom_metadata_map
    x, lab = load_chip(args.chip, meta)
    _, h, w = x.shape
    pos = crop_grid(h, w)
    xc = crops(x, pos)
    frac, valid = water_fraction(lab, pos)
    y = (frac > 0.5).astype(int)
    t0 = time.time()
    feats = {"pretrained_encoder": embed(enc, xc)}
    t_embed = time.time() - t0
    feats["random_init_encoder"] = embed(session(random_init_encoder(args.encoder)), xc)
    bneck = None  # the 448-d bottleneck-only variant, as a baseline
    if args.bottleneck_encoder is not None:
        import onnx

        bneck = onnx.load(str(args.bottleneck_encoder))
    elif args.wheel_model is not None:
        from derive_encoder import derive

        bneck, _ = derive(args.wheel_model, json.loads(args.wheel_model.with_suffix(".json").read_text()), "fp16", "bottleneck")
    if bneck is not None:
        bneck_sess = session(bneck)
        feats["bottleneck_encoder"] = embed(bneck_sess, xc)
        feats["random_init_bottleneck"] = embed(session(random_init_encoder(bneck)), xc)
    feats["band_means"] = xc.mean(axis=(2, 3))
    feats["band_means_stds"] = np.concatenate([xc.mean(axis=(2, 3)), xc.std(axis=(2, 3))], axis=1)

    # the non-overlapping 64 px tiles (subset of the stride-16 grid)
    tiles = (pos[:, 0] % TILE == 0) & (pos[:, 1] % TILE == 0)
    res: dict = {
        "encoder_sha256": hashlib.sha256(args.encoder.read_bytes()).hexdigest(),
        "data": {
            "chip": f"Sen1Floods11 {CHIP_ID} S2Hand + LabelHand, {h}x{w} px",
            "crop": TILE,
            "crop_stride": STRIDE,
            "crops": int(len(pos)),
            "water_crops": int(y.sum()),
            "nonoverlapping_tiles": int(tiles.sum()),
            "water_tiles": int(y[tiles].sum()),
            "label": "water if > 0.5 of the valid label pixels are water",
        },
        "feature_sets": {
            k: {
                "dim": int(f.shape[1]),
                "what": {
                    "pretrained_encoder": f"the shipped encoder.onnx ({meta.get('model_name')}, embedding_dim {meta.get('embedding_dim')})",
                    "random_init_encoder": "the same graph as encoder.onnx, all weights re-initialised (He-normal convs, seed 0, identity BN), float32",
                    "bottleneck_encoder": "derive_encoder.py --embedding bottleneck: the pooled _blocks.31 bottleneck alone (pretrained)",
                    "random_init_bottleneck": "the bottleneck-only graph, weights re-initialised as above",
                    "band_means": "6 standardised band means of the crop",
                    "band_means_stds": "6 standardised band means + 6 band standard deviations",
                }[k],
            }
            for k, f in feats.items()
        },
        "bottleneck_encoder_sha256": None if bneck is None else hashlib.sha256(bneck.SerializeToString(deterministic=True)).hexdigest(),
        "probe_settings": "StandardScaler fit on train; LogisticRegression(C=0.1, class_weight=balanced); kNN k=5 Euclidean on standardised features; Ridge(alpha=10) for water fraction",
        "splits": {},
    }
    for split, (tr, te) in split_masks(pos, h, w).items():
        entry = {
            "train_crops": int(tr.sum()),
            "train_water": int(y[tr].sum()),
            "test_crops": int(te.sum()),
            "test_water": int(y[te].sum()),
            "test_majority_acc": round(float(max(y[te].mean(), 1 - y[te].mean())), 4),
            "test_tiles": int((te & tiles).sum()),
            "test_tiles_water": int(y[te & tiles].sum()),
            "test_tiles_majority_acc": round(float(max(y[te & tiles].mean(), 1 - y[te & tiles].mean())), 4),
        }
        for name, f in feats.items():
            entry[name] = {
                "test_crops": probe_scores(f[tr], y[tr], f[te], y[te], frac[tr], frac[te]),
                "test_tiles": probe_scores(f[tr], y[tr], f[te & tiles], y[te & tiles], frac[tr], frac[te & tiles]),
            }
        res["splits"][split] = entry
        print(split, json.dumps({k: v["test_crops"] for k, v in entry.items() if isinstance(v, dict)}), flush=True)

    # mean over the four splits (test crops)
    summary = {}
    for name in feats:
        keys = ["linear_acc", "linear_balanced_acc", "linear_auc", "knn5_acc", "knn5_balanced_acc", "knn5_auc", "ridge_water_fraction_r2"]
        summary[name] = {
            k: round(float(np.mean([res["splits"][s][name]["test_crops"][k] for s in res["splits"]])), 4) for k in keys
        }
    summary["majority_acc"] = round(float(np.mean([res["splits"][s]["test_majority_acc"] for s in res["splits"]])), 4)
    res["mean_over_4_splits_test_crops"] = summary

    # which pooled parts of the shipped (multiscale) embedding carry the signal
    parts = embedding_parts(args.encoder)
    if parts:
        ab = {}
        f = feats["pretrained_encoder"]
        sets = [(t.split("/")[-2], a, b) for t, a, b in parts] + [("all_but_bottleneck", 0, parts[-1][1])]
        for name, a, b in sets:
            sc = [probe_scores(f[tr][:, a:b], y[tr], f[te][:, a:b], y[te], frac[tr], frac[te]) for tr, te in split_masks(pos, h, w).values()]
            ab[name] = {"dims": [a, b], **{k: round(float(np.mean([v[k] for v in sc])), 4) for k in sc[0]}}
        res["shipped_embedding_parts_mean_over_4_splits"] = ab
        res["shipped_embedding_parts"] = [{"tensor": t, "dims": [a, b]} for t, a, b in parts]

    if not args.skip_head:
        from train_head import heldout_head_eval

        res["head_recipe_heldout"] = heldout_head_eval(feats["pretrained_encoder"], y, pos, h, w, args.encoder, xc)
        if args.head.exists():
            hs = session(str(args.head))
            hm = hs.get_modelmeta().custom_metadata_map
            pr = hs.run(["probs"], {"embedding": feats["pretrained_encoder"], "mc_dropout": np.array(False)})[0]
            res["shipped_head_on_all_crops_train_fit"] = {
                "acc": round(float((pr.argmax(1) == y).mean()), 4),
                "note": "head.onnx was trained on all crops of this chip: a fit, not a held-out number",
                "encoder_sha256_matches": hm.get("encoder_sha256") == res["encoder_sha256"],
            }

    if args.wheel_model is not None:
        res["original_model_cloud_fractions"] = {"sen1floods11_chip": original_cloud_check(args.wheel_model, x, lab)}

    tm = timing({"encoder": enc, **({"bottleneck_variant": bneck_sess} if bneck is not None else {})}, x.shape[0])
    res["timing_1_thread"] = tm["encoder"]
    res["timing_1_thread"]["embed_seconds_chip_crops"] = round(t_embed, 2)
    if bneck is not None:
        res["timing_1_thread_bottleneck_variant"] = tm["bottleneck_variant"]
    if args.scene.exists():
        names_all = None
        try:
            from osgeo import gdal

            ds = gdal.Open(str(args.scene))
            names_all = [canonical_band(ds.GetRasterBand(i).GetDescription()) for i in range(1, ds.RasterCount + 1)]
        except ImportError:
            names_all = "B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12".split()
        want = json.loads(meta["input_bands"])
        raw, _ = read_raster(args.scene, [names_all.index(b) + 1 for b in want])
        xs = preprocess(raw, meta)
        ph, pw = xs.shape[1] // TILE, xs.shape[2] // TILE
        grid = np.array([(r * TILE, c * TILE) for r in range(ph) for c in range(pw)])
        t0 = time.time()
        for i in range(0, len(grid), 256):
            embed(enc, crops(xs, grid[i : i + 256]), 16)
        res["timing_1_thread"]["sample_scene_tiles"] = int(len(grid))
        res["timing_1_thread"]["sample_scene_embed_seconds_batch16"] = round(time.time() - t0, 1)
        if args.wheel_model is not None:
            res["original_model_cloud_fractions"]["chincoteague_sample_scene"] = original_cloud_check(args.wheel_model, xs)
    res["evaluate_wall_seconds"] = round(time.time() - t_start, 1)
    print(json.dumps({k: res[k] for k in res if k != "splits"}, indent=1))
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
