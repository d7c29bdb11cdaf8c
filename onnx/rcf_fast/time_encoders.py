#!/usr/bin/env python3
"""onnxruntime CPU time per 64-px tile of NextTile encoders, measured in one process.

    python onnx/rcf_fast/time_encoders.py [--threads 1,2] [--reps 7] NAME=ENCODER.onnx ...
    python onnx/rcf_fast/time_encoders.py --synthetic s2_k512_pm,s1_k256_half ...  (random filters,
        the graph shapes of onnx/rcf_eurosat/build.py's rcf_graph; timing depends only on shapes)

Batches of 64 standardised random tiles (N x 3 x 64 x 64, float32), one warm-up run per session,
then --reps rounds that visit every model in turn (interleaved, so machine load hits all alike);
reports the median ms per tile for each model and thread count, and the ratio to the first model.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "rcf_eurosat" / "build.py"


def synthetic(spec: str):
    """'s2_k512_pm' -> rcf_graph with random unit filters, stride 2, K 512, form pm, b 0.5, standardised."""
    spec_mod = importlib.util.spec_from_file_location("rcf_build", BUILD)
    build = importlib.util.module_from_spec(spec_mod)
    spec_mod.loader.exec_module(build)
    s, k = spec.split("_")[:2]
    stride, k = int(s[1:]), int(k[1:])
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, 27))
    filt = {"w": w, "c": rng.standard_normal(k), "f": w}
    g = build.rcf_graph(filt, k, [0.5], standardize=(np.zeros(2 * k), np.ones(2 * k)), stride=stride)
    return g.SerializeToString()


def main(argv):
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="NAME=path/to/encoder.onnx")
    p.add_argument("--synthetic", default="", help="comma list like s2_k512_pm,s1_k256_half")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    models = []
    for m in a.models:
        name, path = m.split("=", 1)
        models.append((name, Path(path).read_bytes()))
    for s in [v for v in a.synthetic.split(",") if v]:
        models.append((s, synthetic(s)))
    x = np.random.default_rng(1).standard_normal((a.batch, 3, 64, 64)).astype(np.float32)
    out = {"batch": a.batch, "tile_px": 64, "reps": a.reps, "onnxruntime": ort.__version__, "ms_per_tile": {}}
    for t in [int(v) for v in a.threads.split(",")]:
        sess = {}
        for name, blob in models:
            so = ort.SessionOptions()
            so.intra_op_num_threads = t
            so.inter_op_num_threads = 1
            s = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            iname = s.get_inputs()[0].name
            s.run(None, {iname: x})  # warm-up
            sess[name] = (s, iname)
        times = {n: [] for n, _ in models}
        for _ in range(a.reps):
            for name, _ in models:
                s, iname = sess[name]
                t0 = time.perf_counter()
                s.run(None, {iname: x})
                times[name].append((time.perf_counter() - t0) * 1000 / a.batch)
        med = {n: float(np.median(v)) for n, v in times.items()}
        base = med[models[0][0]]
        out["ms_per_tile"][f"threads_{t}"] = {n: round(v, 3) for n, v in med.items()}
        for n, v in med.items():
            print(f"threads {t}  {n:28s} {v:8.3f} ms/tile  x{v / base:5.2f} vs {models[0][0]}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
