#!/usr/bin/env python3
"""13-band Sentinel-2 encoder (SimSiam) + water/land MC-dropout head for NextTile.

Encoder: the tiny ResNet of onnx/ssl_common.py (13 -> 32/64/128 channels, total stride 8,
128-d embedding), trained self-supervised with SimSiam (Chen & He, 2021) on random
32 x 32 crops of the Chincoteague Sentinel-2 L1C scene ONLY (samples/chincoteague_s2.tif,
all 13 bands, labels never exist there). Two views of a place: two 32 x 32 crops of one
40 x 40 window (independent offsets), independent flips / 90-degree rotations and light
band-wise jitter (gain +-10 %, offset +-0.1 sd, noise 0.03 sd, in standardised units).

Head: MLP (128 -> 64 -> ReLU -> dropout 0.3 -> 2, land / water) trained on the exported
encoder's embeddings of the Sen1Floods11 Spain_7370579 chip's 32 x 32 tiles (S2 only),
so the Spain chip is unseen by the encoder. `evaluate` gives spatial hold-out numbers.

    python onnx/s2_simsiam/train.py pretrain --steps 900    # checkpoints in /tmp/ssl-work/s2_simsiam
    python onnx/s2_simsiam/train.py export                  # encoder.onnx + head.onnx (+ metadata)
    python onnx/s2_simsiam/train.py evaluate                # metrics.json, all through onnxruntime
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import ssl_common as C  # noqa: E402

NAME = "s2_simsiam"
WIDTHS = (32, 64, 128)
MARGIN = 8


def cmd_pretrain(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    raw = C.load_chinco(args.cache)
    valid = C.s2_valid(raw)
    mean, std = C.band_stats(raw, valid)
    (args.work / "stats.json").write_text(json.dumps({"mean": mean, "std": std, "source": str(C.CHINCO)}))
    x = C.standardise(raw, valid, mean, std)
    del raw, valid
    _, h, w = x.shape

    Encoder = C.build_encoder_cls()
    SimSiam = C.build_simsiam_cls()
    enc = Encoder(13, WIDTHS)
    model = SimSiam(enc, enc.dim)
    print(f"encoder params {C.n_params(enc)}, total {C.n_params(model)}", flush=True)
    lr = args.lr * args.batch / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    tr = C.Trainer(model, opt, lr, args.steps, args.work, "simsiam", args.restart, args.max_minutes, args.stop_at)

    def step(i):
        model.train()
        ys, xs = C.corners(rng, args.batch, h, w, C.TILE, MARGIN)
        views = []
        for _ in range(2):
            oy = rng.integers(0, MARGIN + 1, args.batch)
            ox = rng.integers(0, MARGIN + 1, args.batch)
            v = torch.from_numpy(C.crop(x, ys + oy, xs + ox, C.TILE))
            views.append(C.jitter(C.dihedral(v)))
        loss, z = model(*views)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), C.collapse_std(z)

    tr.run(step)


def load_encoder(args):
    import torch

    Encoder = C.build_encoder_cls()
    SimSiam = C.build_simsiam_cls()
    enc = Encoder(13, WIDTHS)
    model = SimSiam(enc, enc.dim)
    st = torch.load(args.work / "simsiam.pt", weights_only=False)
    model.load_state_dict(st["model"])
    return model.encoder.eval(), st


def encoder_meta(stats, description, steps, elapsed) -> dict:
    return {
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "model_name": "nexttile-s2-13band-simsiam",
        "nexttile_role": "encoder",
        "description": description,
        "licence": C.CHINCO_LICENCE + "; weights: same terms as the project",
        "source": f"NextTile onnx/s2_simsiam/train.py (SimSiam, {steps} steps of 256 crop pairs, {elapsed:.0f}s CPU)",
        "input_name": "image",
        "embedding_output": "embedding",
        "embedding_dim": str(WIDTHS[-1]),
        "input_bands": C.S2_BANDS,
        **C.encoder_meta_tail(stats),
    }


def spain_inputs(args, stats):
    t = C.spain_tiles(args.cache)
    x = C.std_tiles(t["s2"], t["s2"] != 0, stats["mean"], stats["std"])
    return t, x


def cmd_export(args) -> None:
    import onnx
    import torch

    torch.set_num_threads(args.threads)
    stats = json.loads((args.work / "stats.json").read_text())
    enc, st = load_encoder(args)
    steps, elapsed = st["step"], st.get("elapsed", 0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    enc_path = args.out / "encoder.onnx"
    C.export_encoder(enc, 13, enc_path)
    C.write_meta(
        enc_path,
        encoder_meta(
            stats,
            f"13-band Sentinel-2 L1C tiny ResNet (stride 8, 128-d), SimSiam {steps} steps on unlabelled Chincoteague crops",
            steps,
            elapsed,
        ),
    )
    # random-weights twin (same architecture, seed-fixed init) for the evaluation baseline
    torch.manual_seed(args.seed + 1000)
    rnd = C.build_encoder_cls()(13, WIDTHS).eval()
    rnd_path = args.work / "random_encoder.onnx"
    C.export_encoder(rnd, 13, rnd_path)
    C.write_meta(rnd_path, encoder_meta(stats, "RANDOM weights baseline (not trained)", 0, 0))

    t, x = spain_inputs(args, stats)
    e = C.ort_embed(C.ort_session(enc_path, args.threads), x)
    head, mu, sigma = C.train_head(e, t["y"], args.seed)
    hm = C.onnx_head(head, mu, sigma)
    C.set_meta(
        hm,
        C.head_meta(
            enc_path,
            "nexttile-s2-13band-water-head",
            "MC-dropout MLP head (128 -> 64 -> 2, dropout 0.3), land/water, trained on all 256 tiles (32 px) of "
            "Sen1Floods11 Spain_7370579 (S2 bands) with this folder's encoder.onnx",
            {"input_bands": C.S2_BANDS},
        ),
    )
    onnx.save(hm, str(args.out / "head.onnx"))
    for p in (enc_path, args.out / "head.onnx"):
        print(f"wrote {p} ({p.stat().st_size} B)")


def cmd_evaluate(args) -> None:
    t0 = time.time()
    stats = json.loads((args.work / "stats.json").read_text())
    t, x = spain_inputs(args, stats)
    enc = C.ort_session(args.out / "encoder.onnx", args.threads)
    rnd = C.ort_session(args.work / "random_encoder.onnx", args.threads)
    feats = {
        "encoder": C.ort_embed(enc, x),
        "random_encoder": C.ort_embed(rnd, x),
        "band_means_13": C.band_mean_feats(x),
    }
    res = {
        "model": NAME,
        "data": "Sen1Floods11 Spain_7370579 S2Hand (13 bands), LabelHand; encoder never saw this chip",
        "tiles": C.tile_summary(t),
        "standardisation": "Chincoteague per-band stats from the encoder metadata (raw units)",
        "probes": C.PROBES_NOTE,
        "holdout": C.holdout(feats, t["y"], t["col"], t["ncols"], args.seed, args.work, head_for=("encoder", "random_encoder")),
    }
    C.finish_metrics(res, args.out / "head.onnx", feats["encoder"], t["y"], t0, args.out)


def main(argv):
    C.ssl_main(
        argv, __doc__, NAME, HERE, {"pretrain": cmd_pretrain, "export": cmd_export, "evaluate": cmd_evaluate},
        steps=900, lr=0.05,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
