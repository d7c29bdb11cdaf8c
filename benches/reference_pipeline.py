#!/usr/bin/env python3
"""Reference implementation of `nexttile score` in plain Python.

What a GIS/ML user would write with GDAL's Python bindings (osgeo.gdal/osr),
onnxruntime's Python API and numpy, following NextTile's pipeline and output
formats exactly, so that the two can be compared output for output and timed
against each other (see benches/compare_outputs.py).

Pipeline (as src/engine.rs):
  scene (GDAL) -> band matching by description (B4 == B04) -> grid of whole
  tiles -> one strip read per tile row (ReadAsArray with band_list) ->
  nodata mask + scale/offset/clip + standardisation (from the encoder's ONNX
  metadata) -> encoder once per kept tile (batches) -> head T times (MC dropout
  on when T > 1) -> uncertainty metrics (float64) -> selection (top_k, mcfps or
  random-free variants) -> heatmap.tif (COG), suggestions.geojson,
  tiles.geojson, tiles.csv, summary.json, heatmap.qml.

Differences from the Rust tool, on purpose:
  * no AOI (--aoi) support and no `random` strategy;
  * reading and encoding are sequential, not pipelined on two threads; the
    timings report both parts;
  * onnxruntime sessions use the Python API's defaults (graph optimisation
    ORT_ENABLE_ALL, CPU provider); --graph-opt layout matches NextTile's level;
  * MCFPS draws its first farthest-point anchor with a pure-Python port of
    rand_chacha's ChaCha8Rng::seed_from_u64(seed).random_range(0..N) (rand 0.9,
    Canon's method), so `--strategy mcfps --seed S` picks the same first anchor
    as NextTile; `--first-index I` pins it instead.

Usage:
  python benches/reference_pipeline.py SCENE --out DIR [--encoder E] [--head H]
      [--mc-passes 20] [--budget 20] [--strategy top_k|mcfps]
      [--metric least_confidence] [--tile-size 64] [--batch-size 64]
      [--threads N] [--seed 0] [--first-index I] [--neighbours 16]
      [--anchors S] [--overlap 0] [--min-valid 0.5] [--bands 4,3,2]
      [--graph-opt basic|extended|layout|all]

Run it with the venv made by benches/setup_reference.sh (Debian's python3 +
python3-gdal + numpy, and onnxruntime==1.31.1 from PyPI):
  benches/setup_reference.sh   # prints .cache/benchenv/bin/python
  .cache/benchenv/bin/python benches/reference_pipeline.py samples/chincoteague_s2.tif --out /tmp/ref

The last line on stdout is a JSON object with the stage timings (seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from osgeo import gdal, osr

gdal.UseExceptions()
osr.UseExceptions()

DEFAULT_MODEL_DIR = "onnx/eurosat_simsiam"
METRICS = ["entropy", "bald", "margin", "least_confidence", "variation_ratio"]
HEATMAP_NODATA = -1.0
FOOTPRINT_POINTS_PER_EDGE = 8
COORD_DECIMALS = 8
S2_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                "B09", "B10", "B11", "B12"]
S2_L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                "B09", "B11", "B12"]
PROBABILITY_TOLERANCE = 1e-3


def log(msg: str) -> None:
    print(f"[reference] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Rounding / formatting helpers that behave like Rust's
# --------------------------------------------------------------------------

def rust_round(x: float) -> float:
    """f64::round: half away from zero (Python's round() is half-to-even)."""
    a = abs(x)
    f = math.floor(a)
    r = f + 1.0 if a - f >= 0.5 else f
    return math.copysign(r, x)


def round_coord(v: float) -> float:
    f = 10.0 ** COORD_DECIMALS
    return rust_round(v * f) / f


def round6(v) -> float:
    """round6(f32) of src/output/features.rs: widen the f32 to f64 first."""
    return rust_round(float(np.float32(v)) * 1e6) / 1e6


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_session(path: str, threads: int, opt_level: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the head's overridable `mc_dropout` initializer warns
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "layout": ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opt_level]
    if threads > 0:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def _meta_json(meta: dict, key: str, default=None):
    return json.loads(meta[key]) if key in meta else default


def _meta_num(meta: dict, key: str, cast, default=None):
    return cast(meta[key].strip().strip('"')) if key in meta else default


def _pick_io(ios, named, rank):
    if named is not None:
        if not any(i.name == named for i in ios):
            raise SystemExit(f"metadata names '{named}', not in the graph")
        return named
    of_rank = [i.name for i in ios if len(i.shape) == rank]
    if len(of_rank) != 1:
        raise SystemExit(f"no single rank-{rank} input/output; set it in the metadata")
    return of_rank[0]


def encoder_contract(sess: ort.InferenceSession) -> dict:
    """The encoder half of the metadata contract (src/model/spec.rs)."""
    meta = sess.get_modelmeta().custom_metadata_map
    bands = _meta_json(meta, "input_bands")
    if not bands:
        raise SystemExit("encoder metadata lacks input_bands")
    n = len(bands)
    clip = _meta_json(meta, "input_clip")
    std = _meta_json(meta, "standardization_std", [1.0] * n)
    mean = _meta_json(meta, "standardization_mean", [0.0] * n)
    if len(mean) != n or len(std) != n or any(s <= 0 for s in std):
        raise SystemExit("standardization_mean/std must list one value per band, std > 0")
    inp = _pick_io(sess.get_inputs(), meta.get("input_name"), 4)
    shape = next(i.shape for i in sess.get_inputs() if i.name == inp)
    fixed = shape[2] if isinstance(shape[2], int) and shape[2] == shape[3] else None
    return {
        "meta": meta,
        "name": meta.get("model_name"),
        "input": inp,
        "output": _pick_io(sess.get_outputs(), meta.get("embedding_output"), 2),
        "bands": bands,
        # All preprocessing constants are f32 in NextTile; keep them f32 here so
        # the arithmetic is the same IEEE single-precision arithmetic.
        "scale": np.float32(_meta_num(meta, "input_scale", float, 1.0)),
        "offset": np.float32(_meta_num(meta, "input_offset", float, 0.0)),
        "clip": None if clip is None else (np.float32(clip[0]), np.float32(clip[1])),
        "mean": np.asarray(mean, dtype=np.float32),
        "std": np.asarray(std, dtype=np.float32),
        "tile_size": _meta_num(meta, "tiles_size", int),
        "input_stride": _meta_num(meta, "input_stride", int),
        "resolution_m": (None if "resolution" not in meta
                         else _meta_num(meta, "resolution", float) / 100.0),
        "fixed_input_size": fixed,
    }


def head_contract(sess: ort.InferenceSession) -> dict:
    meta = sess.get_modelmeta().custom_metadata_map
    raw = _meta_json(meta, "class_names")
    if raw is None:
        raise SystemExit("head metadata lacks class_names")
    if isinstance(raw, dict):
        names = [v for _, v in sorted((int(k), v) for k, v in raw.items())]
    else:
        names = list(raw)
    # `mc_dropout` has a default value in the graph, so onnxruntime lists it as
    # an overridable initializer rather than an input; it can still be fed.
    feedable = {i.name for i in sess.get_inputs()} | {
        i.name for i in sess.get_overridable_initializers()}
    mc = meta.get("mc_dropout_input")
    if mc is not None and mc not in feedable:
        raise SystemExit(f"mc_dropout_input names '{mc}', which is not an input")
    return {
        "meta": meta,
        "name": meta.get("model_name"),
        "input": _pick_io(sess.get_inputs(), meta.get("embedding_input"), 2),
        "output": _pick_io(sess.get_outputs(), meta.get("probabilities_output"), 2),
        "class_names": names,
        "mc_dropout_input": mc,
        "encoder_sha256": meta.get("encoder_sha256"),
    }


# --------------------------------------------------------------------------
# Scene and bands
# --------------------------------------------------------------------------

def canonical_band_name(raw: str) -> str:
    """`B4` -> `B04`, ` b8a ` -> `B8A`, `B1 (coastal)` -> `B01` (src/raster/bands.rs)."""
    parts = raw.split()
    word = parts[0].upper() if parts else ""
    if word.startswith("B"):
        rest = word[1:]
        digits, suffix = (rest[:-1], "A") if rest.endswith("A") else (rest, "")
        if digits and len(digits) <= 2 and digits.isdigit() and digits.isascii():
            n = int(digits)
            return f"B{n:02d}" if not suffix else f"B{n}{suffix}"
    return word


def open_scene(path: str) -> dict:
    ds = gdal.Open(path, gdal.GA_ReadOnly)
    wkt = ds.GetProjection()
    if not wkt.strip():
        raise SystemExit(f"{path} has no CRS")
    gt = ds.GetGeoTransform()
    if tuple(gt) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise SystemExit(f"{path} has no geotransform")
    if gt[2] != 0.0 or gt[4] != 0.0:
        raise SystemExit(f"{path} has a rotated geotransform")
    bands = []
    for i in range(1, ds.RasterCount + 1):
        b = ds.GetRasterBand(i)
        desc = b.GetDescription() or ""
        bands.append({"index": i, "name": canonical_band_name(desc),
                      "nodata": b.GetNoDataValue()})
    names_assumed = False
    if all(b["name"] == "" for b in bands):
        default = {13: S2_L1C_BANDS, 12: S2_L2A_BANDS}.get(len(bands))
        if default:
            for b, n in zip(bands, default):
                b["name"] = n
            names_assumed = True
    srs = osr.SpatialReference(wkt=wkt)
    try:
        srs.AutoIdentifyEPSG()
    except RuntimeError:
        pass
    epsg = None
    if srs.GetAuthorityName(None) and srs.GetAuthorityCode(None):
        epsg = f"{srs.GetAuthorityName(None)}:{srs.GetAuthorityCode(None)}"
    return {"ds": ds, "path": path, "width": ds.RasterXSize, "height": ds.RasterYSize,
            "gt": tuple(gt), "wkt": wkt, "epsg": epsg, "bands": bands,
            "names_assumed": names_assumed, "srs": srs}


def resolve_bands(scene: dict, wanted: list[str], override: list[int] | None) -> list[int]:
    if override:
        if len(override) != len(wanted):
            raise SystemExit(f"--bands gives {len(override)} indices, the model takes {len(wanted)}")
        return list(override)
    out, missing = [], []
    for w in wanted:
        key = canonical_band_name(w)
        hit = next((b["index"] for b in scene["bands"] if b["name"] == key), None)
        (out if hit is not None else missing).append(hit if hit is not None else w)
    if missing:
        raise SystemExit(f"{scene['path']} lacks band(s) {missing}")
    return out


# --------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------

class Grid:
    """Only whole tiles; ids r<row>_c<col>, row-major (src/tiling/grid.rs)."""

    def __init__(self, width, height, tile, overlap, gt):
        if tile == 0 or overlap >= tile or tile > width or tile > height:
            raise SystemExit(f"bad tile size {tile} / overlap {overlap} for {width}x{height}")
        self.tile, self.stride, self.gt = tile, tile - overlap, gt
        self.rows = (height - tile) // self.stride + 1
        self.cols = (width - tile) // self.stride + 1

    def apply(self, col, row):
        g = self.gt
        return g[0] + col * g[1] + row * g[2], g[3] + col * g[4] + row * g[5]

    def centre(self, r, c):
        return self.apply(c * self.stride + self.tile / 2.0, r * self.stride + self.tile / 2.0)

    def footprint(self, r, c, per_edge):
        """Closed ring, `per_edge` points per edge, BL -> BR -> TR -> TL -> BL."""
        x0, y0 = float(c * self.stride), float(r * self.stride)
        x1, y1 = x0 + self.tile, y0 + self.tile
        corners = [(x0, y1), (x1, y1), (x1, y0), (x0, y0), (x0, y1)]
        n = max(per_edge, 1)
        ring = []
        for (ax, ay), (bx, by) in zip(corners[:-1], corners[1:]):
            for i in range(n):
                t = i / n
                ring.append(self.apply(ax + (bx - ax) * t, ay + (by - ay) * t))
        ring.append(ring[0])
        return ring

    def cell_geo_transform(self):
        g, s = self.gt, float(self.stride)
        return (g[0], g[1] * s, g[2] * s, g[3], g[4] * s, g[5] * s)


# --------------------------------------------------------------------------
# Reading + preprocessing
# --------------------------------------------------------------------------

def iter_tile_rows(scene, grid, bands, pre, min_valid):
    """Yield (row, [(col, valid_fraction)], tiles[n, bands, t, t]) per grid row.

    One ReadAsArray per tile row: a strip `tile` pixels tall over all columns
    that hold tiles, all selected bands at once, as float32.
    """
    t, s = grid.tile, grid.stride
    nodata = [scene["bands"][b - 1]["nodata"] for b in bands]
    zero_is_nodata = all(v is None for v in nodata)
    w = (grid.cols - 1) * s + t
    mean = pre["mean"][:, None, None]
    std = pre["std"][:, None, None]
    min_valid = np.float32(min_valid)
    for r in range(grid.rows):
        strip = scene["ds"].ReadAsArray(0, r * s, w, t, band_list=bands,
                                        buf_type=gdal.GDT_Float32)
        strip = strip.reshape(len(bands), t, w)
        invalid = np.isnan(strip).any(axis=0)
        for k, nd in enumerate(nodata):
            if nd is not None:
                invalid |= strip[k].astype(np.float64) == nd
        if zero_is_nodata:
            invalid |= (strip == 0).all(axis=0)
        x = strip * pre["scale"] + pre["offset"]
        if pre["clip"] is not None:
            x = np.clip(x, pre["clip"][0], pre["clip"][1])
        x = (x - mean) / std
        x[:, invalid] = 0.0
        kept, tiles = [], []
        for c in range(grid.cols):
            x0 = c * s
            n_valid = int(t * t - np.count_nonzero(invalid[:, x0:x0 + t]))
            frac = np.float32(n_valid) / np.float32(t * t)
            if frac < min_valid or n_valid == 0:
                kept.append((c, None))
                continue
            kept.append((c, frac))
            tiles.append(x[:, :, x0:x0 + t])
        yield r, kept, (np.stack(tiles) if tiles else None)


# --------------------------------------------------------------------------
# Uncertainty (src/uncertainty/*.rs; float64 sums and logs, nats)
# --------------------------------------------------------------------------

def validate_probs(probs: np.ndarray) -> None:
    t, n, c = probs.shape
    if t == 0 or c < 2:
        raise SystemExit(f"probabilities have shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise SystemExit("non-finite probabilities")
    p = probs.astype(np.float64)
    if (p < -PROBABILITY_TOLERANCE).any() or (p > 1 + PROBABILITY_TOLERANCE).any():
        raise SystemExit("probabilities outside [0, 1]")
    if (np.abs(p.sum(axis=2) - 1.0) > PROBABILITY_TOLERANCE).any():
        raise SystemExit("probabilities do not sum to 1")


def entropy_nats(p: np.ndarray) -> np.ndarray:
    """Entropy over the last axis, 0 ln 0 = 0, clamped at 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def compute_all(probs: np.ndarray) -> dict:
    """probs [T, N, C] float32 -> mean + every metric (float32, like NextTile)."""
    validate_probs(probs)
    t = probs.shape[0]
    p64 = probs.astype(np.float64)
    mean = p64.sum(axis=0) / t
    entropy = entropy_nats(mean)
    expected = entropy_nats(p64).sum(axis=0) / t
    identical = (probs == probs[:1]).all(axis=(0, 2))
    bald = np.where(identical, 0.0, np.maximum(entropy - expected, 0.0))
    top2 = np.sort(mean, axis=1)[:, -2:]
    margin = np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)
    least_conf = np.clip(1.0 - mean.max(axis=1), 0.0, 1.0)
    votes = probs.argmax(axis=2)  # [T, N], first maximum = lowest class index
    counts = np.zeros((probs.shape[1], probs.shape[2]), dtype=np.int64)
    for tt in range(t):
        np.add.at(counts, (np.arange(probs.shape[1]), votes[tt]), 1)
    variation = 1.0 - counts.max(axis=1) / t
    mean32 = mean.astype(np.float32)
    return {
        "mean": mean32,
        "entropy": entropy.astype(np.float32),
        "expected_entropy": expected.astype(np.float32),
        "bald": bald.astype(np.float32),
        "margin": margin.astype(np.float32),
        "least_confidence": least_conf.astype(np.float32),
        "variation_ratio": variation.astype(np.float32),
        "predicted": mean32.argmax(axis=1),
    }


# --------------------------------------------------------------------------
# Selection (src/sampling/*.rs)
# --------------------------------------------------------------------------

def rank_order(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Order of `idx`: higher score first, equal scores by lower index."""
    return idx[np.lexsort((idx, -scores[idx].astype(np.float64)))]


def top_k(u: np.ndarray, budget: int) -> list[dict]:
    order = rank_order(u, np.arange(len(u)))[:budget]
    return [{"index": int(i), "score": float(u[i]), "anchor": None} for i in order]


class ChaCha8:
    """rand_chacha 0.9 ChaCha8Rng (stream 0): seed_from_u64 + next_u32."""

    MASK = 0xFFFFFFFF

    def __init__(self, seed: int):
        # rand_core 0.9 SeedableRng::seed_from_u64: PCG32 fills the 32-byte key.
        state = seed & 0xFFFFFFFFFFFFFFFF
        key = []
        for _ in range(8):
            state = (state * 6364136223846793005 + 11634580027462260723) & 0xFFFFFFFFFFFFFFFF
            xorshifted = (((state >> 18) ^ state) >> 27) & self.MASK
            rot = state >> 59
            key.append(((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & self.MASK)
        self.key, self.counter, self.buf = key, 0, []

    @staticmethod
    def _rotl(v, n):
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    def _block(self):
        m = self.MASK
        init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *self.key,
                self.counter & m, (self.counter >> 32) & m, 0, 0]
        x = list(init)

        def qr(a, b, c, d):
            x[a] = (x[a] + x[b]) & m; x[d] = self._rotl(x[d] ^ x[a], 16)
            x[c] = (x[c] + x[d]) & m; x[b] = self._rotl(x[b] ^ x[c], 12)
            x[a] = (x[a] + x[b]) & m; x[d] = self._rotl(x[d] ^ x[a], 8)
            x[c] = (x[c] + x[d]) & m; x[b] = self._rotl(x[b] ^ x[c], 7)

        for _ in range(4):  # 8 rounds = 4 double rounds
            qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
            qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
        self.counter += 1
        self.buf.extend((a + b) & m for a, b in zip(x, init))

    def next_u32(self) -> int:
        if not self.buf:
            self._block()
        return self.buf.pop(0)

    def random_range(self, n: int) -> int:
        """rand 0.9 `random_range(0..n)` for usize n <= 2^32 (u32 Canon's method)."""
        rng = n & self.MASK
        m = self.next_u32() * rng
        result, lo = m >> 32, m & self.MASK
        if lo > ((-rng) & self.MASK):
            new_hi = (self.next_u32() * rng) >> 32
            if lo + new_hi > self.MASK:
                result += 1
        return result


def seeded_start(n: int, seed: int) -> int:
    return ChaCha8(seed).random_range(n)


def mcfps(emb: np.ndarray, u: np.ndarray, budget: int, anchors: int | None,
          neighbours: int, first: int) -> list[dict]:
    """MCFPS from anchor `first` (src/sampling/mcfps.rs, farthest_point.rs, knn.rs)."""
    n = emb.shape[0]
    anchors = budget if anchors is None else anchors
    e64 = emb.astype(np.float64)
    idx = np.arange(n)
    nearest = np.full(n, np.inf)
    chosen = np.zeros(n, dtype=bool)
    picked = np.zeros(n, dtype=bool)
    picks, order, current = [], [], first
    while True:
        order.append(current)
        chosen[current] = True
        d = (e64 - e64[current]) ** 2
        # Sequential left-to-right f64 sum over the dimensions (cumsum), which is
        # exactly how the Rust sums, so that equal distances tie identically.
        dist = np.cumsum(d, axis=1)[:, -1]
        # k nearest: distance, then the anchor itself first, then lower index.
        hood = np.lexsort((idx, idx != current, dist))[:neighbours]
        free = hood[~picked[hood]]
        if len(free):
            best = int(rank_order(u, free)[0])
            picked[best] = True
            picks.append({"index": best, "score": float(u[best]), "anchor": current})
        if len(order) >= anchors:
            break
        nearest = np.minimum(nearest, np.where(chosen, nearest, dist))
        cand = np.where(chosen, -np.inf, nearest)
        if chosen.all():
            break
        current = int(np.argmax(cand))  # first maximum: lower index on ties
    scores = np.array([p["score"] for p in picks], dtype=np.float64)
    pidx = np.array([p["index"] for p in picks])
    ranked = np.lexsort((pidx, -scores)) if picks else []
    return [picks[i] for i in ranked][:budget]


# --------------------------------------------------------------------------
# Outputs (src/output/*.rs)
# --------------------------------------------------------------------------

def write_heatmap(path, grid, scene, tiles, unc, meta):
    w, h = grid.cols, grid.rows
    names = METRICS + ["predicted_class"]
    mem = gdal.GetDriverByName("MEM").Create("", w, h, len(names), gdal.GDT_Float32)
    mem.SetGeoTransform(grid.cell_geo_transform())
    mem.SetProjection(scene["wkt"])
    rows = np.array([r for r, _ in tiles], dtype=np.int64)
    cols = np.array([c for _, c in tiles], dtype=np.int64)
    for b, name in enumerate(names):
        plane = np.full((h, w), HEATMAP_NODATA, dtype=np.float32)
        values = unc["predicted"].astype(np.float32) if name == "predicted_class" else unc[name]
        plane[rows, cols] = values
        band = mem.GetRasterBand(b + 1)
        band.SetNoDataValue(HEATMAP_NODATA)
        band.SetDescription(name)
        band.WriteArray(plane)
    for k, v in meta.items():
        mem.SetMetadataItem(k, v)
    if os.path.exists(path):
        os.remove(path)
    gdal.GetDriverByName("COG").CreateCopy(
        path, mem, options=["COMPRESS=DEFLATE", "PREDICTOR=YES", "OVERVIEWS=AUTO"])
    mem = None


def pseudocolor_qml(band, label, vmin, vmax):
    ramp = [(0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"),
            (1.0, "#fde725")]
    items = "".join(
        f'            <item alpha="255" value="{vmin + (vmax - vmin) * t:.6f}" '
        f'label="{vmin + (vmax - vmin) * t:.3f}" color="{c}"/>\n' for t, c in ramp)
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="0.75" alphaBand="-1" classificationMin="{vmin:.6f}" classificationMax="{vmax:.6f}">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="{vmin:.6f}" maximumValue="{vmax:.6f}" labelPrecision="3">
{items}        </colorrampshader>
      </rastershader>
    </rasterrenderer>
  </pipe>
  <!-- band {band}: {label} (higher = more uncertain) -->
</qgis>
"""


class ToWgs84:
    """Scene CRS -> EPSG:4326 in lon/lat order (traditional GIS axis order)."""

    def __init__(self, wkt):
        src = osr.SpatialReference(wkt=wkt)
        dst = osr.SpatialReference()
        dst.ImportFromEPSG(4326)
        src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self.ct = osr.CoordinateTransformation(src, dst)

    def point(self, x, y):
        lon, lat, _ = self.ct.TransformPoint(x, y)
        return lon, lat

    def ring(self, pts):
        return [(lon, lat) for lon, lat, *_ in self.ct.TransformPoints(pts)]


def tile_properties(ctx, i, lonlat):
    r, c = ctx["tiles"][i]
    unc, names = ctx["unc"], ctx["class_names"]
    pred = int(unc["predicted"][i])
    return {
        "tile_id": f"r{r}_c{c}",
        "row": r,
        "col": c,
        "scene": ctx["scene"]["path"],
        "predicted_class": names[pred] if pred < len(names) else None,
        "predicted_index": pred,
        "probabilities": {n: round6(p) for n, p in zip(names, unc["mean"][i])},
        "uncertainty": {m: round6(unc[m][i]) for m in METRICS},
        "valid_fraction": round6(ctx["valid_fraction"][i]),
        "center_lon": round_coord(lonlat[0]),
        "center_lat": round_coord(lonlat[1]),
    }


def footprint_geometry(ctx, to_wgs, r, c):
    ring = to_wgs.ring(ctx["grid"].footprint(r, c, FOOTPRINT_POINTS_PER_EDGE))
    return {"type": "Polygon",
            "coordinates": [[[round_coord(x), round_coord(y)] for x, y in ring]]}


def write_json(path, obj, pretty=False):
    with open(path, "w") as f:
        if pretty:
            json.dump(obj, f, indent=2, sort_keys=True)
        else:
            json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def write_outputs(ctx, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in [
        ("heatmap", "heatmap.tif"), ("heatmap_style", "heatmap.qml"),
        ("suggestions", "suggestions.geojson"), ("tiles_geojson", "tiles.geojson"),
        ("tiles_csv", "tiles.csv"), ("summary", "summary.json")]}
    grid, unc, names, tiles = ctx["grid"], ctx["unc"], ctx["class_names"], ctx["tiles"]

    classes = ",".join(f"{i}={c}" for i, c in enumerate(names))
    write_heatmap(paths["heatmap"], grid, ctx["scene"], tiles, unc, {
        "NEXTTILE_SCENE": ctx["scene"]["path"],
        "NEXTTILE_TILE_SIZE": str(grid.tile),
        "NEXTTILE_STRIDE": str(grid.stride),
        "NEXTTILE_MC_PASSES": str(ctx["mc_passes"]),
        "NEXTTILE_ENCODER_SHA256": ctx["encoder_sha256"],
        "NEXTTILE_HEAD_SHA256": ctx["head_sha256"],
        "NEXTTILE_CLASSES": classes,
    })
    metric = ctx["metric"]
    vmax = float(np.max(unc[metric], initial=0.0))
    vmax = max(vmax if math.isfinite(vmax) else 0.0, 1e-6)
    with open(paths["heatmap_style"], "w") as f:
        f.write(pseudocolor_qml(METRICS.index(metric) + 1, metric, 0.0,
                                float(np.float32(vmax))))

    to_wgs = ToWgs84(ctx["scene"]["wkt"])
    centres = [to_wgs.point(*grid.centre(r, c)) for r, c in tiles]

    # suggestions.geojson
    features, bbox = [], [math.inf, math.inf, -math.inf, -math.inf]
    for rank, pick in enumerate(ctx["picks"], start=1):
        i = pick["index"]
        r, c = tiles[i]
        geom = footprint_geometry(ctx, to_wgs, r, c)
        for x, y in geom["coordinates"][0]:
            bbox = [min(bbox[0], x), min(bbox[1], y), max(bbox[2], x), max(bbox[3], y)]
        p = tile_properties(ctx, i, centres[i])
        anchor = pick["anchor"]
        p.update({
            "rank": rank,
            "score": round6(pick["score"]),
            "anchor_tile": None if anchor is None else "r{}_c{}".format(*tiles[anchor]),
            "strategy": ctx["strategy"],
            "strategy_params": ctx["strategy_params"],
            "metric": metric,
            "mc_passes": ctx["mc_passes"],
            "seed": ctx["seed"],
            "encoder_sha256": ctx["encoder_sha256"],
            "head_sha256": ctx["head_sha256"],
            "class": None,
        })
        features.append({"type": "Feature", "geometry": geom, "id": f"r{r}_c{c}",
                         "properties": dict(sorted(p.items()))})
    fc = {"type": "FeatureCollection"}
    if math.isfinite(bbox[0]):
        fc["bbox"] = [round_coord(v) for v in bbox]
    fc["features"] = features
    write_json(paths["suggestions"], fc)

    # tiles.geojson
    write_json(paths["tiles_geojson"], {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": footprint_geometry(ctx, to_wgs, r, c),
         "id": f"r{r}_c{c}",
         "properties": dict(sorted(tile_properties(ctx, i, centres[i]).items()))}
        for i, (r, c) in enumerate(tiles)]})

    # tiles.csv
    header = ["tile_id", "row", "col", "center_lon", "center_lat", "valid_fraction",
              "predicted_class", *METRICS, *[f"p_{c}" for c in names]]
    lines = [",".join(header)]
    for i, (r, c) in enumerate(tiles):
        lon, lat = centres[i]
        pred = int(unc["predicted"][i])
        row = [f"r{r}_c{c}", str(r), str(c), f"{lon:.8f}", f"{lat:.8f}",
               f"{float(ctx['valid_fraction'][i]):.4f}",
               names[pred] if pred < len(names) else ""]
        row += [f"{float(unc[m][i]):.6f}" for m in METRICS]
        row += [f"{float(p):.6f}" for p in unc["mean"][i]]
        lines.append(",".join(row))
    with open(paths["tiles_csv"], "w") as f:
        f.write("\n".join(lines) + "\n")
    return paths


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene")
    ap.add_argument("--out", "-o", required=True)
    ap.add_argument("--encoder", default=os.path.join(DEFAULT_MODEL_DIR, "encoder.onnx"))
    ap.add_argument("--head", default=os.path.join(DEFAULT_MODEL_DIR, "head.onnx"))
    ap.add_argument("--tile-size", type=int)
    ap.add_argument("--overlap", type=int, default=0)
    ap.add_argument("--mc-passes", "-t", type=int, default=20)
    ap.add_argument("--strategy", default="top_k", choices=["top_k", "mcfps"],
                    help="default top_k (NextTile's default is mcfps)")
    ap.add_argument("--metric", default="least_confidence", choices=METRICS)
    ap.add_argument("--budget", "-b", type=int, default=20)
    ap.add_argument("--neighbours", type=int, default=16)
    ap.add_argument("--anchors", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first-index", type=int,
                    help="MCFPS: pin the first farthest-point anchor (index into the scored tiles)")
    ap.add_argument("--bands", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--min-valid", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0,
                    help="onnxruntime intra-op threads (0 = onnxruntime's default)")
    ap.add_argument("--graph-opt", default="all", choices=["basic", "extended", "layout", "all"],
                    help="onnxruntime graph optimisation level; default: onnxruntime's own "
                         "default (all). NextTile uses `layout` (ort's Level3); on the demo "
                         "models both give bit-identical outputs")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.budget < 1:
        raise SystemExit("--budget must be at least 1")
    if not 0.0 <= args.min_valid <= 1.0:
        raise SystemExit("--min-valid must be between 0 and 1")
    timings = {}
    t0 = time.perf_counter()

    # --- setup: scene, models, grid
    scene = open_scene(args.scene)
    enc_sess = load_session(args.encoder, args.threads, args.graph_opt)
    head_sess = load_session(args.head, args.threads, args.graph_opt)
    enc, head = encoder_contract(enc_sess), head_contract(head_sess)
    enc_sha, head_sha = sha256_file(args.encoder), sha256_file(args.head)
    warnings = []
    if head["encoder_sha256"] and head["encoder_sha256"] != enc_sha:
        warnings.append("head was trained on another encoder")
    bands = resolve_bands(scene, enc["bands"], args.bands)
    if scene["names_assumed"]:
        warnings.append("no band descriptions; assumed the standard Sentinel-2 order")
    tile = args.tile_size or enc["tile_size"] or 64
    if enc["fixed_input_size"] and tile != enc["fixed_input_size"]:
        raise SystemExit(f"the encoder's input is fixed at {enc['fixed_input_size']} px")
    s = enc["input_stride"]
    if s and (tile < s or tile % s):
        raise SystemExit(f"tile size must be a multiple of {s}")
    grid = Grid(scene["width"], scene["height"], tile, args.overlap, scene["gt"])
    total = grid.rows * grid.cols
    timings["setup_s"] = time.perf_counter() - t0
    log(f"{args.scene}: {scene['width']}x{scene['height']}, bands {bands}, "
        f"{grid.rows}x{grid.cols} tiles of {tile} px")

    # --- read + encode (sequential), batches of --batch-size kept tiles
    t1 = time.perf_counter()
    read_s = encode_s = 0.0
    batch_size = max(args.batch_size, 1)
    ids, valid_fraction, skipped, chunks, pending = [], [], [], [], []

    def encode(batch):
        return enc_sess.run([enc["output"]], {enc["input"]: batch})[0].reshape(len(batch), -1)

    tr = time.perf_counter()
    for r, kept, row_tiles in iter_tile_rows(scene, grid, bands, enc, args.min_valid):
        k = 0
        for c, frac in kept:
            if frac is None:
                skipped.append((r, c))
                continue
            ids.append((r, c))
            valid_fraction.append(frac)
            pending.append(row_tiles[k])
            k += 1
        read_s += time.perf_counter() - tr
        while len(pending) >= batch_size:
            te = time.perf_counter()
            chunks.append(encode(np.ascontiguousarray(np.stack(pending[:batch_size]))))
            encode_s += time.perf_counter() - te
            pending = pending[batch_size:]
        tr = time.perf_counter()
    if pending:
        te = time.perf_counter()
        chunks.append(encode(np.ascontiguousarray(np.stack(pending))))
        encode_s += time.perf_counter() - te
    if not ids:
        raise SystemExit(f"all {total} candidate tiles are nodata")
    embeddings = np.concatenate(chunks, axis=0)
    timings["embed_s"] = time.perf_counter() - t1
    timings["read_s"], timings["encode_s"] = read_s, encode_s
    log(f"embedded {len(ids)} tiles ({len(skipped)} skipped as nodata)")

    # --- head x T
    t2 = time.perf_counter()
    passes = max(args.mc_passes, 1)
    mc = passes > 1
    feed = {head["input"]: embeddings}
    if head["mc_dropout_input"]:
        feed[head["mc_dropout_input"]] = np.array(mc, dtype=bool)
    elif mc:
        warnings.append("head has no mc_dropout_input: its passes are identical")
    probs = np.stack([head_sess.run([head["output"]], feed)[0] for _ in range(passes)])
    if probs.shape[2] != len(head["class_names"]):
        raise SystemExit("head output does not match class_names")
    timings["head_s"] = time.perf_counter() - t2

    # --- uncertainty + selection
    t3 = time.perf_counter()
    unc = compute_all(probs)
    u = unc[args.metric]
    if not np.isfinite(u).all():
        raise SystemExit("non-finite uncertainty")
    if args.strategy == "top_k":
        picks = top_k(u, args.budget)
        strategy_params = "top_k"
    else:
        if args.neighbours < 1 or (args.anchors is not None and args.anchors < 1):
            raise SystemExit("--neighbours and --anchors must be at least 1")
        if not np.isfinite(embeddings).all():
            raise SystemExit("non-finite embeddings")
        first = args.first_index if args.first_index is not None else seeded_start(len(ids), args.seed)
        if not 0 <= first < len(ids):
            raise SystemExit(f"--first-index {first} is outside 0..{len(ids)}")
        picks = mcfps(embeddings, u, args.budget, args.anchors, args.neighbours, first)
        strategy_params = {"mcfps": {"anchors": args.anchors, "neighbours": args.neighbours}}
    timings["select_s"] = time.perf_counter() - t3

    # --- outputs
    t4 = time.perf_counter()
    ctx = {
        "scene": scene, "grid": grid, "tiles": ids, "valid_fraction": valid_fraction,
        "unc": unc, "class_names": head["class_names"], "picks": picks,
        "strategy": args.strategy, "strategy_params": strategy_params,
        "metric": args.metric, "mc_passes": passes, "seed": args.seed,
        "encoder_sha256": enc_sha, "head_sha256": head_sha,
    }
    paths = write_outputs(ctx, args.out)
    timings["write_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0

    names = head["class_names"]
    summary = {
        "implementation": "python-reference",
        "scene": {"path": scene["path"], "width": scene["width"], "height": scene["height"],
                  "crs_wkt": scene["wkt"], "crs_epsg": scene["epsg"],
                  "pixel_size": [abs(scene["gt"][1]), abs(scene["gt"][5])],
                  "bands_used": bands},
        "grid": {"tile_size": grid.tile, "stride": grid.stride, "rows": grid.rows,
                 "cols": grid.cols},
        "encoder": {"name": enc["name"], "path": args.encoder, "sha256": enc_sha},
        "head": {"name": head["name"], "path": args.head, "sha256": head_sha},
        "classes": names,
        "candidate_tiles": total,
        "scored_tiles": len(ids),
        "skipped_nodata": len(skipped),
        "mc_passes": passes,
        "strategy": args.strategy,
        "strategy_params": strategy_params,
        "metric": args.metric,
        "budget": args.budget,
        "seed": args.seed,
        "suggestions": [
            {"rank": k + 1, "tile_id": "r{}_c{}".format(*ids[p["index"]]),
             "score": p["score"], "predicted_class": names[int(unc["predicted"][p["index"]])]}
            for k, p in enumerate(picks)],
        "warnings": warnings,
        "timings": timings,
        "outputs": paths,
        "versions": {"gdal": gdal.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    write_json(paths["summary"], summary, pretty=True)
    for w in warnings:
        log(f"warning: {w}")
    print(json.dumps({"implementation": "python-reference", "scene": scene["path"],
                      "scored_tiles": len(ids), "mc_passes": passes,
                      "strategy": args.strategy, "threads": args.threads,
                      "timings": {k: round(v, 6) for k, v in timings.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
