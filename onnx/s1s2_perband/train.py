#!/usr/bin/env python3
"""Per-band (single-channel) cross-modal SimSiam encoder (seed 003) + water/land head for NextTile.

Seed 003 (Jain, Schoen-Phelan & Ross, IGARSS 2021): BYOL / SimSiam where the two views of a
place are ONE random multispectral band and ONE random SAR band, so the encoder learns a
single-channel representation shared by all bands of both sensors. Here: SimSiam (the paper
finds no significant difference to BYOL) on the tiny ResNet of onnx/ssl_common.py with a
1-channel input (1 -> 32/64/128 channels, stride 8, 128-d).

Views: for a random 40 x 40 window of the Sen1Floods11 Spain_7370579 chip, view 1 = one random
S2 band (of 13), view 2 = one random S1 band (VV or VH), each standardised with its own band
statistics (raw units, from the chip), each an independent 32 x 32 crop of the window with an
independent flip / 90-degree rotation and light gain / offset / noise jitter.
Extra S2-only views (--chinco-frac, default 0.25 of each batch): two different random S2 bands
of a window of the Chincoteague scene, standardised with Chincoteague's own band statistics
(those statistics are used only in training; the metadata carries the Spain statistics).

At score time nexttile feeds each chosen band separately (N x 1 x H x W) and averages the
embeddings (band_fusion "mean"); the head sees the mean over default_bands.

    python onnx/s1s2_perband/train.py pretrain --steps 700
    python onnx/s1s2_perband/train.py export
    python onnx/s1s2_perband/train.py evaluate
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import ssl_common as C  # noqa: E402

NAME = "s1s2_perband"
WIDTHS = (32, 64, 128)
MARGIN = 8
BANDS = C.S1_BANDS + C.S2_BANDS
DEFAULT_BANDS = ["VV", "VH", "B02", "B03", "B04", "B08"]
PROBE_BANDS = ["VV", "VH", "B02", "B03", "B04", "B08", "B11", "B12"]


def pick(v: np.ndarray, band: np.ndarray) -> np.ndarray:
    """N x C x s x s, per-sample channel index -> N x 1 x s x s."""
    return np.ascontiguousarray(v[np.arange(len(v)), band][:, None])


def cmd_pretrain(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    d = C.load_spain(args.cache)
    stats = C.stats_spain(d)
    (args.work / "stats.json").write_text(json.dumps(stats))
    xs_ = C.stack_spain(d, stats)
    _, h, w = xs_.shape
    xc = None
    n_ch = int(round(args.batch * args.chinco_frac))
    if n_ch > 0:
        raw = C.load_chinco(args.cache)
        valid = C.s2_valid(raw)
        cm, cs = C.band_stats(raw, valid)
        (args.work / "chinco_stats.json").write_text(json.dumps({"mean": cm, "std": cs}))
        xc = C.standardise(raw, valid, cm, cs)
        del raw, valid
    n_sp = args.batch - n_ch

    Encoder = C.build_encoder_cls()
    SimSiam = C.build_simsiam_cls()
    enc = Encoder(1, WIDTHS)
    model = SimSiam(enc, enc.dim)
    print(f"encoder params {C.n_params(enc)}, total {C.n_params(model)}; batch {n_sp} Spain S2/S1 + {n_ch} Chincoteague S2/S2",
          flush=True)
    lr = args.lr * args.batch / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    tr = C.Trainer(model, opt, lr, args.steps, args.work, "simsiam", args.restart, args.max_minutes, args.stop_at)

    def two_crops(x, n, band_a, band_b):
        hh, ww = x.shape[1:]
        ys, xs = C.corners(rng, n, hh, ww, C.TILE, MARGIN)
        out = []
        for band in (band_a, band_b):
            oy = rng.integers(0, MARGIN + 1, n)
            ox = rng.integers(0, MARGIN + 1, n)
            out.append(pick(C.crop(x, ys + oy, xs + ox, C.TILE), band))
        return out

    def step(i):
        model.train()
        a, b = two_crops(xs_, n_sp, rng.integers(2, 15, n_sp), rng.integers(0, 2, n_sp))
        if n_ch > 0:
            ba = rng.integers(0, 13, n_ch)
            bb = (ba + rng.integers(1, 13, n_ch)) % 13  # a different S2 band
            ca, cb = two_crops(xc, n_ch, ba, bb)
            a, b = np.concatenate([a, ca]), np.concatenate([b, cb])
        va = C.jitter(C.dihedral(torch.from_numpy(a)))
        vb = C.jitter(C.dihedral(torch.from_numpy(b)))
        loss, z = model(va, vb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), C.collapse_std(z)

    tr.run(step)


def encoder_meta(stats, description, steps, elapsed) -> dict:
    return {
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "model_name": "nexttile-s1s2-perband-simsiam",
        "nexttile_role": "encoder",
        "description": description,
        "licence": C.SEN1FLOODS11_LICENCE + "; " + C.CHINCO_LICENCE + "; weights: same terms as the project",
        "source": f"NextTile onnx/s1s2_perband/train.py (cross-modal single-band SimSiam, {steps} steps of 256 pairs, "
        f"{elapsed:.0f}s CPU)",
        "input_name": "image",
        "embedding_output": "embedding",
        "embedding_dim": str(WIDTHS[-1]),
        "per_band": "true",
        "input_bands": BANDS,
        "modalities": {"s1": C.S1_BANDS, "s2": C.S2_BANDS},
        "band_fusion": "mean",
        "default_bands": DEFAULT_BANDS,
        **C.encoder_meta_tail(stats),
    }


def per_band_embed(sess, x: np.ndarray, bands) -> dict:
    return {b: C.ort_embed(sess, np.ascontiguousarray(x[:, BANDS.index(b) : BANDS.index(b) + 1])) for b in bands}


def cmd_export(args) -> None:
    import onnx
    import torch

    torch.set_num_threads(args.threads)
    stats = json.loads((args.work / "stats.json").read_text())
    Encoder = C.build_encoder_cls()
    SimSiam = C.build_simsiam_cls()
    enc = Encoder(1, WIDTHS)
    model = SimSiam(enc, enc.dim)
    st = torch.load(args.work / "simsiam.pt", weights_only=False)
    model.load_state_dict(st["model"])
    steps, elapsed = st["step"], st.get("elapsed", 0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    enc_path = args.out / "encoder.onnx"
    C.export_encoder(model.encoder.eval(), 1, enc_path)
    C.write_meta(
        enc_path,
        encoder_meta(
            stats,
            f"Single-band encoder (1 channel, any S1 or S2 band, each standardised with its own stats), tiny ResNet "
            f"(stride 8, 128-d), cross-modal SimSiam (random S2 band vs random S1 band) {steps} steps on unlabelled "
            f"Sen1Floods11 Spain_7370579 (+ Chincoteague S2 band pairs); fuse bands by mean",
            steps,
            elapsed,
        ),
    )
    torch.manual_seed(args.seed + 1000)
    rnd = Encoder(1, WIDTHS).eval()
    rnd_path = args.work / "random_encoder.onnx"
    C.export_encoder(rnd, 1, rnd_path)
    C.write_meta(rnd_path, encoder_meta(stats, "RANDOM weights baseline (not trained)", 0, 0))

    t, x = C.spain_s1s2_inputs(args.cache, stats)
    pb = per_band_embed(C.ort_session(enc_path, args.threads), x, DEFAULT_BANDS)
    e = np.mean([pb[b] for b in DEFAULT_BANDS], axis=0)
    head, mu, sigma = C.train_head(e, t["y"], args.seed)
    hm = C.onnx_head(head, mu, sigma)
    C.set_meta(
        hm,
        C.head_meta(
            enc_path,
            "nexttile-s1s2-perband-water-head",
            "MC-dropout MLP head (128 -> 64 -> 2, dropout 0.3), land/water, on the MEAN of the per-band embeddings "
            f"over {DEFAULT_BANDS}; trained on all 256 tiles (32 px) of Sen1Floods11 Spain_7370579",
            {"input_bands": DEFAULT_BANDS, "band_fusion": "mean", "default_bands": DEFAULT_BANDS},
        ),
    )
    onnx.save(hm, str(args.out / "head.onnx"))
    for p in (enc_path, args.out / "head.onnx"):
        print(f"wrote {p} ({p.stat().st_size} B)")


def cmd_evaluate(args) -> None:
    t0 = time.time()
    stats = json.loads((args.work / "stats.json").read_text())
    t, x = C.spain_s1s2_inputs(args.cache, stats)
    enc = C.ort_session(args.out / "encoder.onnx", args.threads)
    rnd = C.ort_session(args.work / "random_encoder.onnx", args.threads)
    want = sorted(set(PROBE_BANDS) | set(DEFAULT_BANDS), key=BANDS.index)
    pe, pr = per_band_embed(enc, x, want), per_band_embed(rnd, x, want)
    mean_of = lambda d, bs: np.mean([d[b] for b in bs], axis=0)  # noqa: E731
    s2_rgbn = ["B02", "B03", "B04", "B08"]
    di = [BANDS.index(b) for b in DEFAULT_BANDS]
    feats = {
        "encoder_mean_default_bands": mean_of(pe, DEFAULT_BANDS),
        "random_encoder_mean_default_bands": mean_of(pr, DEFAULT_BANDS),
        "band_means_default_bands": C.band_mean_feats(x[:, di]),
        "encoder_mean_VV_VH": mean_of(pe, C.S1_BANDS),
        "random_encoder_mean_VV_VH": mean_of(pr, C.S1_BANDS),
        "encoder_mean_B02_B03_B04_B08": mean_of(pe, s2_rgbn),
        "random_encoder_mean_B02_B03_B04_B08": mean_of(pr, s2_rgbn),
    }
    for b in PROBE_BANDS:
        feats[f"single_{b}_encoder"] = pe[b]
        feats[f"single_{b}_random_encoder"] = pr[b]
        feats[f"single_{b}_band_mean"] = C.band_mean_feats(x[:, BANDS.index(b) : BANDS.index(b) + 1])
    res = {
        "model": NAME,
        "data": "Sen1Floods11 Spain_7370579 S1Hand + S2Hand, LabelHand. NOTE: the encoder was pre-trained "
        "(self-supervised, labels unread) on this same chip",
        "tiles": C.tile_summary(t),
        "standardisation": "Spain per-band stats from the encoder metadata (raw units), each band fed alone",
        "default_bands": DEFAULT_BANDS,
        "probes": C.PROBES_NOTE,
        "holdout": C.holdout(
            feats, t["y"], t["col"], t["ncols"], args.seed, args.work,
            head_for=("encoder_mean_default_bands", "random_encoder_mean_default_bands"),
        ),
    }
    C.finish_metrics(res, args.out / "head.onnx", feats["encoder_mean_default_bands"], t["y"], t0, args.out)


def main(argv):
    C.ssl_main(
        argv, __doc__, NAME, HERE, {"pretrain": cmd_pretrain, "export": cmd_export, "evaluate": cmd_evaluate},
        steps=700, lr=0.05,
        extra=lambda p: p.add_argument("--chinco-frac", type=float, default=0.25),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
