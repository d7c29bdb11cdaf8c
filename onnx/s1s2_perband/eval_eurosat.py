#!/usr/bin/env python3
"""EuroSAT-RGB per-band linear evaluation of the single-band encoder (seed 003's protocol: a
linear probe per band), through onnxruntime.

EuroSAT-RGB (shared/data/eurosat-rgb.tar.gz, splits.csv train / test) is 64 x 64 8-bit JPEG of
Sentinel-2 B04, B03, B02 (R, G, B). Each band is fed ALONE (N x 1 x H x W) through
`encoder.onnx` (and through its seed-fixed random-weights twin), standardised with THAT band's
mean / std from the encoder metadata (Spain chip, reflectance x 10000).

8-bit -> reflectance: the JPEG is not reflectance x 10000. We use the factor the repo's EuroSAT
encoder implies (onnx/eurosat_simsiam metadata: input_scale = 1/2800 maps reflectance x 10000 to
the 0..1 of pixel / 255), i.e.  reflectance_x10000 ~= (v / 255) / input_scale = v * 2800 / 255.
That factor was picked by matching percentiles of EuroSAT-RGB against one Virginia scene
(onnx/eurosat_simsiam/README.md); EuroSAT's own RGB rendering (stretch, clipping) is not
documented here, so the mapping is APPROXIMATE (one global linear factor, the same for all three
bands, no offset).

Embeddings at 64 x 64 (the full patch; the encoder is fully convolutional with global average
pooling, trained at 32) and at the 32 x 32 centre crop (tiles_size). Features: each band alone,
the band-mean fusion over B02, B03, B04 (what nexttile does with band_fusion "mean") and, as an
extra, their concatenation. Baseline: raw pixels, per band the standardised band average-pooled
to 8 x 8 plus its mean and std (66 values), PCA 50 (fitted on the train split, no labels).

Probes (the same code as onnx/eurosat_simsiam/train.py evaluate, so the numbers compare with that
model card): multinomial logistic regression (L2 1e-3, L-BFGS) on standardised features with all
18,900 train labels and with 189 random train labels (5 draws, rng seed 0, the same draws for
every feature set; mean +- std), and kNN-20 (cosine, exp(sim / 0.07) votes) with all train labels;
tested on the 4,050 test patches.

    python onnx/s1s2_perband/eval_eurosat.py            # writes the "eurosat_rgb_per_band" key of metrics.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import ssl_common as C  # noqa: E402

EUROSAT_TRAIN = HERE.parent / "eurosat_simsiam" / "train.py"
EUROSAT_ENCODER = HERE.parent / "eurosat_simsiam" / "encoder.onnx"
BANDS = C.S1_BANDS + C.S2_BANDS  # the per-band encoder's input_bands order
RGB = ["B04", "B03", "B02"]  # JPEG channel order R, G, B
ORDER = ["B02", "B03", "B04"]
WIDTHS = (32, 64, 128)
KEY = "eurosat_rgb_per_band"


def load_eurosat_module():
    spec = importlib.util.spec_from_file_location("eurosat_simsiam_train", EUROSAT_TRAIN)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def meta_of(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def ensure_random_encoder(path: Path, enc_meta: dict, seed: int) -> None:
    """Re-create the random twin exactly as train.py export does (torch.manual_seed(seed + 1000))."""
    if path.exists():
        return
    import torch

    sys.path.insert(0, str(HERE))
    import train as T  # noqa: E402  (onnx/s1s2_perband/train.py)

    stats = {"mean": json.loads(enc_meta["standardization_mean"]), "std": json.loads(enc_meta["standardization_std"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed + 1000)
    rnd = C.build_encoder_cls()(1, WIDTHS).eval()
    C.export_encoder(rnd, 1, path)
    C.write_meta(path, T.encoder_meta(stats, "RANDOM weights baseline (not trained)", 0, 0))
    print(f"re-created {path}", flush=True)


def to_std_band(x_u8: np.ndarray, ch: int, band: str, mean, std, input_scale: float) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x 1 x H x W: approx reflectance x 10000, standardised with `band`'s stats."""
    refl = x_u8[..., ch].astype(np.float64) / 255.0 / input_scale
    i = BANDS.index(band)
    return ((refl - mean[i]) / std[i]).astype(np.float32)[:, None]


def centre(x: np.ndarray, size: int) -> np.ndarray:
    h = x.shape[-2]
    o = (h - size) // 2
    return np.ascontiguousarray(x[..., o : o + size, o : o + size])


def raw_feats(x: np.ndarray) -> np.ndarray:
    """N x 1 x s x s standardised band -> 8 x 8 average pool (64) + mean + std = 66 values."""
    n, _, s, _ = x.shape
    k = s // 8
    pooled = x[:, 0].reshape(n, 8, k, 8, k).mean(axis=(2, 4)).reshape(n, 64)
    return np.concatenate([pooled, x[:, 0].mean(axis=(1, 2))[:, None], x[:, 0].std(axis=(1, 2))[:, None]], 1)


def pca50(ftr: np.ndarray, fte: np.ndarray, seed: int):
    from sklearn.decomposition import PCA

    p = PCA(n_components=50, random_state=seed).fit(ftr)
    return p.transform(ftr).astype(np.float32), p.transform(fte).astype(np.float32)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=C.SHARED / "eurosat-rgb.tar.gz")
    ap.add_argument("--work", type=Path, default=Path("/tmp/eurosat-work"))
    ap.add_argument("--encoder", type=Path, default=HERE / "encoder.onnx")
    ap.add_argument("--random-encoder", type=Path, default=C.WORK_ROOT / "s1s2_perband" / "random_encoder.onnx")
    ap.add_argument("--metrics", type=Path, default=HERE / "metrics.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--refl-mult", type=float, default=1.0,
                    help="sensitivity check: multiply the 8-bit -> reflectance factor by this (1 = the documented mapping)")
    ap.add_argument("--no-write", action="store_true", help="print only, leave metrics.json alone")
    args = ap.parse_args(argv)
    t0 = time.time()

    import torch

    torch.set_num_threads(args.threads)
    E = load_eurosat_module()
    emeta = meta_of(args.encoder)
    mean = json.loads(emeta["standardization_mean"])
    std = json.loads(emeta["standardization_std"])
    input_scale = float(meta_of(EUROSAT_ENCODER)["input_scale"]) / args.refl_mult  # 1/2800 at --refl-mult 1
    ensure_random_encoder(args.random_encoder, emeta, args.seed)

    root = E.extract(args.data, args.work)
    xtr, ytr = E.load_split(root, args.work, "train")
    xte, yte = E.load_split(root, args.work, "test")
    print(f"train {len(ytr)}, test {len(yte)}; reflectance_x10000 = v/255/{input_scale:.6g} = v*{1 / input_scale / 255:.4f}",
          flush=True)

    sessions = {"encoder": C.ort_session(args.encoder, args.threads),
                "random_encoder": C.ort_session(args.random_encoder, args.threads)}
    rng = np.random.default_rng(args.seed)
    few_idx = [rng.choice(len(ytr), 189, replace=False) for _ in range(5)]  # as eurosat_simsiam evaluate

    def probe(ftr, fte) -> dict:
        few = [E.logistic_probe(ftr[i], ytr[i], fte, yte, args.seed + s) for s, i in enumerate(few_idx)]
        return {
            "linear_all_train": round(E.logistic_probe(ftr, ytr, fte, yte, args.seed), 4),
            "linear_189_labels_mean_of_5": round(float(np.mean(few)), 4),
            "linear_189_labels_std_of_5": round(float(np.std(few)), 4),
            "linear_189_labels_runs": [round(float(v), 4) for v in few],
            "knn20_cosine_all_train": round(E.knn_probe(ftr, ytr, fte, yte), 4),
            "dim": int(ftr.shape[1]),
        }

    results, timing, input_stats = {}, {}, {}
    for size in args.sizes:
        std_tr = {b: centre(to_std_band(xtr, RGB.index(b), b, mean, std, input_scale), size) for b in ORDER}
        std_te = {b: centre(to_std_band(xte, RGB.index(b), b, mean, std, input_scale), size) for b in ORDER}
        input_stats[f"{size}px"] = {b: {"mean": round(float(std_tr[b].mean()), 3), "std": round(float(std_tr[b].std()), 3)}
                                     for b in ORDER}
        feats = {}
        for name, sess in sessions.items():
            tag = "" if args.refl_mult == 1.0 else f"_x{args.refl_mult:g}"
            cache = args.work / f"emb_{name}_{size}{tag}.npz"
            if cache.exists() and cache.stat().st_mtime > max(args.encoder.stat().st_mtime, args.random_encoder.stat().st_mtime):
                z = np.load(cache)
                etr = {b: z[f"tr_{b}"] for b in ORDER}
                ete = {b: z[f"te_{b}"] for b in ORDER}
            else:
                t1 = time.time()
                etr = {b: C.ort_embed(sess, std_tr[b], 256) for b in ORDER}
                ete = {b: C.ort_embed(sess, std_te[b], 256) for b in ORDER}
                timing[f"embed_{name}_{size}px_s"] = round(time.time() - t1, 1)
                np.savez(cache, **{f"tr_{b}": etr[b] for b in ORDER}, **{f"te_{b}": ete[b] for b in ORDER})
                print(f"embedded {name} at {size}px in {time.time() - t1:.0f}s", flush=True)
            for b in ORDER:
                feats[f"{name}_{b}"] = (etr[b], ete[b])
            feats[f"{name}_mean_B02_B03_B04"] = (np.mean([etr[b] for b in ORDER], 0), np.mean([ete[b] for b in ORDER], 0))
            feats[f"{name}_concat_B02_B03_B04"] = (np.concatenate([etr[b] for b in ORDER], 1),
                                                   np.concatenate([ete[b] for b in ORDER], 1))
        rtr = {b: raw_feats(std_tr[b]) for b in ORDER}
        rte = {b: raw_feats(std_te[b]) for b in ORDER}
        for b in ORDER:
            feats[f"raw_pixels_pca50_{b}"] = pca50(rtr[b], rte[b], args.seed)
        feats["raw_pixels_pca50_mean_B02_B03_B04"] = pca50(np.mean([rtr[b] for b in ORDER], 0),
                                                           np.mean([rte[b] for b in ORDER], 0), args.seed)
        feats["raw_pixels_pca50_concat_B02_B03_B04"] = pca50(np.concatenate([rtr[b] for b in ORDER], 1),
                                                             np.concatenate([rte[b] for b in ORDER], 1), args.seed)
        res = {}
        for fname, (ftr, fte) in feats.items():
            t1 = time.time()
            res[fname] = probe(ftr.astype(np.float32), fte.astype(np.float32))
            r = res[fname]
            print(f"{size}px {fname:40s} lin {r['linear_all_train']:.4f}  189 {r['linear_189_labels_mean_of_5']:.4f}"
                  f"+-{r['linear_189_labels_std_of_5']:.4f}  knn20 {r['knn20_cosine_all_train']:.4f}  ({time.time() - t1:.0f}s)",
                  flush=True)
        results[f"{size}px" if size == 64 else f"{size}px_centre_crop"] = res

    out = {
        "data": "EuroSAT-RGB (Helber et al. 2019, MIT), shared/data/eurosat-rgb.tar.gz, splits.csv: "
        f"train {len(ytr)} / test {len(yte)}, 10 classes; 64x64 8-bit JPEG of S2 B04,B03,B02",
        "input_mapping": f"APPROXIMATE: reflectance_x10000 = (v/255)/input_scale with input_scale = {input_scale!r} "
        f"(= 1/2800 from onnx/eurosat_simsiam metadata, divided by --refl-mult {args.refl_mult:g}), i.e. "
        f"v*{1 / input_scale / 255:.4f}, same factor for all bands, then each band "
        "standardised with its own Spain mean/std from this encoder's metadata, fed alone (N x 1 x H x W)",
        "refl_mult": args.refl_mult,
        "standardised_input_train_stats": input_stats,
        "sizes": "64px = full patch (encoder trained at 32, fully convolutional + global average pool); "
        "32px_centre_crop = centre 32x32 (tiles_size)",
        "features": "<enc>_<band> = one band through the encoder; <enc>_mean_B02_B03_B04 = band_fusion mean; "
        "<enc>_concat_B02_B03_B04 = concatenation (extra, not what nexttile does); random_encoder = seed-fixed "
        "random-weights twin (torch.manual_seed(1000)); raw_pixels_pca50_* = per band the standardised band "
        "8x8 average-pooled + band mean + std (66 values; mean = mean of the three bands' 66-vectors, concat = 198), "
        "PCA 50 fitted on the train split",
        "probes": "onnx/eurosat_simsiam/train.py logistic_probe (multinomial logistic regression, L2 1e-3, L-BFGS 300 "
        "iters, standardised features) and knn_probe (k=20, cosine, exp(sim/0.07) votes); 189 labels = 5 draws "
        "rng default_rng(0).choice(18900, 189), identical draws for every feature set; test accuracy on 4050",
        "reference_eurosat_simsiam_rgb_encoder": {
            k: v for k, v in json.loads((HERE.parent / "eurosat_simsiam" / "metrics.json").read_text()).items()
            if k.startswith(("linear", "knn"))
        },
        "results": results,
        "seconds": round(time.time() - t0, 1),
        "timing": timing,
        "command": "python onnx/s1s2_perband/eval_eurosat.py --threads 1"
        + ("" if args.refl_mult == 1.0 else f" --refl-mult {args.refl_mult:g} --sizes {' '.join(map(str, args.sizes))}"),
    }
    print(json.dumps(out, indent=2))
    if not args.no_write:
        m = json.loads(args.metrics.read_text())
        key = KEY if args.refl_mult == 1.0 else f"{KEY}_refl_mult_{args.refl_mult:g}"  # sensitivity runs
        m[key] = out
        args.metrics.write_text(json.dumps(m, indent=2) + "\n")
        print(f"wrote key {key!r} into {args.metrics}")


if __name__ == "__main__":
    main(sys.argv[1:])
