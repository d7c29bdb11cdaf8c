#!/usr/bin/env python3
"""Write the tiny ONNX fixtures used by the Rust tests (tests/fixtures/).

- no_metadata.onnx: image N x 3 x H x W -> GlobalAveragePool -> Flatten -> N x 3.
  A valid encoder-shaped graph with NO metadata at all: NextTile must refuse
  it and name the missing contract keys.
- deterministic_head.onnx: embedding N x 256 -> MatMul (zeros) + Add (bias) ->
  Softmax over 10 classes, no dropout: every pass is identical, so BALD must
  be exactly 0. Bias = log of (0.5, 0.3, 0.2, 0, ...) + small, written out.

Run: python onnx/make_test_fixtures.py   (needs the `onnx` and `numpy` packages)
"""
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


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    no_metadata()
    deterministic_head()
    print("wrote", sorted(p.name for p in OUT.glob("*.onnx")))
