#!/usr/bin/env python3
"""Train, export and evaluate NextTile's demo model pair on EuroSAT-RGB.

Encoder: a small ResNet (stride-2 stem, four residual stages, global average
pool, 256-d embedding) trained self-supervised with SimSiam (Chen & He, 2021),
as used for Earth observation in seed 003 ("Self-supervised learning for
multi-modal satellite imagery: BYOL and SimSiam"): two augmented views of one
unlabelled tile, a projector, a predictor and a stop-gradient on the target
branch. Only the *train* split's pixels are used; labels are never read during
pre-training.

Head: an MLP (embedding -> 256 -> ReLU -> Dropout -> 10) trained with the
EuroSAT-RGB train labels on frozen embeddings. It is exported by hand as an
ONNX graph whose dropout (RandomUniformLike mask, inverted scaling) is switched
on by an optional boolean graph input `mc_dropout` (default false), so the same
file is a deterministic classifier for ordinary consumers and an MC-dropout
sampler for NextTile.

Sub-commands (run in order; each writes into --work, a git-ignored cache):

    python train.py pretrain --epochs 20      # SimSiam, checkpoints every epoch
    python train.py export                    # encoder.onnx + head.onnx (+ metadata)
    python train.py evaluate                  # accuracies through onnxruntime

PyTorch is needed for `pretrain` and `export` only; `evaluate` needs numpy,
pillow and onnxruntime. Nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eurosat-rgb.tar.gz"
DEFAULT_WORK = REPO / ".cache" / "eurosat_simsiam"

CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]

# EuroSAT-RGB was rendered from Sentinel-2 L1C B04/B03/B02. Measured by
# `python train.py scale` (see the model card): the scale that maps the sample
# scene's reflectance (x 10000) onto EuroSAT-RGB's 0..1 pixel range.
DEFAULT_INPUT_SCALE = 1.0 / 2800.0

EMBED_DIM = 256
HEAD_HIDDEN = 256
HEAD_DROPOUT = 0.3


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def extract(data: Path, cache: Path) -> Path:
    root = cache / "eurosat-rgb"
    if not (root / "splits.csv").exists():
        import tarfile

        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data) as tar:
            tar.extractall(cache)
    return root


def load_split(root: Path, cache: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 images N x 64 x 64 x 3, int64 labels) for one split, cached as .npz."""
    npz = cache / f"eurosat_{split}.npz"
    if npz.exists():
        z = np.load(npz)
        return z["x"], z["y"]
    from PIL import Image

    xs, ys = [], []
    with open(root / "splits.csv") as f:
        for row in csv.DictReader(f):
            if row["split"] != split:
                continue
            img = Image.open(root / row["path"]).convert("RGB")
            xs.append(np.asarray(img, dtype=np.uint8))
            ys.append(CLASSES.index(row["class"]))
    x = np.stack(xs)
    y = np.asarray(ys, dtype=np.int64)
    np.savez(npz, x=x, y=y)
    return x, y


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    f = x.astype(np.float64) / 255.0
    return f.mean(axis=(0, 1, 2)).tolist(), f.std(axis=(0, 1, 2)).tolist()


# --------------------------------------------------------------------------
# model (torch imported lazily so `evaluate` runs without it)
# --------------------------------------------------------------------------


def build_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            s = x if self.short is None else self.short(x)
            return F.relu(y + s)

    class Encoder(nn.Module):
        """64x64x3 -> 256: stride-2 stem, stages of 32/64/128/256 channels, GAP."""

        def __init__(self, width: int = 32):
            super().__init__()
            w = width
            self.stem = nn.Sequential(
                nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
            )
            self.layers = nn.Sequential(
                Block(w, w, 1),
                Block(w, 2 * w, 2),
                Block(2 * w, 4 * w, 2),
                Block(4 * w, 8 * w, 2),
            )

        def forward(self, x):
            return self.layers(self.stem(x)).mean(dim=(2, 3))

    class SimSiam(nn.Module):
        def __init__(self, enc: nn.Module, dim: int = EMBED_DIM):
            super().__init__()
            self.encoder = enc
            self.projector = nn.Sequential(
                nn.Linear(dim, 512, bias=False),
                nn.BatchNorm1d(512),
                nn.ReLU(),
                nn.Linear(512, 256, bias=False),
                nn.BatchNorm1d(256, affine=False),
            )
            self.predictor = nn.Sequential(
                nn.Linear(256, 64, bias=False),
                nn.BatchNorm1d(64),
                nn.ReLU(),
                nn.Linear(64, 256),
            )

        def forward(self, a, b):
            za = self.projector(self.encoder(a))
            zb = self.projector(self.encoder(b))
            pa, pb = self.predictor(za), self.predictor(zb)
            loss = -(
                F.cosine_similarity(pa, zb.detach(), dim=-1).mean()
                + F.cosine_similarity(pb, za.detach(), dim=-1).mean()
            ) / 2
            return loss, za.detach()

    class Head(nn.Module):
        def __init__(self, dim: int = EMBED_DIM, classes: int = len(CLASSES)):
            super().__init__()
            self.fc1 = nn.Linear(dim, HEAD_HIDDEN)
            self.drop = nn.Dropout(HEAD_DROPOUT)
            self.fc2 = nn.Linear(HEAD_HIDDEN, classes)

        def forward(self, e):
            return self.fc2(self.drop(F.relu(self.fc1(e))))

    return Encoder, SimSiam, Head


def augment(x, mean, std):
    """Batched SimSiam views: random resized crop (scale 0.3-1), flips, 90-degree
    rotations, colour jitter (brightness/contrast/saturation, mild: colour is
    what separates several EuroSAT classes), then standardisation. x: float
    N x 3 x 64 x 64 in 0..1."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    dev = x.device
    scale = torch.empty(n, device=dev).uniform_(0.3, 1.0)
    ratio = torch.exp(torch.empty(n, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3)))
    sw = torch.sqrt(scale * ratio).clamp(max=1.0)
    sh = torch.sqrt(scale / ratio).clamp(max=1.0)
    tx = (torch.rand(n, device=dev) * 2 - 1) * (1 - sw)
    ty = (torch.rand(n, device=dev) * 2 - 1) * (1 - sh)
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    k = torch.randint(0, 4, (n,), device=dev).float() * (math.pi / 2)
    cos, sin = torch.cos(k), torch.sin(k)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sw * cos * flip
    theta[:, 0, 1] = -sh * sin
    theta[:, 1, 0] = sw * sin * flip
    theta[:, 1, 1] = sh * cos
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter with probability 0.8
    jit = (torch.rand(n, 1, 1, 1, device=dev) < 0.8).float()
    b = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * 0.3
    c = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * 0.3
    s = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * 0.2
    gray = v.mean(dim=1, keepdim=True)
    vj = v * b
    m = vj.mean(dim=(1, 2, 3), keepdim=True)
    vj = (vj - m) * c + m
    g = vj.mean(dim=1, keepdim=True)
    vj = (vj - g) * s + g
    v = jit * vj + (1 - jit) * v
    # grayscale with probability 0.1
    gmask = (torch.rand(n, 1, 1, 1, device=dev) < 0.1).float()
    v = gmask * gray.expand_as(v) + (1 - gmask) * v
    v = v.clamp(0, 1)
    return (v - mean) / std


# --------------------------------------------------------------------------
# sub-commands
# --------------------------------------------------------------------------


def cmd_pretrain(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    root = extract(args.data, args.work)
    x, _ = load_split(root, args.work, "train")  # labels ignored here
    mean_l, std_l = channel_stats(x)
    (args.work / "stats.json").write_text(json.dumps({"mean": mean_l, "std": std_l}))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # uint8
    mean = torch.tensor(mean_l).view(1, 3, 1, 1)
    std = torch.tensor(std_l).view(1, 3, 1, 1)

    Encoder, SimSiam, _ = build_modules()
    model = SimSiam(Encoder())
    steps_per_epoch = len(xt) // args.batch
    total = steps_per_epoch * args.epochs
    lr = args.lr * args.batch / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    ckpt = args.work / "simsiam.pt"
    start_epoch = 0
    if ckpt.exists() and not args.restart:
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch = state["epoch"]
        print(f"resumed from epoch {start_epoch}", flush=True)
    log = open(args.work / "pretrain_log.csv", "a")
    t0 = time.time()
    for epoch in range(start_epoch, args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        losses, stds = [], []
        te = time.time()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for grp in opt.param_groups:
                grp["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            batch = xt[perm[i * args.batch : (i + 1) * args.batch]].float() / 255.0
            loss, z = model(augment(batch, mean, std), augment(batch, mean, std))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            # collapse monitor (SimSiam paper, Fig. 2): std of l2-normalised output
            stds.append((z / z.norm(dim=1, keepdim=True)).std(dim=0).mean().item())
            if i % 20 == 0:
                rate = (i + 1) * args.batch / (time.time() - te)
                print(
                    f"epoch {epoch + 1}/{args.epochs} step {i}/{steps_per_epoch} "
                    f"loss {np.mean(losses[-20:]):.4f} zstd {np.mean(stds[-20:]):.4f} "
                    f"{rate:.0f} img/s",
                    flush=True,
                )
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1}, ckpt)
        log.write(f"{epoch + 1},{np.mean(losses):.5f},{np.mean(stds):.5f},{time.time() - te:.1f}\n")
        log.flush()
        print(f"epoch {epoch + 1} done in {time.time() - te:.0f}s, loss {np.mean(losses):.4f}", flush=True)
    print(f"pretraining wall time this run: {time.time() - t0:.0f}s", flush=True)


def embed_numpy(encoder, x: np.ndarray, mean, std, batch: int = 512) -> np.ndarray:
    import torch

    out = []
    encoder.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            b = torch.from_numpy(x[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(encoder((b - mean) / std).numpy())
    return np.concatenate(out)


def train_head(e: np.ndarray, y: np.ndarray, seed: int, epochs: int = 60):
    """Train the MLP head on standardised embeddings; returns (head, mu, sigma)."""
    import torch
    import torch.nn.functional as F

    _, _, Head = build_modules()
    torch.manual_seed(seed)
    mu = e.mean(axis=0)
    sigma = e.std(axis=0) + 1e-6
    et = torch.from_numpy((e - mu) / sigma).float()
    yt = torch.from_numpy(y)
    head = Head(e.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    for ep in range(epochs):
        head.train()
        perm = torch.randperm(len(et))
        for i in range(0, len(et), 256):
            idx = perm[i : i + 256]
            loss = F.cross_entropy(head(et[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head, mu, sigma


def onnx_head(head, mu: np.ndarray, sigma: np.ndarray):
    """Hand-built ONNX head. The embedding standardisation is folded into fc1.
    Dropout's training_mode comes from the optional input `mc_dropout`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = head.fc1.weight.detach().numpy().astype(np.float64)  # H x D
    b1 = head.fc1.bias.detach().numpy().astype(np.float64)
    w1f = w1 / sigma[None, :]
    b1f = b1 - (w1f * mu[None, :]).sum(axis=1)
    w2 = head.fc2.weight.detach().numpy()
    b2 = head.fc2.bias.detach().numpy()
    inits = [
        numpy_helper.from_array(w1f.T.astype(np.float32), "fc1.W"),
        numpy_helper.from_array(b1f.astype(np.float32), "fc1.b"),
        numpy_helper.from_array(w2.T.astype(np.float32).copy(), "fc2.W"),
        numpy_helper.from_array(b2.astype(np.float32), "fc2.b"),
        numpy_helper.from_array(np.array(HEAD_DROPOUT, dtype=np.float32), "dropout.ratio"),
        numpy_helper.from_array(np.array(1.0 / (1.0 - HEAD_DROPOUT), dtype=np.float32), "dropout.scale"),
        numpy_helper.from_array(np.array(False), "mc_dropout"),
    ]
    nodes = [
        helper.make_node("MatMul", ["embedding", "fc1.W"], ["h0"]),
        helper.make_node("Add", ["h0", "fc1.b"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        # MC dropout written out (RandomUniformLike -> mask -> inverted-dropout
        # scaling), selected by Where(mc_dropout, ...). A plain Dropout node is
        # removed by onnxruntime's graph optimiser (EliminateDropout) at the
        # default optimisation level even with training_mode fed as an input;
        # these ops are never folded, so MC passes stay random everywhere.
        helper.make_node("RandomUniformLike", ["h2"], ["u"], dtype=TensorProto.FLOAT, low=0.0, high=1.0),
        helper.make_node("GreaterOrEqual", ["u", "dropout.ratio"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["keepf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h2", "keepf"], ["h2m"]),
        helper.make_node("Mul", ["h2m", "dropout.scale"], ["h2d"]),
        helper.make_node("Where", ["mc_dropout", "h2d", "h2"], ["h3"], name="mc_dropout_switch"),
        helper.make_node("MatMul", ["h3", "fc2.W"], ["l0"]),
        helper.make_node("Add", ["l0", "fc2.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    d = w1.shape[1]
    graph = helper.make_graph(
        nodes,
        "nexttile_mc_head",
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d]),
            helper.make_tensor_value_info("mc_dropout", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_meta(model, meta: dict) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v)


def cmd_export(args) -> None:
    import onnx
    import torch

    torch.set_num_threads(args.threads)
    root = extract(args.data, args.work)
    stats = json.loads((args.work / "stats.json").read_text())
    mean = torch.tensor(stats["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(stats["std"]).view(1, 3, 1, 1)
    Encoder, SimSiam, _ = build_modules()
    model = SimSiam(Encoder())
    state = torch.load(args.work / "simsiam.pt")
    model.load_state_dict(state["model"])
    enc = model.encoder.eval()
    epochs = state["epoch"]

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    enc_path = out / "encoder.onnx"
    dummy = torch.zeros(1, 3, 64, 64)
    torch.onnx.export(
        enc,
        (dummy,),
        str(enc_path),
        input_names=["image"],
        output_names=["embedding"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(enc_path))
    common = {
        "model_name": "nexttile-eurosat-rgb-simsiam",
        "resolution": "1000",  # Deepness: cm per pixel
        "tiles_size": "64",
        "tiles_overlap": "0",
        "input_bands": ["B04", "B03", "B02"],
        "input_scale": repr(args.input_scale),
        "input_offset": "0",
        "input_clip": [0.0, 1.0],
        "standardization_mean": stats["mean"],
        "standardization_std": stats["std"],
        "nexttile_contract": "1",
    }
    set_meta(
        m,
        {
            **common,
            "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
            "nexttile_role": "encoder",
            "input_name": "image",
            "embedding_output": "embedding",
            "embedding_dim": str(EMBED_DIM),
            "input_stride": "16",  # stem + three stride-2 stages
            "description": f"SimSiam ResNet-style encoder, {epochs} epochs on unlabelled EuroSAT-RGB train split",
        },
    )
    onnx.save(m, str(enc_path))
    enc_hash = sha256(enc_path)

    # head on the exported encoder's embeddings
    x, y = load_split(root, args.work, "train")
    e = embed_numpy(enc, x, mean, std)
    np.save(args.work / "emb_train.npy", e)
    head, mu, sigma = train_head(e, y, args.seed)
    hm = onnx_head(head, mu, sigma)
    set_meta(
        hm,
        {
            **common,
            "model_type": json.dumps("Classifier"),  # Deepness reads it with json.loads
            "model_name": "nexttile-eurosat-rgb-mc-head",
            "nexttile_role": "head",
            "class_names": {str(i): c for i, c in enumerate(CLASSES)},
            "multi_label": "false",
            "embedding_input": "embedding",
            "probabilities_output": "probs",
            "mc_dropout_input": "mc_dropout",
            "encoder_sha256": enc_hash,
            "description": "MLP head (256 hidden, dropout 0.3) on the SimSiam encoder, EuroSAT-RGB train labels",
        },
    )
    onnx.save(hm, str(out / "head.onnx"))
    print(f"wrote {enc_path} ({enc_path.stat().st_size} B) and {out / 'head.onnx'}")


def logistic_probe(etr, ytr, ete, yte, seed: int) -> float:
    """Multinomial logistic regression (L2, full-batch L-BFGS) on standardised embeddings."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    mu, sd = etr.mean(0), etr.std(0) + 1e-6
    a = torch.from_numpy((etr - mu) / sd).float()
    b = torch.from_numpy((ete - mu) / sd).float()
    yt = torch.from_numpy(ytr)
    w = torch.zeros(a.shape[1], len(CLASSES), requires_grad=True)
    c = torch.zeros(len(CLASSES), requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + c, yt) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + c).argmax(1).numpy() == yte).mean())


def knn_probe(etr, ytr, ete, yte, k: int = 20) -> float:
    a = etr / np.linalg.norm(etr, axis=1, keepdims=True)
    b = ete / np.linalg.norm(ete, axis=1, keepdims=True)
    correct = 0
    for i in range(0, len(b), 512):
        sim = b[i : i + 512] @ a.T
        idx = np.argpartition(-sim, k, axis=1)[:, :k]
        votes = np.zeros((len(idx), len(CLASSES)))
        for j in range(k):
            np.add.at(votes, (np.arange(len(idx)), ytr[idx[:, j]]), np.exp(sim[np.arange(len(idx)), idx[:, j]] / 0.07))
        correct += int((votes.argmax(1) == yte[i : i + 512]).sum())
    return correct / len(b)


def cmd_evaluate(args) -> None:
    """All numbers go through the exported ONNX files with onnxruntime."""
    import onnxruntime as ort

    root = extract(args.data, args.work)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    enc = ort.InferenceSession(str(args.out / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(args.out / "head.onnx"), so, providers=["CPUExecutionProvider"])
    meta = enc.get_modelmeta().custom_metadata_map
    mean = np.array(json.loads(meta["standardization_mean"]), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(meta["standardization_std"]), dtype=np.float32).reshape(1, 3, 1, 1)

    def embed(x):
        out = []
        for i in range(0, len(x), 256):
            b = x[i : i + 256].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            out.append(enc.run(["embedding"], {"image": (b - mean) / std})[0])
        return np.concatenate(out)

    t0 = time.time()
    xtr, ytr = load_split(root, args.work, "train")
    xte, yte = load_split(root, args.work, "test")
    etr, ete = embed(xtr), embed(xte)
    t_embed = time.time() - t0

    det = head.run(["probs"], {"embedding": ete, "mc_dropout": np.array(False)})[0]
    mc = np.mean(
        [head.run(["probs"], {"embedding": ete, "mc_dropout": np.array(True)})[0] for _ in range(20)], axis=0
    )
    res = {
        "test_images": int(len(yte)),
        "head_on_encoder_deterministic": float((det.argmax(1) == yte).mean()),
        "head_on_encoder_mc20_mean": float((mc.argmax(1) == yte).mean()),
        "knn20_all_train": knn_probe(etr, ytr, ete, yte),
        "linear_probe_all_train": logistic_probe(etr, ytr, ete, yte, args.seed),
    }
    rng = np.random.default_rng(args.seed)
    few = []
    for s in range(5):
        idx = rng.choice(len(ytr), 189, replace=False)
        few.append(logistic_probe(etr[idx], ytr[idx], ete, yte, args.seed + s))
    res["linear_probe_189_labels_mean_of_5"] = float(np.mean(few))
    res["linear_probe_189_labels_std_of_5"] = float(np.std(few))
    res["embed_seconds_train_plus_test"] = round(t_embed, 1)
    print(json.dumps(res, indent=2))
    (args.out / "metrics.json").write_text(json.dumps(res, indent=2) + "\n")


def cmd_scale(args) -> None:
    """Compare EuroSAT-RGB pixel percentiles with a Sentinel-2 GeoTIFF's B04/B03/B02
    to pick input_scale (reflectance x 10000 -> 0..1)."""
    from osgeo import gdal

    root = extract(args.data, args.work)
    x, _ = load_split(root, args.work, "train")
    ds = gdal.Open(str(args.scene))
    idx = {ds.GetRasterBand(i).GetDescription(): i for i in range(1, ds.RasterCount + 1)}
    for q in (50, 90, 99):
        e = np.percentile(x.reshape(-1, 3), q, axis=0) / 255.0
        s = [np.percentile(ds.GetRasterBand(idx[b]).ReadAsArray(), q) for b in ("B04", "B03", "B02")]
        print(f"p{q}: eurosat {np.round(e, 3)} scene {np.round(s, 0)} ratio scene/eurosat {np.round(np.array(s) / e, 0)}")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["pretrain", "export", "evaluate", "scale"])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--restart", action="store_true")
    p.add_argument("--input-scale", type=float, default=DEFAULT_INPUT_SCALE)
    p.add_argument("--scene", type=Path, default=REPO / "samples" / "chincoteague_s2.tif")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    {"pretrain": cmd_pretrain, "export": cmd_export, "evaluate": cmd_evaluate, "scale": cmd_scale}[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
