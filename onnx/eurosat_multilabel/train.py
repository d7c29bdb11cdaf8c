#!/usr/bin/env python3
"""Multi-label EuroSAT head with an LL loss-prediction output, for NextTile.

Head on the frozen `onnx/eurosat_simsiam/encoder.onnx` (256-d embedding):

    embedding -> standardise (folded into fc1) -> Linear(256->256) -> ReLU = h
    h -> MC dropout 0.3 (switched by bool input `mc_dropout`) -> Linear(256->10) -> Sigmoid = "probs"   N x 10
    h -> Linear(256->32) -> ReLU -> Linear(32->1)                                        = "predicted_loss" N x 1

The second branch is the "learning loss" (LL) module of Yoo & Kweon (CVPR 2019)
as used for multi-label active learning in seed 004 (Moellenbrok, Sumbul &
Demir): hidden features -> global average pooling -> FC -> ReLU -> scalar,
trained jointly with the classifier by the pairwise margin ranking loss
(eq. 2, xi = 1) against the detached per-sample BCE (eq. 1), total loss
eq. 3: mean BCE + lambda * 2/|B| * sum over the |B|/2 pairs. Its output ranks
tiles by expected loss (eq. 4: Unc_LL = predicted loss). The hidden features
here are the head's 256-d hidden layer; the encoder already global-average-
pools its last feature map, so GAP is the identity at this point.

Training data are *derived* multi-label tiles at the encoder's native
64 x 64 px / 10 m: a 2 x 2 mosaic of 32 x 32 crops from four EuroSAT-RGB
images (no resampling), holding k in {1, 2, 3} distinct classes, each class in
>= 1 cell; the label set is those classes. Train tiles come only from the
train split's images, val tiles from val, test tiles from test.

Sub-commands (in order; caches under --work):

    python train.py data       # build derived tiles, embed them with encoder.onnx (onnxruntime)
    python train.py train      # joint BCE + margin-ranking training (torch)
    python train.py export     # hand-built ONNX head + NextTile metadata
    python train.py evaluate   # all numbers through head.onnx with onnxruntime -> metrics.json
    python train.py all        # the four in order

`data` needs numpy, pillow, onnx, onnxruntime; `train`/`export` need torch;
`evaluate` needs numpy, onnxruntime, scikit-learn (and torch for the
random-init baseline). Nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from ssl_common import set_meta, sha256  # noqa: E402

REPO = HERE.parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eurosat-rgb.tar.gz"
DEFAULT_WORK = REPO / ".cache" / "eurosat_multilabel"
ENCODER = REPO / "onnx" / "eurosat_simsiam" / "encoder.onnx"

# Same order as onnx/eurosat_simsiam/head.onnx `class_names`.
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

HIDDEN = 256
LOSS_HIDDEN = 32
DROPOUT = 0.3
LOGIT_CLIP = 15.0  # sigmoid(+-15) = 1 - 3.1e-7 / 3.1e-7
MARGIN = 1.0  # xi, seed 004 / Yoo & Kweon
TILE = 64
CELL = 32


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
    """(uint8 N x 64 x 64 x 3, int64 labels) for one split of splits.csv, cached as .npz."""
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
            xs.append(np.asarray(Image.open(root / row["path"]).convert("RGB"), dtype=np.uint8))
            ys.append(CLASSES.index(row["class"]))
    x, y = np.stack(xs), np.asarray(ys, dtype=np.int64)
    np.savez(npz, x=x, y=y)
    return x, y


def make_tiles(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n derived 64x64 tiles: 2x2 cells of 32x32 crops (random offset, native
    10 m pixels) from 4 distinct source images; k ~ U{1,2,3} distinct classes,
    each in >= 1 cell. Returns (uint8 tiles n x 64 x 64 x 3, float32 multi-hot
    n x 10, int64 cell classes n x 4)."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in range(len(CLASSES))]
    tiles = np.zeros((n, TILE, TILE, 3), dtype=np.uint8)
    labels = np.zeros((n, len(CLASSES)), dtype=np.float32)
    cells = np.zeros((n, 4), dtype=np.int64)
    for t in range(n):
        k = int(rng.integers(1, 4))
        cls = rng.choice(len(CLASSES), size=k, replace=False)
        assign = np.concatenate([cls, rng.choice(cls, size=4 - k)])
        rng.shuffle(assign)
        used: set[int] = set()
        for j, c in enumerate(assign):
            while True:
                src = int(rng.choice(by_class[c]))
                if src not in used:
                    used.add(src)
                    break
            oy, ox = rng.integers(0, TILE - CELL + 1, size=2)
            r, q = divmod(j, 2)
            tiles[t, r * CELL : (r + 1) * CELL, q * CELL : (q + 1) * CELL] = x[src, oy : oy + CELL, ox : ox + CELL]
        labels[t, cls] = 1.0
        cells[t] = assign
    return tiles, labels, cells


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def encoder_preprocess(meta: dict) -> tuple[float, list | None, np.ndarray, np.ndarray]:
    """Preprocessing from encoder.onnx metadata, for 8-bit EuroSAT-RGB JPEG pixels.

    The metadata's input_scale (1/2800) maps Sentinel-2 L1C reflectance x 10000
    onto EuroSAT-RGB's 0..1 range; EuroSAT-RGB pixels *are* that range already
    after /255, which is exactly how eurosat_simsiam/train.py trained and
    evaluates the encoder (`/ 255.0`, then standardisation). So for JPEG input:
    x = raw / 255, clip to input_clip, then (x - mean_b) / std_b with the
    metadata's standardization_* (bands B04, B03, B02 = JPEG R, G, B)."""
    assert json.loads(meta["input_bands"]) == ["B04", "B03", "B02"], meta["input_bands"]
    clip = json.loads(meta["input_clip"]) if "input_clip" in meta else None
    mean = np.array(json.loads(meta["standardization_mean"]), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(meta["standardization_std"]), dtype=np.float32).reshape(1, 3, 1, 1)
    return 1.0 / 255.0, clip, mean, std


def embed(enc, tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    meta = enc.get_modelmeta().custom_metadata_map
    scale, clip, mean, std = encoder_preprocess(meta)
    inp, out_name = meta.get("input_name", "image"), meta.get("embedding_output", "embedding")
    out = []
    for i in range(0, len(tiles), batch):
        b = tiles[i : i + batch].transpose(0, 3, 1, 2).astype(np.float32) * scale
        if clip is not None:
            b = np.clip(b, clip[0], clip[1])
        out.append(enc.run([out_name], {inp: (b - mean) / std})[0])
    return np.concatenate(out)


def cmd_data(args) -> None:
    t0 = time.time()
    root = extract(args.data, args.work)
    enc = ort_session(args.encoder, args.threads)
    sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test}
    summary = {}
    for i, (split, n) in enumerate(sizes.items()):
        x, y = load_split(root, args.work, split)
        tiles, labels, cells = make_tiles(x, y, n, args.seed + 1000 * (i + 1))
        e = embed(enc, tiles)
        np.savez(args.work / f"tiles_{split}.npz", tiles=tiles, labels=labels, cells=cells, emb=e)
        k = labels.sum(1)
        summary[split] = {
            "tiles": n,
            "source_images": int(len(y)),
            "k_counts": {str(j): int((k == j).sum()) for j in (1, 2, 3)},
            "positives_per_class": labels.sum(0).astype(int).tolist(),
        }
        print(f"{split}: {n} tiles from {len(y)} images, k counts {summary[split]['k_counts']}", flush=True)
    summary["seconds"] = round(time.time() - t0, 1)
    summary["encoder_sha256"] = sha256(args.encoder)
    (args.work / "data_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"data done in {summary['seconds']} s", flush=True)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------


def build_head(dim: int):
    import torch.nn as nn
    import torch.nn.functional as F

    class MultiLabelLLHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(dim, HIDDEN)
            self.drop = nn.Dropout(DROPOUT)
            self.fc2 = nn.Linear(HIDDEN, len(CLASSES))
            self.lp1 = nn.Linear(HIDDEN, LOSS_HIDDEN)
            self.lp2 = nn.Linear(LOSS_HIDDEN, 1)

        def forward(self, e, detach_ll: bool = False):
            h = F.relu(self.fc1(e))
            logits = self.fc2(self.drop(h))
            hl = h.detach() if detach_ll else h
            pred_loss = self.lp2(F.relu(self.lp1(hl)))
            return logits, pred_loss

    return MultiLabelLLHead()


def ranking_loss(pred, target, margin: float = MARGIN):
    """Seed 004 eq. 2-3 (Yoo & Kweon's LossPredLoss): the batch is split into
    |B|/2 disjoint random pairs (i, i + |B|/2); per pair
    max(0, -sign(l_i - l_k) * (lhat_i - lhat_k) + xi); mean over pairs
    (= 2/|B| * sum). target (the true per-sample BCE) is detached."""
    import torch

    n = (len(pred) // 2) * 2
    pred, target = pred[:n].view(-1), target[:n].detach()
    half = n // 2
    dp = pred[:half] - pred[half:]
    dt = target[:half] - target[half:]
    return torch.clamp(-torch.sign(dt) * dp + margin, min=0).mean()


def load_tiles(work: Path, split: str):
    z = np.load(work / f"tiles_{split}.npz")
    return z["emb"].astype(np.float32), z["labels"].astype(np.float32)


def per_sample_bce_np(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1)


def cmd_train(args) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    etr, ytr = load_tiles(args.work, "train")
    eva, yva = load_tiles(args.work, "val")
    mu, sigma = etr.mean(0), etr.std(0) + 1e-6
    a = torch.from_numpy((etr - mu) / sigma)
    av = torch.from_numpy((eva - mu) / sigma)
    yt = torch.from_numpy(ytr)
    head = build_head(etr.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-4)
    stop_ep = int(round(args.epochs * args.ll_stop_frac))
    log = []
    t0 = time.time()
    for ep in range(args.epochs):
        head.train()
        perm = torch.randperm(len(a))
        lb, lr_ = [], []
        for i in range(0, len(a) - 1, args.batch):
            idx = perm[i : i + args.batch]
            if len(idx) < 2:
                continue
            logits, pl = head(a[idx], detach_ll=ep >= stop_ep)
            bce = F.binary_cross_entropy_with_logits(logits, yt[idx], reduction="none").sum(1)
            rank = ranking_loss(pl, bce)
            loss = bce.mean() + args.ll_lambda * rank
            opt.zero_grad()
            loss.backward()
            opt.step()
            lb.append(bce.mean().item())
            lr_.append(rank.item())
        head.eval()
        with torch.no_grad():
            lv, plv = head(av)
            pv = torch.sigmoid(lv).numpy()
        bv = per_sample_bce_np(pv, yva)
        rho = spearman(plv.numpy().ravel(), bv)
        f1 = micro_f1(pv >= 0.5, yva)
        log.append([ep + 1, float(np.mean(lb)), float(np.mean(lr_)), float(bv.mean()), rho, f1])
        if ep % 5 == 4 or ep == args.epochs - 1:
            print(
                f"epoch {ep + 1}/{args.epochs} train bce {np.mean(lb):.4f} rank {np.mean(lr_):.4f} | "
                f"val bce {bv.mean():.4f} spearman {rho:.3f} microF1 {f1:.3f}"
                + (" (LL grad into fc1 stopped)" if ep >= stop_ep else ""),
                flush=True,
            )
    wall = time.time() - t0
    torch.save(
        {"head": head.state_dict(), "mu": mu, "sigma": sigma, "epochs": args.epochs, "wall_s": wall,
         "ll_lambda": args.ll_lambda, "ll_stop_epoch": stop_ep, "lr": args.lr, "batch": args.batch},
        args.work / "head.pt",
    )
    with open(args.work / "train_log.csv", "w") as f:
        f.write("epoch,train_bce,train_rank,val_bce,val_spearman,val_micro_f1\n")
        for r in log:
            f.write(",".join(f"{v:.5f}" if isinstance(v, float) else str(v) for v in r) + "\n")
    print(f"training wall time {wall:.1f} s", flush=True)


# --------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------


def onnx_head(head, mu: np.ndarray, sigma: np.ndarray):
    """Hand-built graph; standardisation folded into fc1; MC dropout written
    out exactly as eurosat_simsiam/train.py `onnx_head` (RandomUniformLike ->
    GreaterOrEqual -> Cast -> Mul -> scale, Where(mc_dropout, dropped, plain)),
    because onnxruntime's optimiser deletes Dropout nodes. The loss branch
    reads the pre-dropout hidden features, so predicted_loss is deterministic
    whatever mc_dropout says."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def arr(t):
        return t.detach().numpy().astype(np.float64)

    w1, b1 = arr(head.fc1.weight), arr(head.fc1.bias)
    w1f = w1 / sigma[None, :]
    b1f = b1 - (w1f * mu[None, :]).sum(axis=1)
    f32 = lambda v, name: numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), name)  # noqa: E731
    inits = [
        f32(w1f.T, "fc1.W"),
        f32(b1f, "fc1.b"),
        f32(arr(head.fc2.weight).T, "fc2.W"),
        f32(arr(head.fc2.bias), "fc2.b"),
        f32(arr(head.lp1.weight).T, "loss_fc1.W"),
        f32(arr(head.lp1.bias), "loss_fc1.b"),
        f32(arr(head.lp2.weight).T, "loss_fc2.W"),
        f32(arr(head.lp2.bias), "loss_fc2.b"),
        f32(np.array(DROPOUT), "dropout.ratio"),
        f32(np.array(1.0 / (1.0 - DROPOUT)), "dropout.scale"),
        f32(np.array(-LOGIT_CLIP), "logit.lo"),
        f32(np.array(LOGIT_CLIP), "logit.hi"),
        numpy_helper.from_array(np.array(False), "mc_dropout"),
    ]
    nodes = [
        helper.make_node("MatMul", ["embedding", "fc1.W"], ["h0"]),
        helper.make_node("Add", ["h0", "fc1.b"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("RandomUniformLike", ["h2"], ["u"], dtype=TensorProto.FLOAT, low=0.0, high=1.0),
        helper.make_node("GreaterOrEqual", ["u", "dropout.ratio"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["keepf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h2", "keepf"], ["h2m"]),
        helper.make_node("Mul", ["h2m", "dropout.scale"], ["h2d"]),
        helper.make_node("Where", ["mc_dropout", "h2d", "h2"], ["h3"], name="mc_dropout_switch"),
        helper.make_node("MatMul", ["h3", "fc2.W"], ["l0"]),
        helper.make_node("Add", ["l0", "fc2.b"], ["logits"]),
        # logits clipped to +-LOGIT_CLIP so probs stay strictly inside (0, 1) in float32
        # (onnxruntime's Sigmoid returns exactly 0 / 1 beyond about -16 / +17; consumers take log(p), log(1-p))
        helper.make_node("Clip", ["logits", "logit.lo", "logit.hi"], ["logits_c"]),
        helper.make_node("Sigmoid", ["logits_c"], ["probs"]),
        # LL loss-prediction module (seed 004 eq. 2-4) on the hidden features
        helper.make_node("MatMul", ["h2", "loss_fc1.W"], ["q0"]),
        helper.make_node("Add", ["q0", "loss_fc1.b"], ["q1"]),
        helper.make_node("Relu", ["q1"], ["q2"]),
        helper.make_node("MatMul", ["q2", "loss_fc2.W"], ["q3"]),
        helper.make_node("Add", ["q3", "loss_fc2.b"], ["predicted_loss"]),
    ]
    d = w1.shape[1]
    graph = helper.make_graph(
        nodes,
        "nexttile_multilabel_ll_head",
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d]),
            helper.make_tensor_value_info("mc_dropout", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(CLASSES)]),
            helper.make_tensor_value_info("predicted_loss", TensorProto.FLOAT, ["batch", 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def head_metadata(args, state: dict) -> dict:
    import onnx

    enc_meta = {p.key: p.value for p in onnx.load(str(args.encoder), load_external_data=False).metadata_props}
    keep = ["resolution", "tiles_overlap", "input_bands", "input_scale", "input_offset", "input_clip",
            "standardization_mean", "standardization_std", "nexttile_contract"]
    meta = {k: enc_meta[k] for k in keep if k in enc_meta}
    meta.update(
        {
            "model_type": json.dumps("Classifier"),  # Deepness reads it with json.loads
            "model_name": "nexttile-eurosat-rgb-multilabel-ll-head",
            "nexttile_role": "head",
            "class_names": {str(i): c for i, c in enumerate(CLASSES)},
            "multi_label": "true",
            "embedding_input": "embedding",
            "probabilities_output": "probs",
            "loss_output": "predicted_loss",
            "mc_dropout_input": "mc_dropout",
            "encoder_sha256": sha256(args.encoder),
            "tiles_size": str(TILE),
            "description": (
                f"Multi-label (sigmoid) MLP head ({HIDDEN} hidden, MC dropout {DROPOUT}) on the "
                "eurosat_simsiam encoder, with an LL loss-prediction output (seed 004 / Yoo & Kweon 2019: "
                f"hidden -> FC {LOSS_HIDDEN} -> ReLU -> FC 1, margin ranking loss xi=1, lambda={state['ll_lambda']}). "
                "predicted_loss is a ranking score (higher = larger expected BCE), not a calibrated loss. "
                f"Trained {state['epochs']} epochs on {args.n_train} derived 2x2-mosaic multi-label tiles "
                "(64 px, 10 m) from the EuroSAT-RGB train split."
            ),
            "licence": "EuroSAT data: MIT (Helber et al. 2019); head weights: same terms as the NextTile repository",
            "source": "onnx/eurosat_multilabel/train.py (NextTile)",
        }
    )
    return meta


def cmd_export(args) -> None:
    import onnx
    import torch

    state = torch.load(args.work / "head.pt", weights_only=False)
    etr, _ = load_tiles(args.work, "train")
    head = build_head(etr.shape[1])
    head.load_state_dict(state["head"])
    head.eval()
    m = onnx_head(head, state["mu"].astype(np.float64), state["sigma"].astype(np.float64))
    set_meta(m, head_metadata(args, state))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "head.onnx"
    onnx.save(m, str(path))
    # parity with torch (deterministic branch)
    sess = ort_session(path, args.threads)
    ete, _ = load_tiles(args.work, "test")
    p, q = sess.run(["probs", "predicted_loss"], {"embedding": ete[:512], "mc_dropout": np.array(False)})
    with torch.no_grad():
        lt, qt = head(torch.from_numpy((ete[:512] - state["mu"]) / state["sigma"]))
    print(f"torch/onnx max |dprobs| {np.abs(p - torch.sigmoid(lt).numpy()).max():.2e}, "
          f"max |dloss| {np.abs(q - qt.numpy()).max():.2e}")
    print(f"wrote {path} ({path.stat().st_size} B)")


# --------------------------------------------------------------------------
# evaluation (through onnxruntime)
# --------------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def micro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y.astype(int), pred.astype(int), average="micro", zero_division=0))


def quality(probs: np.ndarray, ploss: np.ndarray | None, y: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, f1_score

    pred = (probs >= 0.5).astype(int)
    yi = y.astype(int)
    true_loss = per_sample_bce_np(probs, y)
    n10 = max(1, len(y) // 10)
    top_true = set(np.argsort(-true_loss)[:n10].tolist())
    ent = -(probs * np.log(np.clip(probs, 1e-7, 1)) + (1 - probs) * np.log(np.clip(1 - probs, 1e-7, 1))).sum(1)
    top_ent = set(np.argsort(-ent)[:n10].tolist())
    out = {
        "micro_f1@0.5": float(f1_score(yi, pred, average="micro", zero_division=0)),
        "macro_f1@0.5": float(f1_score(yi, pred, average="macro", zero_division=0)),
        "samples_f1@0.5": float(f1_score(yi, pred, average="samples", zero_division=0)),
        "exact_match@0.5": float((pred == yi).all(1).mean()),
        "macro_ap": float(average_precision_score(yi, probs, average="macro")),
        "mean_true_bce": float(true_loss.mean()),
    }
    if ploss is not None:
        top_pred = set(np.argsort(-ploss)[:n10].tolist())
        out["spearman_predicted_loss_vs_true_bce"] = spearman(ploss, true_loss)
        out["top10pct_overlap_predicted_vs_true_loss"] = len(top_pred & top_true) / n10
        out["spearman_sigmoid_entropy_vs_true_bce"] = spearman(ent, true_loss)
        out["top10pct_overlap_sigmoid_entropy_vs_true_loss"] = len(top_ent & top_true) / n10
        out["spearman_predicted_loss_vs_sigmoid_entropy"] = spearman(ploss, ent)
    return out


def cmd_evaluate(args) -> None:
    import onnx

    t0 = time.time()
    path = args.out / "head.onnx"
    sess = ort_session(path, args.threads)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["encoder_sha256"] == sha256(args.encoder), "head was trained on another encoder"
    ete, yte = load_tiles(args.work, "test")
    det, pl = sess.run(["probs", "predicted_loss"], {"embedding": ete, "mc_dropout": np.array(False)})
    det_again = sess.run(["probs"], {"embedding": ete, "mc_dropout": np.array(False)})[0]
    mc_runs = [sess.run(["probs", "predicted_loss"], {"embedding": ete, "mc_dropout": np.array(True)}) for _ in range(20)]
    mc = np.stack([r[0] for r in mc_runs])
    no_flag = sess.run(["probs"], {"embedding": ete})[0]  # mc_dropout omitted: default false
    sums = det.sum(1)
    checks = {
        "opset": int(onnx.load(str(path)).opset_import[0].version),
        "ir_version": int(onnx.load(str(path)).ir_version),
        "probs_shape": list(det.shape),
        "predicted_loss_shape": list(pl.shape),
        "probs_min": float(det.min()),
        "probs_max": float(det.max()),
        "probs_strictly_in_0_1": bool((det > 0).all() and (det < 1).all()),
        "row_sum_mean": float(sums.mean()),
        "row_sum_min": float(sums.min()),
        "row_sum_max": float(sums.max()),
        "rows_summing_to_1_within_1e-3": int((np.abs(sums - 1) < 1e-3).sum()),
        "mc_false_two_passes_max_abs_diff": float(np.abs(det - det_again).max()),
        "mc_omitted_equals_false_max_abs_diff": float(np.abs(det - no_flag).max()),
        "mc_true_two_passes_max_abs_diff": float(np.abs(mc[0] - mc[1]).max()),
        "mc_true_pass_vs_false_mean_abs_diff": float(np.abs(mc[0] - det).mean()),
        "predicted_loss_same_under_mc_max_abs_diff": float(max(np.abs(r[1] - pl).max() for r in mc_runs)),
        "predicted_loss_min": float(pl.min()),
        "predicted_loss_max": float(pl.max()),
    }
    res = {
        "test_tiles": int(len(yte)),
        "checks": checks,
        "trained_deterministic": quality(det, pl.ravel(), yte),
        "trained_mc20_mean": quality(mc.mean(0), None, yte),
    }
    # random-init baseline: same architecture and export path, untrained weights
    try:
        import torch

        torch.manual_seed(args.seed)
        etr, _ = load_tiles(args.work, "train")
        h0 = build_head(etr.shape[1]).eval()
        m0 = onnx_head(h0, etr.mean(0).astype(np.float64), etr.std(0).astype(np.float64) + 1e-6)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        s0 = ort.InferenceSession(m0.SerializeToString(), so, providers=["CPUExecutionProvider"])
        p0, q0 = s0.run(["probs", "predicted_loss"], {"embedding": ete, "mc_dropout": np.array(False)})
        res["random_init_baseline"] = quality(p0, q0.ravel(), yte)
    except ImportError:
        res["random_init_baseline"] = "skipped (torch not installed)"
    # label prior baseline: every tile gets the train-set class frequencies
    _, ytr = load_tiles(args.work, "train")
    prior = np.tile(ytr.mean(0), (len(yte), 1))
    res["class_prior_baseline"] = quality(prior, None, yte)
    # per class-count (k) breakdown of the trained head
    kk = yte.sum(1)
    res["trained_by_k"] = {
        str(int(k)): {
            "tiles": int((kk == k).sum()),
            "micro_f1@0.5": micro_f1(det[kk == k] >= 0.5, yte[kk == k]),
            "mean_true_bce": float(per_sample_bce_np(det[kk == k], yte[kk == k]).mean()),
            "mean_predicted_loss": float(pl[kk == k].mean()),
            "spearman_predicted_loss_vs_true_bce": spearman(
                pl[kk == k].ravel(), per_sample_bce_np(det[kk == k], yte[kk == k])
            ),
        }
        for k in (1, 2, 3)
    }
    res["evaluate_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=2))
    (args.out / "metrics.json").write_text(json.dumps(res, indent=2) + "\n")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["data", "train", "export", "evaluate", "all"])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--encoder", type=Path, default=ENCODER)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ll-lambda", type=float, default=1.0)
    p.add_argument("--ll-stop-frac", type=float, default=0.6,
                   help="stop the LL branch's gradient into fc1 after this fraction of epochs (seed 004: 60 of 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cmds = {"data": cmd_data, "train": cmd_train, "export": cmd_export, "evaluate": cmd_evaluate}
    for c in (list(cmds) if args.command == "all" else [args.command]):
        cmds[c](args)


if __name__ == "__main__":
    main(sys.argv[1:])
