#!/usr/bin/env python3
"""Build NextTile's label-free Random Convolutional Features encoder for EuroSAT-RGB.

RCF / MOSAIKS (Rolf et al., "A generalizable and accessible approach to machine
learning with global satellite imagery", Nature Communications 12, 4392 (2021),
doi:10.1038/s41467-021-24638-z): K random 3 x 3 x 3 patches cut from unlabelled
images, ZCA-whitened, used as convolution filters; each filter response z gives
two features, mean(ReLU(z - b)) and mean(ReLU(-z - b)) over the tile, so a
tile becomes a 2K-vector. No training, no labels.

What this script does (deterministic: same EuroSAT folder -> byte-identical
encoder.onnx and head.onnx):

1. Reads splits.csv. Rows of split `val` are dropped on reading and their images
   are never opened. The validation fold is carved from `train`: per class, the
   paths sorted by sha256("nexttile-validation-fold:" + path) (lowercase hex),
   the first int(n * 0.2 + 0.5) of each class; the rest of `train` is the pool.
2. Preprocesses exactly as the model contract does on the host (the same
   metadata as onnx/eurosat_simsiam/encoder.onnx): x = clip(pixel / 255, 0, 1)
   (EuroSAT-RGB pixels are L1C B04/B03/B02 already scaled; on a scene the host
   applies input_scale = 1/2800 and input_clip [0, 1]), then (x - mean) / std per
   channel. The encoder graph therefore starts at the standardised input, like
   the SimSiam one.
3. ZCA: mean mu and covariance S of 200,000 random 3 x 3 x 3 patches of pool
   images; W = U diag(1 / sqrt(lambda + eps)) U^T with eps = eps_rel * mean(lambda).
4. Filters: K_max = max(--k-grid) further random pool patches p_k (fixed seed;
   the K = 512 variant uses the first 512 of the same draw), f_k = W (p_k - mu),
   normalised to unit length, so z_k = f_k . W (x - mu) has about unit variance
   on pool patches and the ReLU threshold b is in whitened standard deviations.
   Folded into one Conv: weight W f_k (C, kh, kw order), bias -(W f_k) . mu.
5. Graph: Conv(2K filters [+w; -w], biases [c - b; -c - b], 3 x 3, valid)
   -> Relu (= concat(ReLU(z - b), ReLU(-z - b))) -> GlobalAveragePool -> Flatten
   -> Sub(pool feature mean) -> Div(pool feature std) -> embedding N x 2K.
6. Search on the validation fold (sklearn LogisticRegression, C = 1, on features
   standardised with pool statistics): stage 1 eps_rel in --eps-grid at
   (K = min(--k-grid), b = 1); stage 2 K x b at the chosen eps. Per variant: probe
   on all pool labels, and on 189 and 576 random pool labels (5 draws each, the
   same draws for every feature set). Selection score (fixed before looking):
   0.5 * acc@189 + 0.3 * acc@576 + 0.2 * acc@all, ties to the smaller K.
   The same probes are run on onnx/eurosat_simsiam/encoder.onnx embeddings and
   on the concatenation [SimSiam || RCF].
7. Exports the chosen encoder, computes the final numbers on `test` through the
   exported file with onnxruntime (probes fitted on the pool), trains the
   MC-dropout head (numpy, all pool labels) and exports it in the form of
   onnx/eurosat_simsiam/head.onnx, checks the encoder against a plain numpy
   implementation, and writes metrics.json.

    /tmp/rcfvenv/bin/python onnx/rcf_eurosat/build.py [/root/cache/eurosat-rgb]

Needs numpy, pillow, onnx, onnxruntime, scikit-learn. ~20 min on 2 CPU cores.

Additive options (defaults build the above unchanged): --stride-grid (Conv stride), --search grid
(every eps x (stride, K) x b; --pairs, --eligible cost rule, --scene-max-ratio scene rule, --only to
rebuild one variant), --model-name, --head-meta KEY=VALUE, --encoder-meta KEY=VALUE. onnx/rcf_fast/README.md has the command.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_DATA = Path("/root/cache/eurosat-rgb")
DEFAULT_SIMSIAM = REPO / "onnx" / "eurosat_simsiam" / "encoder.onnx"

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
FOLD_SALT = "nexttile-validation-fold:"
FOLD_FRACTION = 0.2

# The contract of onnx/eurosat_simsiam/encoder.onnx, copied (not read from that file, so
# this build does not change when that model is retrained): B04/B03/B02, L1C reflectance
# x 10000 scaled by 1/2800 and clipped to [0, 1], then the EuroSAT-RGB train-split channel
# statistics. The whitening below absorbs any per-channel affine map, so these numbers only
# have to match what the host does, and sharing them lets one standardised batch feed both.
BANDS = ["B04", "B03", "B02"]
INPUT_SCALE = "0.00035714285714285714"  # repr(1 / 2800), as in eurosat_simsiam
CHANNEL_MEAN = [0.3445392343688706, 0.38043774943031305, 0.4079323908835384]
CHANNEL_STD = [0.20288082443619498, 0.13688746854978684, 0.11553528701574106]
TILE = 64
PATCH = 3

SEED = 0
N_WHITEN = 200_000
STD_FLOOR_REL = 1e-2  # feature std floor, relative to the median feature std
LABEL_BUDGETS = (189, 576)
FEW_DRAWS = 5
PROBE_C = 1.0

HEAD_HIDDEN = 256
HEAD_DROPOUT = 0.3
HEAD_EPOCHS = 60
HEAD_BATCH = 256
HEAD_LR = 1e-3
HEAD_WD = 1e-4

OPSET = 17
IR_VERSION = 8
PRODUCER = "nexttile onnx/rcf_eurosat/build.py"


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def fold_key(path: str) -> str:
    return hashlib.sha256((FOLD_SALT + path).encode("utf-8")).hexdigest()


def read_splits(root: Path) -> dict:
    """pool / fold / test rows as (path, class index). `val` rows are dropped here."""
    train, test = [], []
    with open(root / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "val":
                continue  # never used, not even opened
            item = (row["path"], CLASSES.index(row["class"]))
            if row["split"] == "train":
                train.append(item)
            elif row["split"] == "test":
                test.append(item)
            else:
                raise ValueError(f"unknown split {row['split']!r}")
    fold = set()
    for c in range(len(CLASSES)):
        paths = sorted((p for p, y in train if y == c), key=fold_key)
        fold.update(paths[: int(len(paths) * FOLD_FRACTION + 0.5)])
    return {
        "pool": [r for r in train if r[0] not in fold],
        "fold": [r for r in train if r[0] in fold],
        "test": test,
    }


def load_images(root: Path, rows) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    x = np.empty((len(rows), TILE, TILE, 3), dtype=np.uint8)
    for i, (p, _) in enumerate(rows):
        with Image.open(root / p) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        assert a.shape == (TILE, TILE, 3), (p, a.shape)
        x[i] = a
    return x, np.array([y for _, y in rows], dtype=np.int64)


def standardise(x: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W, as the host does: clip(v, 0, 1), (v - mean) / std."""
    m = np.array(CHANNEL_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.array(CHANNEL_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    v = np.clip(x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0), 0.0, 1.0)
    return np.ascontiguousarray((v - m) / s)


# JPEG's full-range YCbCr (ITU-R BT.601, JFIF), for the chroma stage below.
YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def chroma420(s: np.ndarray) -> np.ndarray:
    """The encoder's optional first stage (--chroma 420), numpy reference of the ONNX nodes of
    chroma420_nodes: standardised N x 3 x H x W (H, W even) -> RGB in [0, 1] -> YCbCr -> Cb, Cr
    averaged over 2 x 2 blocks and upsampled x 2 linearly (half-pixel centres, edges clamped:
    libjpeg's 4:2:0 subsampling and "fancy" upsampling) -> RGB, clipped to [0, 1] -> standardised.

    Why: EuroSAT-RGB's JPEGs are quality 100 but 4:2:0 (PIL: every quantisation table entry 1,
    get_sampling 2), so their colour has half the resolution of their brightness. Uncompressed
    Sentinel-2 scenes have full-resolution colour; RCF's whitened 3 x 3 filters amplify exactly
    that fine chroma, so a head trained on EuroSAT features misreads real scenes (onnx/rcf_fast:
    Highway on 659 of 900 tiles of the coastal sample). Applying the subsampling inside the
    encoder makes a scene look like the training JPEGs and leaves the JPEGs almost unchanged."""
    m = np.array(CHANNEL_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    sd = np.array(CHANNEL_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    v = s.astype(np.float32) * sd + m
    ycc = np.einsum("ij,njhw->nihw", YCC.astype(np.float32), v)
    c = ycc[:, 1:]
    n, _, h, w = c.shape
    p = c.reshape(n, 2, h // 2, 2, w // 2, 2).mean((3, 5))

    def up(a, axis):
        size = a.shape[axis]
        pos = (np.arange(2 * size) + 0.5) / 2 - 0.5
        lo = np.floor(pos)
        f = (pos - lo).astype(np.float32)
        i0 = np.clip(lo.astype(int), 0, size - 1)
        i1 = np.clip(lo.astype(int) + 1, 0, size - 1)
        shape = [1] * a.ndim
        shape[axis] = -1
        return np.take(a, i0, axis=axis) * (1 - f.reshape(shape)) + np.take(a, i1, axis=axis) * f.reshape(shape)

    ycc2 = np.concatenate([ycc[:, :1], up(up(p, 2), 3)], axis=1)
    rgb = np.einsum("ij,njhw->nihw", np.linalg.inv(YCC).astype(np.float32), ycc2)
    return ((np.clip(rgb, 0.0, 1.0) - m) / sd).astype(np.float32)


def chroma420_nodes(src: str, dst: str):
    """ONNX nodes and initialisers of chroma420 (same steps, float32): src -> dst."""
    from onnx import helper, numpy_helper

    m = np.array(CHANNEL_MEAN, dtype=np.float64)
    sd = np.array(CHANNEL_STD, dtype=np.float64)
    to_ycc = YCC * sd[None, :]  # ycc = YCC (s * sd + m)
    to_ycc_b = YCC @ m
    to_rgb = np.linalg.inv(YCC)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(to_ycc.astype(f32).reshape(3, 3, 1, 1), "chroma.to_ycc.weight"),
        numpy_helper.from_array(to_ycc_b.astype(f32), "chroma.to_ycc.bias"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "chroma.y_start"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "chroma.y_end"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "chroma.c_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "chroma.axis"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=f32), "chroma.scales"),
        numpy_helper.from_array(to_rgb.astype(f32).reshape(3, 3, 1, 1), "chroma.to_rgb.weight"),
        numpy_helper.from_array(np.zeros(3, dtype=f32), "chroma.to_rgb.bias"),
        numpy_helper.from_array(np.array(0.0, dtype=f32), "chroma.lo"),
        numpy_helper.from_array(np.array(1.0, dtype=f32), "chroma.hi"),
        numpy_helper.from_array(np.diag(1.0 / sd).astype(f32).reshape(3, 3, 1, 1), "chroma.std.weight"),
        numpy_helper.from_array((-m / sd).astype(f32), "chroma.std.bias"),
    ]
    nodes = [
        helper.make_node("Conv", [src, "chroma.to_ycc.weight", "chroma.to_ycc.bias"], ["chroma_ycc"], name="chroma_to_ycc",
                         kernel_shape=[1, 1]),
        helper.make_node("Slice", ["chroma_ycc", "chroma.y_start", "chroma.y_end", "chroma.axis"], ["chroma_y"], name="chroma_y"),
        helper.make_node("Slice", ["chroma_ycc", "chroma.y_end", "chroma.c_end", "chroma.axis"], ["chroma_c"], name="chroma_c"),
        helper.make_node("AveragePool", ["chroma_c"], ["chroma_c2"], name="chroma_pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["chroma_c2", "", "chroma.scales"], ["chroma_cup"], name="chroma_up", mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Concat", ["chroma_y", "chroma_cup"], ["chroma_ycc2"], name="chroma_concat", axis=1),
        helper.make_node("Conv", ["chroma_ycc2", "chroma.to_rgb.weight", "chroma.to_rgb.bias"], ["chroma_rgb"],
                         name="chroma_to_rgb", kernel_shape=[1, 1]),
        helper.make_node("Clip", ["chroma_rgb", "chroma.lo", "chroma.hi"], ["chroma_rgb01"], name="chroma_clip"),
        helper.make_node("Conv", ["chroma_rgb01", "chroma.std.weight", "chroma.std.bias"], [dst], name="chroma_standardise",
                         kernel_shape=[1, 1]),
    ]
    return nodes, inits


# --------------------------------------------------------------------------
# patches, whitening, filters
# --------------------------------------------------------------------------


def sample_patches(s: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random 3 x 3 patches of the standardised images s (N x C x H x W) -> n x (C*3*3), C-major."""
    i = rng.integers(0, s.shape[0], n)
    yy = rng.integers(0, s.shape[2] - PATCH + 1, n)
    xx = rng.integers(0, s.shape[3] - PATCH + 1, n)
    d = np.arange(PATCH)
    c = np.arange(s.shape[1])
    p = s[
        i[:, None, None, None],
        c[None, :, None, None],
        yy[:, None, None, None] + d[None, None, :, None],
        xx[:, None, None, None] + d[None, None, None, :],
    ]
    return p.reshape(n, -1).astype(np.float64)


def zca(patches: np.ndarray, eps_rel: float) -> dict:
    mu = patches.mean(axis=0)
    xc = patches - mu
    cov = xc.T @ xc / (len(patches) - 1)
    lam, u = np.linalg.eigh(cov)
    eps = eps_rel * float(lam.mean())
    w = (u * (1.0 / np.sqrt(lam + eps))) @ u.T
    return {"mu": mu, "W": w, "eigvals": lam[::-1], "eps": eps}


def make_filters(filter_patches: np.ndarray, wh: dict) -> dict:
    """Unit-length whitened filters f_k and the folded conv weight W f_k, bias -(W f_k) . mu."""
    f = (filter_patches - wh["mu"]) @ wh["W"]  # W symmetric
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    w = f @ wh["W"]
    c = -(w @ wh["mu"])
    return {"f": f, "w": w, "c": c}


# --------------------------------------------------------------------------
# ONNX graphs
# --------------------------------------------------------------------------


def _model(nodes, inputs, outputs, inits, name):
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER, producer_version="1")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def rcf_graph(filt: dict, k: int, biases, standardize=None, stride: int = 1, chroma: bool = False):
    """Conv(2k: +w, -w; bias c - b, -c - b) -> Relu -> GlobalAveragePool -> Flatten, one branch per b.
    With standardize=(mean, std) and one b: -> Sub -> Div, output `embedding` (the shipped encoder).
    stride: the Conv stride (1, the default: every position of the valid 3 x 3 grid).
    chroma: start with the chroma420 stage (H, W must be even)."""
    from onnx import TensorProto, helper, numpy_helper

    w = filt["w"][:k].reshape(k, 3, PATCH, PATCH)
    c = filt["c"][:k]
    weight = np.concatenate([w, -w]).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "rcf.weight")]
    nodes, outputs = [], []
    conv_in = "image"
    if chroma:
        nodes, pre_inits = chroma420_nodes("image", "image_chroma420")
        inits += pre_inits
        conv_in = "image_chroma420"
    for j, b in enumerate(biases):
        tag = "" if len(biases) == 1 else f"_{j}"
        bias = np.concatenate([c - b, -c - b]).astype(np.float32)
        inits.append(numpy_helper.from_array(bias, f"rcf.bias{tag}"))
        out = "features" + tag
        nodes += [
            helper.make_node("Conv", [conv_in, "rcf.weight", f"rcf.bias{tag}"], [f"z{tag}"], name=f"rcf_conv{tag}",
                             kernel_shape=[PATCH, PATCH], pads=[0, 0, 0, 0], strides=[stride, stride]),
            helper.make_node("Relu", [f"z{tag}"], [f"r{tag}"], name=f"rcf_relu{tag}"),
            helper.make_node("GlobalAveragePool", [f"r{tag}"], [f"p{tag}"], name=f"rcf_pool{tag}"),
            helper.make_node("Flatten", [f"p{tag}"], [out], name=f"rcf_flatten{tag}", axis=1),
        ]
        outputs.append(out)
    if standardize is not None:
        assert len(biases) == 1
        mean, std = standardize
        inits += [
            numpy_helper.from_array(np.asarray(mean, dtype=np.float32).reshape(1, -1), "feature.mean"),
            numpy_helper.from_array(np.asarray(std, dtype=np.float32).reshape(1, -1), "feature.std"),
        ]
        nodes += [
            helper.make_node("Sub", [outputs[0], "feature.mean"], ["centred"], name="feature_sub"),
            helper.make_node("Div", ["centred", "feature.std"], ["embedding"], name="feature_div"),
        ]
        outputs = ["embedding"]
    return _model(
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", 2 * k]) for o in outputs],
        inits,
        "nexttile_rcf_encoder",
    )


def onnx_head(w1, b1, w2, b2, mu, sigma):
    """The head of onnx/eurosat_simsiam/train.py (and onnx/ssl_common.py): embedding standardisation
    folded into fc1; MC dropout written out (RandomUniformLike -> mask -> inverted scaling) and
    selected by Where(mc_dropout, ...), because onnxruntime's optimiser removes Dropout nodes."""
    from onnx import TensorProto, helper, numpy_helper

    w1 = w1.astype(np.float64)  # H x D
    w1f = w1 / sigma[None, :]
    b1f = b1.astype(np.float64) - (w1f * mu[None, :]).sum(axis=1)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(w1f.T.astype(np.float32)), "fc1.W"),
        numpy_helper.from_array(b1f.astype(np.float32), "fc1.b"),
        numpy_helper.from_array(np.ascontiguousarray(w2.T.astype(np.float32)), "fc2.W"),
        numpy_helper.from_array(b2.astype(np.float32), "fc2.b"),
        numpy_helper.from_array(np.array(HEAD_DROPOUT, dtype=np.float32), "dropout.ratio"),
        numpy_helper.from_array(np.array(1.0 / (1.0 - HEAD_DROPOUT), dtype=np.float32), "dropout.scale"),
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
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    d = w1.shape[1]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d]),
            helper.make_tensor_value_info("mc_dropout", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        inits,
        "nexttile_mc_head",
    )


def set_meta(model, meta: dict) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v)


def save(model, path: Path) -> None:
    path.write_bytes(model.SerializeToString())


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------


def session(model_or_path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    src = str(model_or_path) if isinstance(model_or_path, Path) else model_or_path.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run_all(sess, x_uint8: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    """Standardise uint8 images batch by batch and run every output of sess."""
    names = [o.name for o in sess.get_outputs()]
    iname = sess.get_inputs()[0].name
    parts = [[] for _ in names]
    for i in range(0, len(x_uint8), batch):
        outs = sess.run(names, {iname: standardise(x_uint8[i : i + batch])})
        for p, o in zip(parts, outs):
            p.append(o)
    return [np.concatenate(p) for p in parts]


# --------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------


def pool_standardiser(e_pool: np.ndarray):
    mu = e_pool.astype(np.float64).mean(0)
    sd = e_pool.astype(np.float64).std(0) + 1e-6
    return lambda e: ((e - mu) / sd).astype(np.float32)


def label_draws(n_pool: int) -> dict:
    """The same random pool subsets for every feature set: {budget: [index arrays]}."""
    out = {}
    for n in LABEL_BUDGETS:
        out[n] = [np.sort(np.random.default_rng([SEED, n, d]).choice(n_pool, n, replace=False)) for d in range(FEW_DRAWS)]
    return out


def logreg(a, ya, b, yb) -> float:
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    # one BLAS thread: with OpenBLAS's threads lbfgs was 10x slower (measured: 189 x 1024, 0.7 s vs 8.9 s;
    # all 15,120 pool rows x 2048 on a busy 2-core machine, 48 s vs 460 s), and 1 thread is reproducible
    with threadpool_limits(1):
        clf = LogisticRegression(C=PROBE_C, max_iter=3000)
        clf.fit(a, ya)
        return float((clf.predict(b) == yb).mean())


def probe_suite(e_pool, y_pool, e_eval, y_eval, draws) -> dict:
    """Linear probe on all pool labels and on each budget's draws; features standardised with
    pool statistics (label-free, the whole pool)."""
    z = pool_standardiser(e_pool)
    a, b = z(e_pool), z(e_eval)
    res = {"all_pool": round(logreg(a, y_pool, b, y_eval), 4)}
    for n, idx in draws.items():
        accs = [logreg(a[i], y_pool[i], b, y_eval) for i in idx]
        res[f"labels_{n}_mean"] = round(float(np.mean(accs)), 4)
        res[f"labels_{n}_std"] = round(float(np.std(accs)), 4)
        res[f"labels_{n}_draws"] = [round(v, 4) for v in accs]
    return res


def score(r: dict) -> float:
    return 0.5 * r["labels_189_mean"] + 0.3 * r["labels_576_mean"] + 0.2 * r["all_pool"]


def concat(a: np.ndarray, b: np.ndarray, a_pool: np.ndarray, b_pool: np.ndarray) -> np.ndarray:
    return np.concatenate([pool_standardiser(a_pool)(a), pool_standardiser(b_pool)(b)], axis=1)


# --------------------------------------------------------------------------
# head (numpy)
# --------------------------------------------------------------------------


def train_head(e: np.ndarray, y: np.ndarray, seed: int):
    """MLP D -> 256 -> ReLU -> dropout 0.3 -> 10 on standardised embeddings; AdamW, cross-entropy,
    the recipe of onnx/eurosat_simsiam/train.py (lr 1e-3, wd 1e-4, 60 epochs, batch 256), in numpy."""
    rng = np.random.default_rng([seed, 7])
    mu = e.astype(np.float64).mean(0)
    sigma = e.astype(np.float64).std(0) + 1e-6
    x = ((e - mu) / sigma).astype(np.float32)
    d, h, k = x.shape[1], HEAD_HIDDEN, len(CLASSES)
    a1, a2 = 1 / np.sqrt(d), 1 / np.sqrt(h)
    params = {
        "w1": rng.uniform(-a1, a1, (d, h)).astype(np.float32),
        "b1": rng.uniform(-a1, a1, h).astype(np.float32),
        "w2": rng.uniform(-a2, a2, (h, k)).astype(np.float32),
        "b2": rng.uniform(-a2, a2, k).astype(np.float32),
    }
    m = {n: np.zeros_like(p) for n, p in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    b1_, b2_, eps = 0.9, 0.999, 1e-8
    step = 0
    onehot = np.eye(k, dtype=np.float32)
    keep_scale = np.float32(1.0 / (1.0 - HEAD_DROPOUT))
    for _ in range(HEAD_EPOCHS):
        perm = rng.permutation(len(x))
        for i in range(0, len(x), HEAD_BATCH):
            idx = perm[i : i + HEAD_BATCH]
            xb, yb = x[idx], onehot[y[idx]]
            h1 = xb @ params["w1"] + params["b1"]
            r = np.maximum(h1, 0)
            mask = (rng.random(r.shape, dtype=np.float32) >= HEAD_DROPOUT).astype(np.float32) * keep_scale
            hd = r * mask
            logits = hd @ params["w2"] + params["b2"]
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            g = (p - yb) / len(idx)
            grads = {"w2": hd.T @ g, "b2": g.sum(0)}
            gh = (g @ params["w2"].T) * mask * (h1 > 0)
            grads["w1"] = xb.T @ gh
            grads["b1"] = gh.sum(0)
            step += 1
            for n in params:
                params[n] *= np.float32(1 - HEAD_LR * HEAD_WD)  # decoupled weight decay (AdamW)
                m[n] = b1_ * m[n] + (1 - b1_) * grads[n]
                v[n] = b2_ * v[n] + (1 - b2_) * grads[n] * grads[n]
                mh = m[n] / (1 - b1_**step)
                vh = v[n] / (1 - b2_**step)
                params[n] -= (HEAD_LR * mh / (np.sqrt(vh) + eps)).astype(np.float32)
    return params, mu, sigma


# --------------------------------------------------------------------------
# numpy reference of the encoder (unfolded whitening), for the check
# --------------------------------------------------------------------------


def numpy_features(x_uint8: np.ndarray, wh: dict, filt: dict, k: int, b: float, mean, std, stride: int = 1,
                   chroma: bool = False) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    s = standardise(x_uint8)
    s = (chroma420(s) if chroma else s).astype(np.float64)
    win = sliding_window_view(s, (PATCH, PATCH), axis=(2, 3))[:, :, ::stride, ::stride]  # N C H' W' 3 3
    n, c, hh, ww = win.shape[:4]
    p = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, hh * ww, c * PATCH * PATCH)
    white = (p - wh["mu"]) @ wh["W"]
    z = white @ filt["f"][:k].T  # n x positions x k
    feats = np.concatenate([np.maximum(z - b, 0).mean(1), np.maximum(-z - b, 0).mean(1)], axis=1)
    return (feats - mean) / std


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def encoder_meta(k: int, b: float, eps_rel: float, n_pool: int, stride: int = 1, name: str = "nexttile-eurosat-rgb-rcf",
                 chroma: bool = False) -> dict:
    conv = "" if stride == 1 else f", 3x3 conv at stride {stride}"
    pre = "JPEG-like 4:2:0 chroma subsampling of the input (as in EuroSAT-RGB's files), then " if chroma else ""
    return {
        "model_name": name,
        "resolution": "1000",
        "tiles_size": str(TILE),
        "tiles_overlap": "0",
        "input_bands": BANDS,
        "input_scale": INPUT_SCALE,
        "input_offset": "0",
        "input_clip": [0.0, 1.0],
        "standardization_mean": CHANNEL_MEAN,
        "standardization_std": CHANNEL_STD,
        "nexttile_contract": "1",
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "nexttile_role": "encoder",
        "input_name": "image",
        "embedding_output": "embedding",
        "embedding_dim": str(2 * k),
        "input_stride": str(stride),
        "description": (
            f"Random Convolutional Features (MOSAIKS, Rolf et al. 2021, doi:10.1038/s41467-021-24638-z): {pre}{k} random "
            f"3x3x3 patches of unlabelled EuroSAT-RGB pool images, ZCA-whitened (eps {eps_rel:g} x mean eigenvalue), "
            f"features mean ReLU(z - {b:g}) and mean ReLU(-z - {b:g}) per filter{conv}, standardised with pool statistics; "
            "no training, no labels"
        ),
        "licence": "EuroSAT (Helber et al. 2019, MIT); weights: same terms as the project",
        "source": f"NextTile onnx/rcf_eurosat/build.py, seed {SEED}, {n_pool} EuroSAT-RGB train-split pool images",
    }


def head_meta(enc_path: Path, k: int, name: str = "nexttile-eurosat-rgb-rcf", extra: dict | None = None) -> dict:
    return {
        "model_name": f"{name}-mc-head",
        "resolution": "1000",
        "tiles_size": str(TILE),
        "tiles_overlap": "0",
        "input_bands": BANDS,
        "input_scale": INPUT_SCALE,
        "input_offset": "0",
        "input_clip": [0.0, 1.0],
        "standardization_mean": CHANNEL_MEAN,
        "standardization_std": CHANNEL_STD,
        "nexttile_contract": "1",
        "model_type": json.dumps("Classifier"),  # Deepness reads it with json.loads
        "nexttile_role": "head",
        "class_names": {str(i): c for i, c in enumerate(CLASSES)},
        "multi_label": "false",
        "embedding_input": "embedding",
        "probabilities_output": "probs",
        "mc_dropout_input": "mc_dropout",
        "encoder_sha256": sha256(enc_path),
        "description": (
            f"MLP head ({HEAD_HIDDEN} hidden, dropout {HEAD_DROPOUT}) on the RCF encoder ({2 * k}-d), "
            "EuroSAT-RGB train-split pool labels (validation fold held out)"
        ),
        "licence": "EuroSAT (Helber et al. 2019, MIT); weights: same terms as the project",
        "source": f"NextTile onnx/rcf_eurosat/build.py (numpy AdamW, {HEAD_EPOCHS} epochs, seed {SEED})",
        **(extra or {}),
    }


def scene_check(path: Path, enc_sess, e_test: np.ndarray, whs: dict, white_patches: np.ndarray) -> dict:
    """Label-free domain check on a real Sentinel-2 L1C GeoTIFF (13 bands, L1C order, x 10000):
    64 px tiles through the contract's preprocessing and the encoder, and the whitened variance
    of scene patches vs pool patches for every ZCA eps tried. Diagnostic only; changes nothing."""
    x, t = scene_tiles(path)
    e = np.concatenate([enc_sess.run(["embedding"], {"image": t[i : i + 32]})[0] for i in range(0, len(t), 32)])
    sp = sample_patches(x[None], 100_000, np.random.default_rng([SEED, 4]))
    white = {}
    for eps, wh in whs.items():
        white[f"eps_{eps:g}"] = {
            "pool": round(float((((white_patches[:100_000] - wh["mu"]) @ wh["W"]) ** 2).mean(0).sum()), 2),
            "scene": round(float((((sp - wh["mu"]) @ wh["W"]) ** 2).mean(0).sum()), 2),
        }
    return {
        "scene": str(path),
        "tiles": int(len(t)),
        "mean_squared_embedding_scene": round(float((e**2).mean()), 3),
        "mean_squared_embedding_test": round(float((e_test**2).mean()), 3),
        "share_of_features_with_scene_mean_beyond_2sd": round(float((np.abs(e.mean(0)) > 2).mean()), 4),
        "whitened_patch_energy_sum_over_27_dims": white,
        "note": "embeddings are standardised with pool statistics, so ~1.0 means pool-like scale; whitened energy is "
        "E|W(p - mu)|^2 (27 for an exactly whitened pool with eps -> 0)",
    }


def scene_tiles(path: Path):
    """The standardised scene (3 x H x W) and its fully valid 64 px tiles (N x 3 x 64 x 64), as the host makes them."""
    import tifffile

    a = tifffile.imread(str(path))
    if a.ndim == 3 and a.shape[-1] == 13:
        a = np.moveaxis(a, -1, 0)
    raw = a[[3, 2, 1]].astype(np.float32)  # B04, B03, B02
    m = np.array(CHANNEL_MEAN, dtype=np.float32).reshape(3, 1, 1)
    sd = np.array(CHANNEL_STD, dtype=np.float32).reshape(3, 1, 1)
    x = (np.clip(raw * np.float32(1 / 2800), 0, 1) - m) / sd
    valid = (raw > 0).all(0)
    tiles = []
    for ty in range(x.shape[1] // TILE):
        for tx in range(x.shape[2] // TILE):
            sl = (slice(ty * TILE, (ty + 1) * TILE), slice(tx * TILE, (tx + 1) * TILE))
            if valid[sl].all():
                tiles.append(x[:, sl[0], sl[1]])
    t = np.stack(tiles).astype(np.float32)
    return x, t


def eurosat_jpeg(t: np.ndarray) -> np.ndarray:
    """Standardised tiles -> 8-bit -> JPEG quality 100, 4:2:0 (how EuroSAT-RGB's files are stored) -> standardised:
    onnx/check_scene.py's eurosat_jpeg with this contract's channel statistics."""
    sys.path.insert(0, str(HERE.parent))
    from check_scene import eurosat_jpeg as stored_like_eurosat

    return stored_like_eurosat(t, CHANNEL_MEAN, CHANNEL_STD)


def floats(s: str):
    return [float(v) for v in s.split(",") if v]


def main(argv) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="extracted EuroSAT-RGB (with splits.csv)")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--simsiam", type=Path, default=DEFAULT_SIMSIAM, help="comparison encoder; 'none' to skip")
    p.add_argument("--k-grid", default="512,1024")
    p.add_argument("--b-grid", default="0.5,1,2")
    p.add_argument("--eps-grid", default="0.1,0.01,0.001,0.0001", help="ZCA eps relative to the mean eigenvalue")
    p.add_argument("--scene", type=Path, default=REPO / "samples" / "chincoteague_s2.tif",
                   help="optional Sentinel-2 L1C GeoTIFF for a label-free domain check (needs tifffile); 'none' to skip")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--limit", type=int, default=0, help="development only: use the first N rows of each set")
    # additive options (onnx/rcf_fast); their defaults leave the build above unchanged
    p.add_argument("--stride-grid", default="1", help="Conv strides to try (grid search); staged search takes one value")
    p.add_argument("--search", choices=["staged", "grid"], default="staged",
                   help="staged (default): eps, then K x b; grid: every eps x (stride, K) x b, see --pairs")
    p.add_argument("--pairs", default="", help="grid: only these STRIDE:K pairs (e.g. 2:256,2:512,1:256); default all")
    p.add_argument("--eligible", default="", help="grid: STRIDE:K pairs that may be chosen (cost rule fixed beforehand); default all")
    p.add_argument("--scene-max-ratio", type=float, default=0.0,
                   help="grid: exclude variants whose embedding mean square on --scene is above this x the pool's (0: off)")
    p.add_argument("--only", default="", help="grid: evaluate and build only this variant name (rebuild without probes)")
    p.add_argument("--scene-max-jpeg-shift", type=float, default=0.0,
                   help="grid: exclude variants whose scene embeddings move more than this (mean square, pool-standardised) "
                        "when the scene tiles are stored the way EuroSAT's are (8 bit, JPEG q100 4:2:0); 0 = no rule")
    p.add_argument("--chroma", choices=["off", "420"], default="off",
                   help="420: the encoder starts with JPEG-like 4:2:0 chroma subsampling (see chroma420)")
    p.add_argument("--model-name", default="nexttile-eurosat-rgb-rcf")
    p.add_argument("--head-meta", action="append", default=[], metavar="KEY=VALUE", help="extra head metadata")
    p.add_argument("--encoder-meta", action="append", default=[], metavar="KEY=VALUE", help="extra encoder metadata")
    a = p.parse_args(argv)
    chroma = a.chroma == "420"
    strides = [int(v) for v in floats(a.stride_grid)]
    if a.search == "staged" and len(strides) != 1:
        p.error("--search staged takes one --stride-grid value")
    stride = strides[0]
    t_start = time.time()
    timings = {}
    ks = sorted(int(v) for v in floats(a.k_grid))
    bs = floats(a.b_grid)
    eps_grid = floats(a.eps_grid)
    a.out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    # ---- data
    sets = read_splits(a.data)
    if a.limit:
        sets = {n: r[:: max(1, len(r) // a.limit)][: a.limit] for n, r in sets.items()}
    imgs = {n: load_images(a.data, r) for n, r in sets.items()}
    (x_pool, y_pool), (x_fold, y_fold), (x_test, y_test) = imgs["pool"], imgs["fold"], imgs["test"]
    log(f"pool {len(y_pool)}, validation fold {len(y_fold)}, test {len(y_test)} images (split 'val' not read)")
    timings["load_images_s"] = round(time.time() - t_start, 1)

    # ---- whitening statistics and filter patches (label-free, pool images only)
    t0 = time.time()
    s_pool = standardise(x_pool)
    if chroma:
        s_pool = chroma420(s_pool)
    white_patches = sample_patches(s_pool, N_WHITEN, np.random.default_rng([SEED, 1]))
    filter_patches = sample_patches(s_pool, max(ks), np.random.default_rng([SEED, 2]))
    del s_pool
    whs = {e: zca(white_patches, e) for e in eps_grid}
    filts = {e: make_filters(filter_patches, whs[e]) for e in eps_grid}
    timings["whitening_s"] = round(time.time() - t0, 1)
    log(f"ZCA on {N_WHITEN} patches; eigenvalues {np.round(whs[eps_grid[0]]['eigvals'][[0, 1, 5, 13, 26]], 5).tolist()}")

    draws = label_draws(len(y_pool))
    metrics = {
        "what": "RCF (MOSAIKS) encoder for EuroSAT-RGB; linear-probe accuracies (sklearn LogisticRegression C=1 on pool-standardised features)",
        "data": {
            "root": str(a.data),
            "pool_images": int(len(y_pool)),
            "validation_fold_images": int(len(y_fold)),
            "test_images": int(len(y_test)),
            "val_split": "not read (rows dropped when reading splits.csv; images never opened)",
            "fold_rule": "within train, per class, paths sorted by lowercase hex sha256 of UTF-8 'nexttile-validation-fold:' + path; first int(n*0.2+0.5) of each class = validation fold; the rest of train = pool",
            "fold_first_paths": [r[0] for r in sets["fold"][:3]],
        },
        "probe": {
            "model": f"sklearn LogisticRegression(C={PROBE_C}, max_iter=3000), lbfgs multinomial",
            "standardisation": "per feature, mean/std of the whole (unlabelled) pool",
            "low_label": f"{FEW_DRAWS} draws per budget of random pool indices (numpy default_rng([{SEED}, budget, draw]).choice without replacement), the same draws for every feature set",
            "selection_score": "0.5*acc@189 + 0.3*acc@576 + 0.2*acc@all_pool on the validation fold (fixed before the search); ties -> smaller K",
        },
        "whitening": {
            "patches": N_WHITEN,
            "eigenvalues": [round(float(v), 6) for v in whs[eps_grid[0]]["eigvals"]],
        },
    }

    # ---- SimSiam comparison features
    sim = None
    if str(a.simsiam) != "none" and a.simsiam.is_file():
        t0 = time.time()
        ss = session(a.simsiam, a.threads)
        sim = {n: run_all(ss, x, batch=64)[0] for n, x in (("pool", x_pool), ("fold", x_fold), ("test", x_test))}
        timings["simsiam_embed_s"] = round(time.time() - t0, 1)
        log("SimSiam embeddings done")

    def rcf_features(eps, biases, x, k=None, st=1):
        k = k or max(ks)
        return run_all(session(rcf_graph(filts[eps], k, biases, stride=st, chroma=chroma), a.threads), x)

    def sub(f, k):
        """K-filter variant from the K_max features: first k of the +z half and of the -z half."""
        km = f.shape[1] // 2
        return np.concatenate([f[:, :k], f[:, km : km + k]], axis=1)

    if a.search == "staged":
        # ---- stage 1: ZCA eps at (K = min, b = 1)
        t0 = time.time()
        stage1 = {}
        k0 = ks[0]
        for e in eps_grid:
            fp, ff = (rcf_features(e, [1.0], x, k0, stride)[0] for x in (x_pool, x_fold))
            r = probe_suite(fp, y_pool, ff, y_fold, draws)
            r["score"] = round(score(r), 4)
            stage1[f"eps_{e:g}"] = r
            log(f"stage 1 eps {e:g} K {k0} b 1: {r['all_pool']:.4f} / 189 {r['labels_189_mean']:.4f} / 576 {r['labels_576_mean']:.4f}")
        eps = max(eps_grid, key=lambda e: (stage1[f"eps_{e:g}"]["score"], -eps_grid.index(e)))
        timings["stage1_s"] = round(time.time() - t0, 1)

        # ---- stage 2: K x b at the chosen eps
        t0 = time.time()
        feats_pool = rcf_features(eps, bs, x_pool, None, stride)
        feats_fold = rcf_features(eps, bs, x_fold, None, stride)
        timings["stage2_features_s"] = round(time.time() - t0, 1)
        stage2, concat_fold = {}, {}
        for j, b in enumerate(bs):
            for k in ks:
                name = f"K{k}_b{b:g}"
                fp, ff = sub(feats_pool[j], k), sub(feats_fold[j], k)
                r = probe_suite(fp, y_pool, ff, y_fold, draws)
                r["score"] = round(score(r), 4)
                stage2[name] = {"K": k, "b": b, "eps_rel": eps, "dim": 2 * k, **r}
                log(f"stage 2 {name}: {r['all_pool']:.4f} / 189 {r['labels_189_mean']:.4f} / 576 {r['labels_576_mean']:.4f}")
                if sim is not None:
                    cp = concat(sim["pool"], fp, sim["pool"], fp)
                    cf = concat(sim["fold"], ff, sim["pool"], fp)
                    concat_fold[name] = probe_suite(cp, y_pool, cf, y_fold, draws)
        timings["stage2_s"] = round(time.time() - t0, 1)
        best = max(stage2, key=lambda n: (stage2[n]["score"], -stage2[n]["K"]))
        k, b = stage2[best]["K"], stage2[best]["b"]
        log(f"chosen: {best}, eps {eps:g}")
        metrics["validation_fold"] = {"stage1_eps_at_K%d_b1" % k0: stage1, "chosen_eps_rel": eps, "stage2": stage2, "chosen": best}
        if sim is not None:
            metrics["validation_fold"]["simsiam"] = probe_suite(sim["pool"], y_pool, sim["fold"], y_fold, draws)
            metrics["validation_fold"]["concat_simsiam_rcf"] = concat_fold

    else:
        # ---- grid: every eps x (stride, K) x b; cost eligibility and the scene rule fixed before the search
        t0 = time.time()
        pairs = [tuple(int(v) for v in q.split(":")) for q in a.pairs.split(",") if q] or [(st, kk) for st in strides for kk in ks]
        eligible = {tuple(int(v) for v in q.split(":")) for q in a.eligible.split(",") if q} or set(pairs)
        tiles_scene = None
        if a.scene_max_ratio > 0:
            tiles_scene = scene_tiles(a.scene)[1]
            tiles_scene_jpeg = eurosat_jpeg(tiles_scene)

        def vname(e, st, kk, bb):
            return f"eps{e:g}_s{st}_K{kk}_b{bb:g}"

        def macs(st, kk):
            n = (TILE - PATCH) // st + 1
            return 2 * kk * 3 * PATCH * PATCH * n * n

        grid_res, kept = {}, {}
        for e in eps_grid:
            for st in sorted({q[0] for q in pairs}):
                kmax = max(kk for q, kk in pairs if q == st)
                names = [vname(e, st, kk, bb) for bb in bs for q, kk in pairs if q == st]
                if a.only and a.only not in names:
                    continue
                g = session(rcf_graph(filts[e], kmax, bs, stride=st, chroma=chroma), a.threads)
                fpool, ffold = run_all(g, x_pool), run_all(g, x_fold)
                fscene = fscene_jpeg = None
                if tiles_scene is not None:
                    oname = [o.name for o in g.get_outputs()]

                    def run_tiles(tt):
                        return [np.concatenate(v) for v in zip(*[g.run(oname, {"image": tt[i : i + 32]})
                                                                 for i in range(0, len(tt), 32)])]

                    fscene, fscene_jpeg = run_tiles(tiles_scene), run_tiles(tiles_scene_jpeg)
                for j, bb in enumerate(bs):
                    for q, kk in pairs:
                        if q != st:
                            continue
                        name = vname(e, st, kk, bb)
                        if a.only and name != a.only:
                            continue
                        fp, ff = sub(fpool[j], kk), sub(ffold[j], kk)
                        r = {"eps_rel": e, "stride": st, "K": kk, "b": bb, "dim": 2 * kk, "macs_per_64px_tile": macs(st, kk),
                             "eligible_cost": (st, kk) in eligible}
                        if fscene is not None:
                            raw = fp.astype(np.float64)
                            mu_, sd_ = raw.mean(0), raw.std(0)
                            sd_ = np.maximum(sd_, STD_FLOOR_REL * float(np.median(sd_)))
                            ms_pool = float((((raw - mu_) / sd_) ** 2).mean())
                            ms_scene = float((((sub(fscene[j], kk) - mu_) / sd_) ** 2).mean())
                            r["mean_squared_embedding_pool"] = round(ms_pool, 3)
                            r["mean_squared_embedding_scene"] = round(ms_scene, 3)
                            r["scene_ok"] = ms_scene <= a.scene_max_ratio * ms_pool
                            shift = (sub(fscene[j], kk) - sub(fscene_jpeg[j], kk)) / sd_
                            r["scene_jpeg_shift"] = round(float((shift**2).mean()), 4)
                            if a.scene_max_jpeg_shift > 0:
                                r["scene_ok"] = r["scene_ok"] and r["scene_jpeg_shift"] <= a.scene_max_jpeg_shift
                        if not a.only:
                            r.update(probe_suite(fp, y_pool, ff, y_fold, draws))
                            r["score"] = round(score(r), 4)
                        grid_res[name] = r
                        kept[name] = (e, st, kk, bb, fpool[j][:, :], ffold[j])
                        log(f"grid {name}: " + json.dumps({m: v for m, v in r.items() if not m.endswith("draws")}))
                del fpool, ffold
        if a.only:
            best = a.only
        else:
            cands = [n for n, r in grid_res.items() if r["eligible_cost"] and r.get("scene_ok", True)]
            best = max(cands, key=lambda n: (grid_res[n]["score"], -grid_res[n]["macs_per_64px_tile"]))
        eps, stride, k, b, fp_best, ff_best = kept[best]
        del kept
        bs = [b]
        feats_pool, feats_fold = [fp_best], [ff_best]
        timings["grid_s"] = round(time.time() - t0, 1)
        log(f"chosen: {best}")
        metrics["validation_fold"] = {
            "search": "grid",
            "pairs_stride_K": [list(q) for q in pairs],
            "eligible_stride_K": sorted([list(q) for q in eligible]),
            "scene_max_ratio": a.scene_max_ratio,
            "scene_max_jpeg_shift": a.scene_max_jpeg_shift,
            "chroma": a.chroma,
            "selection": "max score among cost-eligible variants passing the scene rule; ties -> fewer multiply-adds",
            "variants": grid_res,
            "chosen": best,
            "chosen_eps_rel": eps,
            "chosen_stride": stride,
        }
        if sim is not None and not a.only:
            metrics["validation_fold"]["simsiam"] = probe_suite(sim["pool"], y_pool, sim["fold"], y_fold, draws)

    # ---- export the encoder: per-feature standardisation from the chosen variant's pool features
    j = bs.index(b)
    raw_pool = sub(feats_pool[j], k).astype(np.float64)
    del feats_pool, feats_fold
    f_mean = raw_pool.mean(0)
    f_std = raw_pool.std(0)
    floor = STD_FLOOR_REL * float(np.median(f_std))
    f_std = np.maximum(f_std, floor)
    wh, filt = whs[eps], filts[eps]
    enc = rcf_graph(filt, k, [b], standardize=(f_mean, f_std), stride=stride, chroma=chroma)
    set_meta(enc, {**encoder_meta(k, b, eps, len(y_pool), stride, a.model_name, chroma),
                   **dict(kv.split("=", 1) for kv in a.encoder_meta)})
    enc_path = a.out / "encoder.onnx"
    save(enc, enc_path)
    log(f"wrote {enc_path} ({enc_path.stat().st_size} B)")

    # ---- test numbers through the exported encoder
    t0 = time.time()
    es = session(enc_path, a.threads)
    e_test = run_all(es, x_test)[0]
    e_fold = run_all(es, x_fold)[0]
    e_pool = ((raw_pool - f_mean) / f_std).astype(np.float32)  # = the encoder's output on the pool (checked below)
    chk = np.random.default_rng([SEED, 3]).choice(len(y_pool), min(256, len(y_pool)), replace=False)
    pool_diff = float(np.abs(run_all(es, x_pool[np.sort(chk)])[0] - e_pool[np.sort(chk)]).max())
    timings["test_embed_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    test = {"variant": best, "rcf": probe_suite(e_pool, y_pool, e_test, y_test, draws)}
    if sim is not None:
        test["simsiam"] = probe_suite(sim["pool"], y_pool, sim["test"], y_test, draws)
        test["concat_simsiam_rcf"] = probe_suite(
            concat(sim["pool"], e_pool, sim["pool"], e_pool), y_pool, concat(sim["test"], e_test, sim["pool"], e_pool), y_test, draws
        )
    timings["test_probes_s"] = round(time.time() - t0, 1)
    log(f"test: {json.dumps({n: {m: v for m, v in r.items() if not m.endswith('draws')} for n, r in test.items() if n != 'variant'})}")

    # ---- head
    t0 = time.time()
    params, mu, sigma = train_head(e_pool, y_pool, SEED)
    head = onnx_head(params["w1"].T, params["b1"], params["w2"].T, params["b2"], mu, sigma)
    set_meta(head, head_meta(enc_path, k, a.model_name, dict(kv.split("=", 1) for kv in a.head_meta)))
    head_path = a.out / "head.onnx"
    save(head, head_path)
    timings["head_train_s"] = round(time.time() - t0, 1)
    hs = session(head_path, a.threads)

    def head_acc(e, y):
        det = hs.run(["probs"], {"embedding": e, "mc_dropout": np.array(False)})[0]
        mc = np.mean([hs.run(["probs"], {"embedding": e, "mc_dropout": np.array(True)})[0] for _ in range(20)], 0)
        return {"deterministic": round(float((det.argmax(1) == y).mean()), 4), "mc20_mean": round(float((mc.argmax(1) == y).mean()), 4)}

    test["head_onnx"] = head_acc(e_test, y_test)
    metrics["validation_fold"]["head_onnx_chosen"] = head_acc(e_fold, y_fold)
    log(f"head: test {test['head_onnx']}, fold {metrics['validation_fold']['head_onnx_chosen']}")
    metrics["test"] = test

    # ---- numpy reference check
    xs = np.concatenate([x_test[:8], x_fold[:8]])
    ref = np.concatenate([numpy_features(xs[i : i + 1], wh, filt, k, b, f_mean, f_std, stride, chroma) for i in range(len(xs))])
    got = run_all(es, xs)[0]
    metrics["checks"] = {
        "onnx_vs_numpy_reference_max_abs_diff": float(np.abs(got - ref).max()),
        "onnx_vs_numpy_reference_images": "first 8 test + first 8 validation-fold images; numpy: explicit W(x - mu) . f_k, float64",
        "embedding_abs_max_on_those": float(np.abs(ref).max()),
        "pool_embedding_from_search_graph_vs_encoder_max_abs_diff": pool_diff,
    }
    log(f"checks: {metrics['checks']}")

    if str(a.scene) != "none" and a.scene.is_file():
        try:
            metrics["checks"]["scene"] = scene_check(a.scene, es, e_test, whs, white_patches)
            log(f"scene check: {metrics['checks']['scene']}")
        except ImportError as err:
            metrics["checks"]["scene"] = f"skipped: {err}"

    metrics["chosen"] = {
        "variant": best,
        "K": k,
        "b": b,
        "eps_rel": eps,
        "zca_eps_abs": wh["eps"],
        "embedding_dim": 2 * k,
        "chroma": a.chroma,
        "feature_std_floor": floor,
        "features_at_floor": int((raw_pool.std(0) < floor).sum()),
    }
    if a.search == "grid" or stride != 1:
        metrics["chosen"]["stride"] = stride
        metrics["chosen"]["macs_per_64px_tile"] = 2 * k * 3 * PATCH * PATCH * ((TILE - PATCH) // stride + 1) ** 2
    metrics["files"] = {
        "encoder.onnx": {"bytes": enc_path.stat().st_size, "sha256": sha256(enc_path)},
        "head.onnx": {"bytes": head_path.stat().st_size, "sha256": sha256(head_path)},
    }
    timings["total_s"] = round(time.time() - t_start, 1)
    metrics["timings"] = timings
    import onnx
    import onnxruntime
    import sklearn

    metrics["environment"] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "scikit-learn": sklearn.__version__,
        "threads": a.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    metrics["commands"] = {
        "build": "/tmp/rcfvenv/bin/python onnx/rcf_eurosat/build.py /root/cache/eurosat-rgb",
        "this_run": " ".join([Path(sys.executable).name, *sys.argv]),
        "score": "nexttile score SCENE.tif --encoder onnx/rcf_eurosat/encoder.onnx --head onnx/rcf_eurosat/head.onnx",
    }
    if a.out.resolve() != HERE:
        rel = os.path.relpath(a.out.resolve(), REPO)
        metrics["commands"]["build"] = " ".join(["/tmp/rcfvenv/bin/python", "onnx/rcf_eurosat/build.py", *argv])
        metrics["commands"]["score"] = f"nexttile score SCENE.tif --encoder {rel}/encoder.onnx --head {rel}/head.onnx"
    (a.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(f"wrote {a.out / 'metrics.json'}; total {timings['total_s']} s")


if __name__ == "__main__":
    main(sys.argv[1:])
