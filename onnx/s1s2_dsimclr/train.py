#!/usr/bin/env python3
"""Sentinel-1 + Sentinel-2 D-SimCLR encoder (seed 002) + water/land MC-dropout head for NextTile.

D-SimCLR (Scheibenreif, Mommert & Borth): SimCLR where the two views of a place are its two
modalities. An S1 branch (VV, VH -> 24/48/64 channels, 64-d) and an S2 branch (13 bands -> the
same shape, 64-d), each with its own projector (64 -> 128 -> 64); NT-Xent (temperature 0.2) over
the 2N projections of a batch, the S1 and S2 crops of the same place being the positive pair and
every other crop of the batch (either modality) a negative. Crops (32 x 32) and flips / 90-degree
rotations are applied identically to both modalities; a light, independent band-wise jitter is
added to each. Trained on the Sen1Floods11 Spain_7370579 chip (S1Hand + S2Hand, labels not read).

Exported as ONE ONNX encoder taking 15 channels in the order VV, VH, B01..B12 (metadata
`modalities`), output = concatenation [S1 branch 64-d, S2 branch 64-d] = 128-d.

    python onnx/s1s2_dsimclr/train.py pretrain --steps 800
    python onnx/s1s2_dsimclr/train.py export
    python onnx/s1s2_dsimclr/train.py evaluate
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

NAME = "s1s2_dsimclr"
WIDTHS = (24, 48, 64)
BANDS = C.S1_BANDS + C.S2_BANDS
TEMPERATURE = 0.2


def build():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    Encoder = C.build_encoder_cls()

    class Fused(nn.Module):
        """15 channels (VV, VH, B01..B12) -> concat(S1 branch, S2 branch)."""

        def __init__(self):
            super().__init__()
            self.s1 = Encoder(2, WIDTHS)
            self.s2 = Encoder(13, WIDTHS)

        def forward(self, x):
            return torch.cat([self.s1(x[:, :2]), self.s2(x[:, 2:])], dim=1)

    def projector():
        d = WIDTHS[-1]
        return nn.Sequential(nn.Linear(d, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64))

    class DSimCLR(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Fused()
            self.p1 = projector()
            self.p2 = projector()

        def forward(self, s1, s2):
            z1 = F.normalize(self.p1(self.encoder.s1(s1)), dim=1)
            z2 = F.normalize(self.p2(self.encoder.s2(s2)), dim=1)
            n = z1.shape[0]
            z = torch.cat([z1, z2], 0)
            sim = z @ z.t() / TEMPERATURE
            sim.fill_diagonal_(float("-inf"))
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
            loss = F.cross_entropy(sim, target)
            return loss, z1.detach()

    return Fused, DSimCLR


def cmd_pretrain(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    d = C.load_spain(args.cache)
    stats = C.stats_spain(d)
    (args.work / "stats.json").write_text(json.dumps(stats))
    x = C.stack_spain(d, stats)
    _, h, w = x.shape
    _, DSimCLR = build()
    model = DSimCLR()
    print(f"encoder params {C.n_params(model.encoder)}, total {C.n_params(model)}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    tr = C.Trainer(model, opt, args.lr, args.steps, args.work, "dsimclr", args.restart, args.max_minutes, args.stop_at)

    def step(i):
        model.train()
        ys, xs = C.corners(rng, args.batch, h, w, C.TILE)
        v = C.dihedral(torch.from_numpy(C.crop(x, ys, xs, C.TILE)))  # identical geometry for both
        s1 = C.jitter(v[:, :2], 0.05, 0.05, 0.02)
        s2 = C.jitter(v[:, 2:], 0.05, 0.05, 0.02)
        loss, z = model(s1, s2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), C.collapse_std(z)

    tr.run(step)


def encoder_meta(stats, description, steps, elapsed) -> dict:
    return {
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "model_name": "nexttile-s1s2-dsimclr",
        "nexttile_role": "encoder",
        "description": description,
        "licence": C.SEN1FLOODS11_LICENCE + "; weights: same terms as the project",
        "source": f"NextTile onnx/s1s2_dsimclr/train.py (D-SimCLR, {steps} steps of 256 S1/S2 crop pairs, {elapsed:.0f}s CPU)",
        "input_name": "image",
        "embedding_output": "embedding",
        "embedding_dim": str(2 * WIDTHS[-1]),
        "input_bands": BANDS,
        "modalities": {"s1": C.S1_BANDS, "s2": C.S2_BANDS},
        **C.encoder_meta_tail(stats),
    }


def cmd_export(args) -> None:
    import onnx
    import torch

    torch.set_num_threads(args.threads)
    stats = json.loads((args.work / "stats.json").read_text())
    Fused, DSimCLR = build()
    model = DSimCLR()
    st = torch.load(args.work / "dsimclr.pt", weights_only=False)
    model.load_state_dict(st["model"])
    steps, elapsed = st["step"], st.get("elapsed", 0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    enc_path = args.out / "encoder.onnx"
    C.export_encoder(model.encoder.eval(), 15, enc_path)
    C.write_meta(
        enc_path,
        encoder_meta(
            stats,
            f"S1+S2 D-SimCLR: S1 branch (VV,VH) and S2 branch (13 bands), tiny ResNets (stride 8); "
            f"embedding = concat[S1 64-d, S2 64-d]; {steps} steps on the unlabelled Sen1Floods11 Spain_7370579 chip",
            steps,
            elapsed,
        ),
    )
    torch.manual_seed(args.seed + 1000)
    rnd = Fused().eval()
    rnd_path = args.work / "random_encoder.onnx"
    C.export_encoder(rnd, 15, rnd_path)
    C.write_meta(rnd_path, encoder_meta(stats, "RANDOM weights baseline (not trained)", 0, 0))

    t, x = C.spain_s1s2_inputs(args.cache, stats)
    e = C.ort_embed(C.ort_session(enc_path, args.threads), x)
    head, mu, sigma = C.train_head(e, t["y"], args.seed)
    hm = C.onnx_head(head, mu, sigma)
    C.set_meta(
        hm,
        C.head_meta(
            enc_path,
            "nexttile-s1s2-dsimclr-water-head",
            "MC-dropout MLP head (128 -> 64 -> 2, dropout 0.3), land/water, trained on all 256 tiles (32 px) of "
            "Sen1Floods11 Spain_7370579 (S1+S2) with this folder's encoder.onnx",
            {"input_bands": BANDS, "modalities": {"s1": C.S1_BANDS, "s2": C.S2_BANDS}},
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
    e, r = C.ort_embed(enc, x), C.ort_embed(rnd, x)
    d = WIDTHS[-1]
    feats = {
        "encoder": e,
        "encoder_s1_half": e[:, :d],
        "encoder_s2_half": e[:, d:],
        "random_encoder": r,
        "random_encoder_s1_half": r[:, :d],
        "band_means_15": C.band_mean_feats(x),
        "band_means_s1": C.band_mean_feats(x[:, :2]),
    }
    res = {
        "model": NAME,
        "data": "Sen1Floods11 Spain_7370579 S1Hand + S2Hand, LabelHand. NOTE: the encoder was pre-trained "
        "(self-supervised, labels unread) on this same chip",
        "tiles": C.tile_summary(t),
        "standardisation": "Spain per-band stats from the encoder metadata (raw units)",
        "probes": C.PROBES_NOTE,
        "holdout": C.holdout(feats, t["y"], t["col"], t["ncols"], args.seed, args.work, head_for=("encoder", "random_encoder")),
    }
    C.finish_metrics(res, args.out / "head.onnx", e, t["y"], t0, args.out)


def main(argv):
    C.ssl_main(
        argv, __doc__, NAME, HERE, {"pretrain": cmd_pretrain, "export": cmd_export, "evaluate": cmd_evaluate},
        steps=800, lr=1e-3,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
