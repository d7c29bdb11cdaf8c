#!/usr/bin/env python3
"""Check that two `nexttile score` output folders agree (e.g. NextTile vs the
Python reference of benches/reference_pipeline.py).

  python benches/compare_outputs.py OURS_DIR REF_DIR [--atol 1e-4] [--json]

Deterministic runs (both with --mc-passes 1) are compared strictly:
  * tiles.csv: same header, same tile ids in the same (row-major) order, same
    row/col, centre lon/lat within 1e-8 deg, valid_fraction within 1e-4, same
    predicted_class, every metric and p_<class> within --atol;
  * heatmap.tif: same size, band count, band names, data type, nodata (-1),
    geotransform and CRS; same nodata cells; every band within --atol
    (predicted_class exactly equal);
  * suggestions.geojson: same tile ids in the same rank order (and the same
    MCFPS anchors), per-suggestion probabilities/uncertainty within --atol,
    footprints within 1e-8 deg.
A predicted class (or a rank order) that differs only where the two top
probabilities (or two scores) are within --atol of each other is reported as
a tie, not a failure.

MC-dropout runs (mc_passes > 1 in either folder) cannot agree tile by tile:
onnxruntime draws fresh dropout masks in every run, so the mean over T passes
carries Monte-Carlo noise. Then the tile set, valid fractions and georeferencing
must still match exactly, while the metrics are compared statistically:
  * predicted_class must agree on >= --mc-min-agree (default 0.99) of the tiles
    that both runs call confident (max mean probability >= --mc-confident, 0.8);
  * with --baseline DIR2 (a second run of OURS with the same settings, i.e. the
    run-to-run MC noise of the implementation itself), the mean |difference|
    between OURS and REF of every metric and of the probabilities must be at
    most --mc-noise-factor (1.5) x the mean |difference| between OURS and DIR2;
  * without a baseline, the Pearson correlation across tiles of every metric must
    be >= --mc-min-corr (0.9; 0.7 for the noisier bald and variation_ratio at
    T = 20), and a metric that is constant in one run but not in the other
    (e.g. dropout left off: bald == 0 everywhere) fails;
  * the overlap of the suggested tile sets is reported, not required.

Exit status: 0 = agree, 1 = mismatch (a diff is printed), 2 = bad input.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

METRICS = ["entropy", "bald", "margin", "least_confidence", "variation_ratio"]
COORD_TOL = 1e-8  # degrees, the GeoJSON / CSV precision
MAX_LISTED = 10


class Report:
    def __init__(self):
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.numbers: dict = {}

    def fail(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)


def load_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise SystemExit(f"{path} is empty")
    return rows[0], rows[1:]


def mc_passes_of(folder):
    """mc_passes from summary.json, else heatmap metadata, else None."""
    p = os.path.join(folder, "summary.json")
    if os.path.exists(p):
        with open(p) as f:
            v = json.load(f).get("mc_passes")
        if v is not None:
            return int(v)
    p = os.path.join(folder, "heatmap.tif")
    if os.path.exists(p):
        v = gdal.Open(p).GetMetadataItem("NEXTTILE_MC_PASSES")
        if v is not None:
            return int(v)
    return None


def listed(items):
    items = list(items)
    more = f" … (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(str(x) for x in items[:MAX_LISTED]) + more


def metric_table(folder, ids):
    """{metric or p_<class>: values in the order of `ids`} from tiles.csv."""
    h, rows = load_csv(os.path.join(folder, "tiles.csv"))
    col = {name: i for i, name in enumerate(h)}
    by_id = {r[0]: r for r in rows}
    if set(by_id) != set(ids):
        raise SystemExit(f"{folder}: tile set differs from OURS; not a usable baseline")
    names = METRICS + [c for c in h if c.startswith("p_")]
    return {n: np.array([float(by_id[i][col[n]]) for i in ids]) for n in names}


def compare_tiles_csv(ours_dir, ref_dir, atol, mc, args, rep):
    ho, ro = load_csv(os.path.join(ours_dir, "tiles.csv"))
    hr, rr = load_csv(os.path.join(ref_dir, "tiles.csv"))
    if ho != hr:
        rep.fail(f"tiles.csv headers differ:\n  ours: {','.join(ho)}\n  ref:  {','.join(hr)}")
        return None
    col = {name: i for i, name in enumerate(ho)}
    ids_o = [r[0] for r in ro]
    ids_r = [r[0] for r in rr]
    rep.numbers["tiles_ours"], rep.numbers["tiles_ref"] = len(ids_o), len(ids_r)
    if set(ids_o) != set(ids_r):
        only_o = sorted(set(ids_o) - set(ids_r))
        only_r = sorted(set(ids_r) - set(ids_o))
        rep.fail(f"tile sets differ: {len(only_o)} only in ours [{listed(only_o)}], "
                 f"{len(only_r)} only in ref [{listed(only_r)}]")
        return None
    if ids_o != ids_r:
        rep.fail("tiles.csv rows are in a different order (expected row-major in both)")
    by_r = {r[0]: r for r in rr}
    rr = [by_r[i] for i in ids_o]

    def num(rows, name):
        return np.array([float(r[col[name]]) for r in rows])

    # geometry-ish columns: exact
    for name in ("row", "col"):
        if not np.array_equal(num(ro, name), num(rr, name)):
            rep.fail(f"tiles.csv column {name} differs")
    for name in ("center_lon", "center_lat"):
        d = np.abs(num(ro, name) - num(rr, name))
        rep.numbers[f"max_abs_diff_{name}"] = float(d.max(initial=0))
        if (d > COORD_TOL + 1e-12).any():
            bad = [ids_o[i] for i in np.flatnonzero(d > COORD_TOL + 1e-12)]
            rep.fail(f"tiles.csv {name} differs by up to {d.max():.3g} deg at {listed(bad)}")
    d = np.abs(num(ro, "valid_fraction") - num(rr, "valid_fraction"))
    rep.numbers["max_abs_diff_valid_fraction"] = float(d.max(initial=0))
    if (d > 1e-4 + 1e-12).any():
        bad = [ids_o[i] for i in np.flatnonzero(d > 1e-4 + 1e-12)]
        rep.fail(f"tiles.csv valid_fraction differs at {listed(bad)}")

    prob_cols = [h for h in ho if h.startswith("p_")]
    po = np.stack([num(ro, c) for c in prob_cols], axis=1)
    pr = np.stack([num(rr, c) for c in prob_cols], axis=1)
    pred_o = [r[col["predicted_class"]] for r in ro]
    pred_r = [r[col["predicted_class"]] for r in rr]
    same_pred = np.array([a == b for a, b in zip(pred_o, pred_r)])
    rep.numbers["predicted_class_agreement"] = float(same_pred.mean()) if len(same_pred) else 1.0

    if not mc:
        # metrics + probabilities, tile by tile
        for name in METRICS + prob_cols:
            d = np.abs(num(ro, name) - num(rr, name))
            rep.numbers.setdefault("csv_max_abs_diff", {})[name] = float(d.max(initial=0))
            if (d > atol).any():
                idx = np.flatnonzero(d > atol)
                ex = ", ".join(f"{ids_o[i]}: {ro[i][col[name]]} vs {rr[i][col[name]]}"
                               for i in idx[:MAX_LISTED])
                rep.fail(f"tiles.csv {name}: {len(idx)} tiles differ by > {atol} "
                         f"(max {d.max():.3g}); {ex}")
        # predicted class: ties (top-2 within atol) are not failures
        top2 = np.sort(po, axis=1)[:, -2:]
        tie = (top2[:, 1] - top2[:, 0]) <= atol
        bad = [ids_o[i] for i in np.flatnonzero(~same_pred & ~tie)]
        ties = [ids_o[i] for i in np.flatnonzero(~same_pred & tie)]
        if bad:
            rep.fail(f"predicted_class differs at {len(bad)} tiles: "
                     + listed(f"{t} ({pred_o[ids_o.index(t)]} vs {pred_r[ids_o.index(t)]})"
                              for t in bad))
        if ties:
            rep.note(f"predicted_class differs at {len(ties)} near-tie tiles: {listed(ties)}")
    else:
        lc_o = 1.0 - po.max(axis=1)
        lc_r = 1.0 - pr.max(axis=1)
        confident = (lc_o <= 1.0 - args.mc_confident) & (lc_r <= 1.0 - args.mc_confident)
        agree = float(same_pred[confident].mean()) if confident.any() else 1.0
        rep.numbers["mc_confident_tiles"] = int(confident.sum())
        rep.numbers["mc_confident_class_agreement"] = agree
        if agree < args.mc_min_agree:
            bad = [ids_o[i] for i in np.flatnonzero(confident & ~same_pred)]
            rep.fail(f"predicted_class agrees on only {agree:.4f} of {int(confident.sum())} "
                     f"confident tiles (need {args.mc_min_agree}); differing: {listed(bad)}")
        base = metric_table(args.baseline, ids_o) if args.baseline else None
        for name in METRICS + ["probabilities"]:
            if name == "probabilities":
                a, b = po.ravel(), pr.ravel()
            else:
                a, b = num(ro, name), num(rr, name)
            mad = float(np.abs(a - b).mean()) if len(a) else 0.0
            flat_a, flat_b = a.std() == 0, b.std() == 0
            corr = (float(np.corrcoef(a, b)[0, 1])
                    if len(a) > 1 and not flat_a and not flat_b else float("nan"))
            stats = {"mean_abs_diff": mad, "pearson_r": corr,
                     "mean_ours": float(a.mean()), "mean_ref": float(b.mean())}
            rep.numbers.setdefault("mc_metric_stats", {})[name] = stats
            if flat_a != flat_b:
                rep.fail(f"{name} is constant in {'ours' if flat_a else 'ref'} but not in "
                         f"{'ref' if flat_a else 'ours'} (MC dropout off on one side?)")
            if base is not None:
                c = (np.stack([base[p] for p in prob_cols], axis=1).ravel()
                     if name == "probabilities" else base[name])
                noise = float(np.abs(a - c).mean()) if len(a) else 0.0
                stats["baseline_mean_abs_diff"] = noise
                if mad > args.mc_noise_factor * noise + 1e-6:
                    rep.fail(f"{name}: mean |ours - ref| {mad:.4g} > {args.mc_noise_factor} x "
                             f"run-to-run noise {noise:.4g} (ours vs baseline)")
            else:
                need = args.mc_min_corr if name not in ("bald", "variation_ratio") \
                    else min(args.mc_min_corr, 0.7)
                if not math.isnan(corr) and corr < need:
                    rep.fail(f"{name}: correlation across tiles {corr:.4f} < {need} "
                             f"(mean |diff| {mad:.4g})")
    return ids_o


def srs_of(ds):
    s = osr.SpatialReference()
    s.ImportFromWkt(ds.GetProjection())
    return s


def compare_heatmap(ours_dir, ref_dir, atol, mc, rep):
    a = gdal.Open(os.path.join(ours_dir, "heatmap.tif"))
    b = gdal.Open(os.path.join(ref_dir, "heatmap.tif"))
    if (a.RasterXSize, a.RasterYSize, a.RasterCount) != (b.RasterXSize, b.RasterYSize, b.RasterCount):
        rep.fail(f"heatmap size differs: {a.RasterXSize}x{a.RasterYSize}x{a.RasterCount} vs "
                 f"{b.RasterXSize}x{b.RasterYSize}x{b.RasterCount}")
        return
    gta, gtb = a.GetGeoTransform(), b.GetGeoTransform()
    if any(abs(x - y) > 1e-9 * max(1.0, abs(x)) for x, y in zip(gta, gtb)):
        rep.fail(f"heatmap geotransform differs: {gta} vs {gtb}")
    if not srs_of(a).IsSame(srs_of(b)):
        rep.fail("heatmap CRS differs")
    rep.numbers["heatmap_size"] = [a.RasterXSize, a.RasterYSize, a.RasterCount]
    diffs = {}
    for i in range(1, a.RasterCount + 1):
        ba, bb = a.GetRasterBand(i), b.GetRasterBand(i)
        name = ba.GetDescription()
        if name != bb.GetDescription():
            rep.fail(f"heatmap band {i} is '{name}' vs '{bb.GetDescription()}'")
        if ba.DataType != bb.DataType:
            rep.fail(f"heatmap band {name}: data type {gdal.GetDataTypeName(ba.DataType)} vs "
                     f"{gdal.GetDataTypeName(bb.DataType)}")
        if ba.GetNoDataValue() != bb.GetNoDataValue():
            rep.fail(f"heatmap band {name}: nodata {ba.GetNoDataValue()} vs {bb.GetNoDataValue()}")
        va, vb = ba.ReadAsArray().astype(np.float64), bb.ReadAsArray().astype(np.float64)
        nd = ba.GetNoDataValue()
        ma, mb = va == nd, vb == nd
        if not np.array_equal(ma, mb):
            cells = np.argwhere(ma != mb)
            rep.fail(f"heatmap band {name}: nodata cells differ at {len(cells)} cells "
                     f"(row,col) {listed(tuple(int(v) for v in c) for c in cells)}")
            continue
        valid = ~ma
        d = np.abs(va - vb)[valid]
        diffs[name] = float(d.max(initial=0))
        if mc:
            continue
        if name == "predicted_class":
            n = int((d != 0).sum())
            if n:
                rep.note(f"heatmap predicted_class differs in {n} cells (see tiles.csv check)")
        elif (d > atol).any():
            cells = np.argwhere(valid & (np.abs(va - vb) > atol))
            rep.fail(f"heatmap band {name}: {len(cells)} cells differ by > {atol} "
                     f"(max {d.max():.3g}); (row,col) {listed(tuple(int(v) for v in c) for c in cells)}")
    rep.numbers["heatmap_max_abs_diff"] = diffs


def load_suggestions(folder):
    with open(os.path.join(folder, "suggestions.geojson")) as f:
        return json.load(f)["features"]


def compare_suggestions(ours_dir, ref_dir, atol, mc, rep):
    fo, fr = load_suggestions(ours_dir), load_suggestions(ref_dir)
    po, pr = [f["properties"] for f in fo], [f["properties"] for f in fr]
    ids_o, ids_r = [p["tile_id"] for p in po], [p["tile_id"] for p in pr]
    strat = {p.get("strategy") for p in po + pr}
    rep.numbers["suggestions"] = {"ours": len(ids_o), "ref": len(ids_r),
                                  "strategy": sorted(s for s in strat if s),
                                  "overlap": len(set(ids_o) & set(ids_r))}
    if [p.get("rank") for p in po] != list(range(1, len(po) + 1)) or \
            [p.get("rank") for p in pr] != list(range(1, len(pr) + 1)):
        rep.fail("suggestion ranks are not 1..n in order")
    if mc:
        if ids_o != ids_r:
            rep.note(f"MC run: {len(set(ids_o) & set(ids_r))} of {len(ids_o)} suggested tiles "
                     "in common (not required: dropout masks differ per run)")
        return
    if len(strat) > 1:
        rep.fail(f"suggestions come from different strategies: {sorted(strat)}")
    if ids_o != ids_r:
        so = {p["tile_id"]: p["score"] for p in po}
        sr = {p["tile_id"]: p["score"] for p in pr}
        # differing only by ranks whose scores tie within atol?
        tie_only = (sorted(ids_o) == sorted(ids_r) and
                    all(abs(so[a] - so[b]) <= atol for a, b in zip(ids_o, ids_r)))
        lines = [f"  {k + 1:>3}  {a or '-':>10} {so.get(a, float('nan')):.6f}   "
                 f"{b or '-':>10} {sr.get(b, float('nan')):.6f}{'' if a == b else '  <-'}"
                 for k, (a, b) in enumerate(
                     zip(ids_o + [None] * (len(ids_r) - len(ids_o)),
                         ids_r + [None] * (len(ids_o) - len(ids_r))))]
        msg = "suggested tiles differ (rank, ours id/score, ref id/score):\n" + "\n".join(lines)
        if tie_only:
            rep.note("suggestion order differs only among scores tied within atol:\n" + msg)
        else:
            rep.fail(msg)
        return
    anchors_o = [p.get("anchor_tile") for p in po]
    anchors_r = [p.get("anchor_tile") for p in pr]
    if anchors_o != anchors_r:
        rep.fail(f"suggestion anchors differ: {anchors_o} vs {anchors_r}")
    worst = 0.0
    for a, b, ga, gb in zip(po, pr, fo, fr):
        for key in ("probabilities", "uncertainty"):
            if set(a[key]) != set(b[key]):
                rep.fail(f"{a['tile_id']}: {key} keys differ")
                continue
            for k in a[key]:
                d = abs(a[key][k] - b[key][k])
                worst = max(worst, d)
                if d > atol:
                    rep.fail(f"suggestion {a['tile_id']} {key}.{k}: {a[key][k]} vs {b[key][k]}")
        if abs(a["score"] - b["score"]) > atol:
            rep.fail(f"suggestion {a['tile_id']} score: {a['score']} vs {b['score']}")
        ra, rb = ga["geometry"]["coordinates"][0], gb["geometry"]["coordinates"][0]
        if len(ra) != len(rb):
            rep.fail(f"suggestion {a['tile_id']}: footprint has {len(ra)} vs {len(rb)} points")
        elif np.abs(np.array(ra) - np.array(rb)).max() > COORD_TOL + 1e-12:
            rep.fail(f"suggestion {a['tile_id']}: footprints differ by "
                     f"{np.abs(np.array(ra) - np.array(rb)).max():.3g} deg")
    rep.numbers["suggestions"]["max_abs_diff_props"] = worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours")
    ap.add_argument("ref")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--mc", choices=["auto", "yes", "no"], default="auto",
                    help="statistical comparison for MC-dropout runs (auto: when mc_passes > 1)")
    ap.add_argument("--mc-confident", type=float, default=0.8)
    ap.add_argument("--mc-min-agree", type=float, default=0.99)
    ap.add_argument("--mc-min-corr", type=float, default=0.9)
    ap.add_argument("--baseline", metavar="DIR2",
                    help="MC mode: a second run of OURS, to measure run-to-run noise")
    ap.add_argument("--mc-noise-factor", type=float, default=1.5)
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = ap.parse_args(argv)

    for d in (args.ours, args.ref):
        for f in ("tiles.csv", "heatmap.tif", "suggestions.geojson"):
            if not os.path.exists(os.path.join(d, f)):
                print(f"missing {os.path.join(d, f)}", file=sys.stderr)
                return 2
    t_o, t_r = mc_passes_of(args.ours), mc_passes_of(args.ref)
    mc = args.mc == "yes" or (args.mc == "auto" and ((t_o or 1) > 1 or (t_r or 1) > 1))
    rep = Report()
    rep.numbers["mc_passes"] = {"ours": t_o, "ref": t_r}
    rep.numbers["mode"] = "mc-statistical" if mc else "deterministic"
    if not mc and t_o != t_r:
        rep.fail(f"mc_passes differ: {t_o} vs {t_r}")

    compare_tiles_csv(args.ours, args.ref, args.atol, mc, args, rep)
    compare_heatmap(args.ours, args.ref, args.atol, mc, rep)
    compare_suggestions(args.ours, args.ref, args.atol, mc, rep)

    print(f"compare {args.ours} vs {args.ref} ({rep.numbers['mode']}, atol {args.atol})")
    n = rep.numbers
    print(f"  tiles: {n.get('tiles_ours')} vs {n.get('tiles_ref')}; predicted_class agreement "
          f"{n.get('predicted_class_agreement', float('nan')):.4f}")
    if "csv_max_abs_diff" in n:
        worst = max(n["csv_max_abs_diff"].items(), key=lambda kv: kv[1])
        print(f"  tiles.csv max |diff| over metrics+probabilities: {worst[1]:.3g} ({worst[0]})")
    if "mc_metric_stats" in n:
        for k, v in n["mc_metric_stats"].items():
            noise = (f", run-to-run noise {v['baseline_mean_abs_diff']:.4g}"
                     if "baseline_mean_abs_diff" in v else "")
            print(f"  {k:>18}: mean |diff| {v['mean_abs_diff']:.4g}{noise}, "
                  f"r = {v['pearson_r']:.4f}, mean {v['mean_ours']:.4f} vs {v['mean_ref']:.4f}")
        print(f"  confident tiles: {n['mc_confident_tiles']}, class agreement "
              f"{n['mc_confident_class_agreement']:.4f}")
    if "heatmap_max_abs_diff" in n:
        print("  heatmap max |diff|: " + ", ".join(
            f"{k} {v:.3g}" for k, v in n["heatmap_max_abs_diff"].items()))
    s = n.get("suggestions", {})
    print(f"  suggestions: {s.get('ours')} vs {s.get('ref')}, {s.get('overlap')} in common")
    for note in rep.notes:
        print(f"  note: {note}")
    if args.json:
        print(json.dumps({"ok": not rep.errors, "errors": rep.errors, **n}))
    if rep.errors:
        print(f"MISMATCH ({len(rep.errors)}):", file=sys.stderr)
        for e in rep.errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print("OK: outputs agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
