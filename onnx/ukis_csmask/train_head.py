#!/usr/bin/env python3
"""Train and export head.onnx: a land/water MC-dropout head on the derived
ukis-csmask encoder (encoder.onnx, built by build.sh).

Data: the Sen1Floods11 chip Spain_7370579 (hand labels), 64 px crops on a
stride-16 grid (841 crops), each also in its 8 dihedral orientations (flips x
90-degree rotations, embedded separately) for training. Crop label: water when
more than half of its valid label pixels are water.

Head: embedding (744-d from the multiscale encoder.onnx that build.sh ships;
any encoder's embedding_dim works; standardised, folded into fc1) -> 256 -> ReLU -> MC
dropout 0.3 -> 2 -> softmax, class-weighted cross-entropy, AdamW, 60 epochs,
exported like onnx/eurosat_simsiam/train.py `onnx_head` (RandomUniformLike
mask selected by Where(mc_dropout, ...)).

The shipped head is fitted on ALL crops of the chip (there is no other labelled
Sentinel-2 water data here); evaluate.py measures the same recipe with a
spatial hold-out (`heldout_head_eval`).

    python train_head.py [--encoder encoder.onnx] [--out head.onnx]

Needs torch, numpy, onnx, onnxruntime and GDAL (osgeo or gdal_translate).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from evaluate import (  # noqa: E402
    DEFAULT_CHIP,
    SEED,
    crop_grid,
    crops,
    embed,
    load_chip,
    session,
    split_masks,
    water_fraction,
)

sys.path.insert(0, str(HERE.parent))
from ssl_common import onnx_head, set_meta  # noqa: E402

CLASSES = ["land", "water"]
HIDDEN = 256
DROPOUT = 0.3
EPOCHS = 60


def dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of N x C x H x W crops."""
    out = []
    for k in range(4):
        r = np.rot90(x, k, axes=(2, 3))
        out += [r, r[:, :, :, ::-1]]
    return [np.ascontiguousarray(v) for v in out]


def embed_aug(sess, xc: np.ndarray) -> np.ndarray:
    """8 x N x D embeddings of the dihedral variants."""
    return np.stack([embed(sess, v) for v in dihedral(xc)])


def train(e: np.ndarray, y: np.ndarray, seed: int = SEED):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mu = e.mean(axis=0)
    sigma = e.std(axis=0) + 1e-6

    class Head(nn.Module):
        def __init__(self, d: int):
            super().__init__()
            self.fc1 = nn.Linear(d, HIDDEN)
            self.drop = nn.Dropout(DROPOUT)
            self.fc2 = nn.Linear(HIDDEN, len(CLASSES))

        def forward(self, v):
            return self.fc2(self.drop(F.relu(self.fc1(v))))

    et = torch.from_numpy((e - mu) / sigma).float()
    yt = torch.from_numpy(y.astype(np.int64))
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    wts = torch.tensor(counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32)
    head = Head(e.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(EPOCHS):
        head.train()
        perm = torch.randperm(len(et))
        for i in range(0, len(et), 256):
            idx = perm[i : i + 256]
            loss = F.cross_entropy(head(et[idx]), yt[idx], weight=wts)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head, mu, sigma


def head_probs(model, e: np.ndarray, mc: int = 0) -> np.ndarray:
    s = session(model)
    if mc == 0:
        return s.run(["probs"], {"embedding": e, "mc_dropout": np.array(False)})[0]
    return np.mean([s.run(["probs"], {"embedding": e, "mc_dropout": np.array(True)})[0] for _ in range(mc)], axis=0)


def heldout_head_eval(emb: np.ndarray, y: np.ndarray, pos: np.ndarray, h: int, w: int, encoder: Path, xc: np.ndarray) -> dict:
    """Train the head recipe on one half (dihedral-augmented), test the exported ONNX
    head on the other half's plain crops (deterministic and MC-20 mean)."""
    from sklearn.metrics import balanced_accuracy_score

    eaug = embed_aug(session(str(encoder)), xc)  # 8 x N x D
    out = {}
    for split, (tr, te) in split_masks(pos, h, w).items():
        etr = eaug[:, tr].reshape(-1, eaug.shape[-1])
        ytr = np.tile(y[tr], 8)
        head, mu, sigma = train(etr, ytr)
        m = onnx_head(head, mu, sigma)
        det = head_probs(m, emb[te]).argmax(1)
        mc = head_probs(m, emb[te], mc=20)
        out[split] = {
            "acc": round(float((det == y[te]).mean()), 4),
            "balanced_acc": round(float(balanced_accuracy_score(y[te], det)), 4),
            "mc20_acc": round(float((mc.argmax(1) == y[te]).mean()), 4),
            "mc20_mean_predictive_entropy": round(float(-(mc * np.log(mc + 1e-12)).sum(1).mean()), 4),
        }
        print("head", split, out[split], flush=True)
    out["mean_acc"] = round(float(np.mean([v["acc"] for v in out.values()])), 4)
    out["mean_balanced_acc"] = round(float(np.mean([v["balanced_acc"] for k, v in out.items() if isinstance(v, dict)])), 4)
    return out


def main(argv: list[str]) -> None:
    import onnx

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", type=Path, default=HERE / "encoder.onnx")
    p.add_argument("--chip", type=Path, default=DEFAULT_CHIP)
    p.add_argument("--out", type=Path, default=HERE / "head.onnx")
    args = p.parse_args(argv)

    enc = session(str(args.encoder))
    emeta = enc.get_modelmeta().custom_metadata_map
    x, lab = load_chip(args.chip, emeta)
    _, h, w = x.shape
    pos = crop_grid(h, w)
    xc = crops(x, pos)
    frac, _ = water_fraction(lab, pos)
    y = (frac > 0.5).astype(int)
    eaug = embed_aug(enc, xc)
    head, mu, sigma = train(eaug.reshape(-1, eaug.shape[-1]), np.tile(y, 8))
    hm = onnx_head(head, mu, sigma)
    enc_hash = hashlib.sha256(args.encoder.read_bytes()).hexdigest()
    common = {k: emeta[k] for k in ("resolution", "tiles_size", "tiles_overlap", "input_bands", "input_scale", "input_offset", "standardization_mean", "standardization_std") if k in emeta}
    set_meta(
        hm,
        {
            **common,
            "nexttile_contract": "1",
            "model_type": json.dumps("Classifier"),  # Deepness reads it with json.loads
            "model_name": "ukis-csmask-encoder-sen1floods11-water-head",
            "nexttile_role": "head",
            "class_names": CLASSES,
            "multi_label": "false",
            "embedding_input": "embedding",
            "probabilities_output": "probs",
            "mc_dropout_input": "mc_dropout",
            "encoder_sha256": enc_hash,
            "licence": "head weights: this repository; labels: Sen1Floods11 hand labels (Bonafilia et al., CVPR Workshops 2020; cite it); encoder: Apache-2.0 (ukis-csmask 1.0.0 weights, DLR)",
            "source": "onnx/ukis_csmask/train_head.py on Sen1Floods11 Spain_7370579 hand labels (841 64-px crops, stride 16, x8 dihedral)",
            "description": (
                f"land/water MLP head ({HIDDEN} hidden, MC dropout {DROPOUT}) on the {emeta.get('embedding_dim')}-d "
                f"embedding of {emeta.get('model_name')} (encoder_sha256); trained on ONE Sen1Floods11 chip (Spain_7370579): a demo head, not a general water classifier"
            ),
        },
    )
    data = hm.SerializeToString(deterministic=True)
    args.out.write_bytes(data)
    pr = head_probs(hm, eaug[0])
    print(f"wrote {args.out} ({len(data)} B) sha256 {hashlib.sha256(data).hexdigest()}; train-fit acc {(pr.argmax(1) == y).mean():.4f} on {len(y)} crops ({y.sum()} water)")


if __name__ == "__main__":
    main(sys.argv[1:])
