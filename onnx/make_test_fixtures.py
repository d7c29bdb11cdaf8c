#!/usr/bin/env python3
"""Write the tiny ONNX fixtures used by the Rust tests (tests/fixtures/).

- no_metadata.onnx: image N x 3 x H x W -> GlobalAveragePool -> Flatten -> N x 3.
  A valid encoder-shaped graph with NO metadata at all: NextTile must refuse
  it and name the missing contract keys.
- deterministic_head.onnx: embedding N x 256 -> MatMul (zeros) + Add (bias) ->
  Softmax over 10 classes, no dropout: every pass is identical, so BALD must
  be exactly 0. Bias = log of (0.5, 0.3, 0.2, 0, ...) + small, written out.

- channel_mean_s1s2.onnx: image N x 15 x H x W (VV, VH, then the 13 Sentinel-2
  bands; metadata `modalities` s1 + s2) -> GlobalAveragePool -> Flatten ->
  N x 15: embedding[c] = the tile mean of standardised channel c. Standardisation
  (raw units): VV/VH mean -12/-19 dB, std 4/5 dB; S2 mean 1500, std 1000.
- channel_mean_perband.onnx / channel_mean_perband_concat.onnx: the same per
  band (input N x 1 x H x W, `per_band` true, band_fusion mean / concat,
  default_bands VV, B04): embedding = the tile mean of the one band; NextTile
  fuses the chosen bands' embeddings (mean: 1-d; concat: k-d).
- sum_head_1.onnx / sum_head_15.onnx: embedding N x D -> logits (s, -s) with
  s = sum of the embedding -> Softmax over (land, water). Deterministic.

- deepness_recognition.onnx / deepness_recognition_bare.onnx: image N x 3 x 64 x 64
  -> channel means, metadata written the way Deepness's docs say (json.dumps) and
  in the older bare-text form; sum_head_3.onnx reads their 3-d embeddings, its
  class names the Python literal of Deepness's table.
- channel_mean_rgb.onnx: a NextTile RGB encoder (scale, clip, standardisation)
  and channel_mean_rgb_deepness.onnx, its `set_metadata.py --deepness` export.

Run: python onnx/make_test_fixtures.py   (needs the `onnx` and `numpy` packages)
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
           "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]


def no_metadata():
    g = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])],
        "no_metadata",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, OUT / "no_metadata.onnx")


def deterministic_head():
    w = np.zeros((256, 10), dtype=np.float32)
    b = np.log(np.array([0.5, 0.3, 0.2] + [1e-3] * 7, dtype=np.float32))
    g = helper.make_graph(
        [helper.make_node("MatMul", ["embedding", "W"], ["z"]),
         helper.make_node("Add", ["z", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "deterministic_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for k, v in {"nexttile_role": "head", "class_names": str(CLASSES).replace("'", '"'),
                 "multi_label": "false", "model_name": "deterministic-test-head"}.items():
        p = m.metadata_props.add(); p.key = k; p.value = v
    onnx.checker.check_model(m)
    onnx.save(m, OUT / "deterministic_head.onnx")


S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S1S2_MEAN = [-12.0, -19.0] + [1500.0] * 13
S1S2_STD = [4.0, 5.0] + [1000.0] * 13


def _save(m, name, meta):
    m.ir_version = 8
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v)
    onnx.checker.check_model(m)
    onnx.save(m, OUT / name)


def channel_mean(channels, name, meta):
    g = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])],
        "channel_mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, "h", "w"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", channels])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    base = {"nexttile_role": "encoder", "input_bands": ["VV", "VH"] + S2,
            "standardization_mean": S1S2_MEAN, "standardization_std": S1S2_STD,
            "tiles_size": "32", "resolution": "1000"}
    _save(m, name, {**base, **meta})


def sum_head(d, name):
    w = np.zeros((d, 2), dtype=np.float32)
    w[:, 0], w[:, 1] = 1.0, -1.0
    g = helper.make_graph(
        [helper.make_node("MatMul", ["embedding", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "sum_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _save(m, name, {"nexttile_role": "head", "class_names": ["land", "water"],
                    "model_name": f"sum-test-head-{d}"})


def image_mean_graph(name, h, w):
    """image N x 3 x H x W -> GlobalAveragePool -> Flatten -> embedding N x 3."""
    g = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["embedding"])],
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def deepness_style():
    """Recognition models whose metadata is written the way Deepness's documentation
    says (https://qgis-plugin-deepness.readthedocs.io/en/latest/creators/creators_add_metadata_to_model.html:
    `m.value = json.dumps(...)` for every key, fixed tile shape), and the same
    with the older bare-text values Deepness-era tools wrote; and a head whose
    class names are the Python literal of the documentation's table."""
    docs = {
        "model_type": json.dumps("Recognition"),
        "resolution": json.dumps(1000),
        "tiles_size": json.dumps(64),
        "tiles_overlap": json.dumps(0),
        "standardization_mean": json.dumps([0.4, 0.4, 0.4]),
        "standardization_std": json.dumps([0.2, 0.2, 0.2]),
    }
    for name, meta in [("deepness_recognition.onnx", docs),
                       ("deepness_recognition_bare.onnx", {**docs, "model_type": "Recognition"})]:
        m = image_mean_graph("deepness_recognition", 64, 64)
        for k, v in meta.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        onnx.checker.check_model(m)
        onnx.save(m, OUT / name)
    w = np.zeros((3, 2), dtype=np.float32)
    w[:, 0], w[:, 1] = 1.0, -1.0
    g = helper.make_graph(
        [helper.make_node("MatMul", ["embedding", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "sum_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _save(m, "sum_head_3.onnx", {"model_type": json.dumps("Classifier"),
                                 "class_names": "{0: 'land', 1: 'water'}",
                                 "model_name": "sum-test-head-3"})


def nexttile_rgb_and_deepness_export():
    """channel_mean_rgb.onnx: a NextTile encoder with the EuroSAT-RGB encoders'
    contract (B04, B03, B02; raw / 2800 clipped to [0, 1], then standardised;
    dynamic H x W); channel_mean_rgb_deepness.onnx: what
    `set_metadata.py --deepness` makes of it."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from set_metadata import deepness_export

    m = image_mean_graph("channel_mean_rgb", "h", "w")
    src = OUT / "channel_mean_rgb.onnx"
    _save(m, src.name, {
        "nexttile_role": "encoder", "model_type": "Recognition", "nexttile_contract": "1",
        "model_name": "channel-mean-rgb", "input_bands": ["B04", "B03", "B02"],
        "input_scale": repr(1 / 2800), "input_offset": "0", "input_clip": [0.0, 1.0],
        "standardization_mean": [0.3445, 0.3804, 0.4079], "standardization_std": [0.2029, 0.1369, 0.1155],
        "resolution": "1000", "tiles_size": "64", "tiles_overlap": "0"})
    deepness_export(str(src), str(OUT / "channel_mean_rgb_deepness.onnx"))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    no_metadata()
    deterministic_head()
    channel_mean(15, "channel_mean_s1s2.onnx",
                 {"modalities": {"s1": ["VV", "VH"], "s2": S2}, "model_name": "channel-mean-s1s2"})
    for fusion in ["mean", "concat"]:
        channel_mean(1, "channel_mean_perband.onnx" if fusion == "mean" else "channel_mean_perband_concat.onnx",
                     {"per_band": "true", "band_fusion": fusion, "default_bands": ["VV", "B04"],
                      "model_name": f"channel-mean-perband-{fusion}"})
    sum_head(1, "sum_head_1.onnx")
    sum_head(2, "sum_head_2.onnx")
    sum_head(15, "sum_head_15.onnx")
    deepness_style()
    nexttile_rgb_and_deepness_export()
    print("wrote", sorted(p.name for p in OUT.glob("*.onnx")))
