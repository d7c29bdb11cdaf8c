#!/usr/bin/env python3
"""Derive NextTile's encoder-only ONNX from ukis-csmask 1.0.0's Sentinel-2 cloud model.

ukis-csmask (German Aerospace Center, DLR; Apache-2.0) ships a U-Net with an
EfficientNet-B4 encoder (segmentation_models_pytorch "unet" + "efficientnet-b4",
exported by PyTorch 2.4.1 and converted to float16 with float32 graph I/O) that
segments clear / cloud / cloud-shadow in Level-1C top-of-atmosphere reflectance
of the six bands blue, green, red, nir, swir16, swir22 (Sentinel-2 B02 B03 B04
B08 B11 B12). This script keeps only its encoder:

1. the bottleneck is found structurally: the data input of the first Resize
   (the decoder's first nearest-neighbour upsampling, `/model/decoder/blocks.0/
   Resize`) traced back through its Cast, i.e. `/model/encoder/_blocks.31/Add_output_0`
   (448 channels at 1/32 of the input size, the deepest feature map the U-Net
   decoder consumes; EfficientNet's _conv_head is not part of the smp encoder);
2. every node that this tensor does not depend on is dropped (decoder,
   segmentation head, output cast), as are unused initializers and all stored
   intermediate shapes (they pinned 256 x 256);
3. --embedding multiscale (default, what build.sh ships): every encoder
   tensor the rest of the U-Net reads -- the four skip sources (stem Swish
   output at 1/2, _blocks.5 at 1/4, _blocks.9 at 1/8, _blocks.21 at 1/16) and
   the bottleneck (_blocks.31 at 1/32) -- gets Cast(float32) ->
   GlobalAveragePool -> Flatten, and the five results are concatenated in
   that order into the graph output `embedding` [N, 48+32+56+160+448 = 744]
   float32. --embedding bottleneck pools the bottleneck alone ([N, 448]); on
   the Sen1Floods11 land/water check it was worse than the same network with
   random weights (README), which is why it is not the default;
4. the input `input` becomes [batch, 6, height, width]. The encoder's only
   shape-dependent ops are the TF-"same" static paddings of EfficientNet; their
   pad amounts are constants (computed for 256 px) and equal the dynamic "same"
   padding for every input whose side is a multiple of 32, so any multiple of
   32 is exact (input_stride = 32);
5. by default (--compute fp16) the original float16 weights and arithmetic are
   kept, so each pooled part is the original network's own feature map
   averaged in float32 (max abs difference 1e-4 from averaging the original
   model's float16 tensor). --compute fp32 widens the weights to float32 (exact) and
   computes in float32: twice the file size, same speed on the test machine
   (no AVX512-FP16 there; see README timing), embeddings within ~4e-3.

The NextTile contract metadata (bands, reflectance scaling, the package's
band mean/std from model_6b_l1c.json, tile size, stride, provenance with the
SHA-256 of the original file) is written into metadata_props. Output is
byte-deterministic: the same source gives the same file.

Needs only `onnx` (1.17.0) and `numpy`. onnxruntime is used only by --check.

    python3 derive_encoder.py --src DIR/ukis_csmask/model_6b_l1c.onnx --out encoder.onnx [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "ukis-csmask"
PACKAGE_VERSION = "1.0.0"
SRC_NAME = "model_6b_l1c.onnx"
# SHA-256 of ukis_csmask/model_6b_l1c.onnx inside ukis_csmask-1.0.0-py3-none-any.whl
SRC_SHA256 = "aa79e9a0f02ff8e0243d93771d1daf6a8d1166b7ac06c3771560b83367c6c573"

# ukis-csmask band names (model_6b_l1c.json "band_names") -> Sentinel-2 band ids
UKIS_TO_S2 = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}

TILE_SIZE = 64
INPUT_STRIDE = 32
EMBEDDING = "embedding"


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def find_bottleneck(g: onnx.GraphProto) -> tuple[str, str]:
    """Return (bottleneck tensor, name of the first decoder Resize)."""
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:  # graph order is topological (ONNX requirement)
        if n.op_type in ("Resize", "Upsample"):
            t = n.input[0]
            while t in producer and producer[t].op_type == "Cast":
                t = producer[t].input[0]
            return t, n.name
    raise SystemExit("no Resize/Upsample node: is this the ukis-csmask U-Net?")


def prune_to(g: onnx.GraphProto, target: str) -> list[onnx.NodeProto]:
    """Nodes (in original order) that `target` depends on."""
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    keep: set[int] = set()
    stack = [target]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        i = producer[t]
        if i in keep:
            continue
        keep.add(i)
        stack.extend(x for x in g.node[i].input if x)
    return [g.node[i] for i in sorted(keep)]


def skip_tensors(g: onnx.GraphProto, enc_nodes: list[onnx.NodeProto], bottleneck: str) -> list[str]:
    """Encoder tensors read by the rest of the graph (the U-Net skips + bottleneck), in graph order."""
    enc_out = [o for n in enc_nodes for o in n.output]
    enc_set = set(enc_out)
    read = {x for n in g.node if not (n.output and n.output[0] in enc_set) for x in n.input}
    taps = [t for t in enc_out if t in read]
    assert taps[-1] == bottleneck, (taps, bottleneck)
    return taps


def widen_fp16(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> tuple[list, list]:
    """float16 -> float32 everywhere: initializers, Constant values, Cast targets."""
    out_inits = []
    for t in inits:
        if t.data_type == TensorProto.FLOAT16:
            a = numpy_helper.to_array(t).astype(np.float32)
            t = numpy_helper.from_array(a, t.name)
        out_inits.append(t)
    out_nodes = []
    for n in nodes:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        for a in n2.attribute:
            if n2.op_type == "Constant" and a.name == "value" and a.t.data_type == TensorProto.FLOAT16:
                arr = numpy_helper.to_array(a.t).astype(np.float32)
                a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
            if n2.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
        out_nodes.append(n2)
    # the input cast float32 -> float32 is now a no-op: rewire its consumers to the graph input
    drop = {}
    for n in out_nodes:
        if n.op_type == "Cast" and n.name == "graph_input_cast0":
            drop[n.output[0]] = n.input[0]
    nodes2 = []
    for n in out_nodes:
        if n.output and n.output[0] in drop:
            continue
        for i, x in enumerate(n.input):
            if x in drop:
                n.input[i] = drop[x]
        nodes2.append(n)
    return nodes2, out_inits


def set_meta(model: onnx.ModelProto, meta: dict) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v)


def derive(src: Path, stats_json: dict, compute: str, embedding: str = "multiscale") -> tuple[onnx.ModelProto, dict]:
    raw = src.read_bytes()
    src_hash = sha256_bytes(raw)
    if src_hash != SRC_SHA256:
        print(f"warning: {src} sha256 {src_hash} != expected {SRC_SHA256}", file=sys.stderr)
    m = onnx.load_from_string(raw)
    g = m.graph
    if len(g.input) != 1:
        raise SystemExit(f"expected one graph input, found {[i.name for i in g.input]}")
    in_name = g.input[0].name
    bottleneck, first_resize = find_bottleneck(g)
    nodes = prune_to(g, bottleneck)
    used = {x for n in nodes for x in n.input}
    inits = [t for t in g.initializer if t.name in used]
    if compute == "fp32":
        nodes, inits = widen_fp16(nodes, inits)
    btype = TensorProto.FLOAT16 if compute == "fp16" else TensorProto.FLOAT
    # pooled feature maps: the bottleneck, or (multiscale) every encoder tensor the decoder reads
    taps = [bottleneck] if embedding == "bottleneck" else skip_tensors(g, nodes, bottleneck)
    c_in = int(g.input[0].type.tensor_type.shape.dim[1].dim_value)
    probe = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", c_in, "height", "width"])],
        [helper.make_tensor_value_info(bottleneck, btype, None)],
        inits,
    )
    inferred = onnx.shape_inference.infer_shapes(helper.make_model(probe, opset_imports=[helper.make_opsetid("", 17)]))
    vis = list(inferred.graph.value_info) + list(inferred.graph.output)
    chans = {v.name: int(v.type.tensor_type.shape.dim[1].dim_value) for v in vis if v.name in taps}
    assert all(chans.get(t, 0) > 0 for t in taps), chans
    tail, pooled = [], []
    for i, t in enumerate(taps):
        sfx = "" if len(taps) == 1 else f"_{i}"
        src_t = t
        if btype != TensorProto.FLOAT:
            tail.append(helper.make_node("Cast", [t], [f"embedding_fp32{sfx}"], name=f"nexttile/embedding_cast{sfx}", to=TensorProto.FLOAT))
            src_t = f"embedding_fp32{sfx}"
        out_t = EMBEDDING if len(taps) == 1 else f"embedding_part{sfx}"
        tail += [
            helper.make_node("GlobalAveragePool", [src_t], [f"embedding_pooled{sfx}"], name=f"nexttile/embedding_pool{sfx}"),
            helper.make_node("Flatten", [f"embedding_pooled{sfx}"], [out_t], name=f"nexttile/embedding_flatten{sfx}", axis=1),
        ]
        pooled.append(out_t)
    if len(taps) > 1:
        tail.append(helper.make_node("Concat", pooled, [EMBEDDING], name="nexttile/embedding_concat", axis=1))
    nodes = list(nodes) + tail
    dim = sum(chans[t] for t in taps)

    graph = helper.make_graph(
        nodes,
        "ukis_csmask_6b_l1c_encoder",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", c_in, "height", "width"])],
        [helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = 8
    out.producer_name = "nexttile onnx/ukis_csmask/derive_encoder.py"
    out.producer_version = "1"
    out.doc_string = (
        f"Encoder of {PACKAGE} {PACKAGE_VERSION} {SRC_NAME} (sha256 {src_hash}), cut at {bottleneck} "
        f"(input of {first_resize}), "
        + (f"global-average-pooled to {dim}-d." if len(taps) == 1 else f"with the {len(taps) - 1} skip maps the decoder reads, each global-average-pooled and concatenated to {dim}-d.")
    )
    onnx.checker.check_model(out, full_check=True)

    st = stats_json["data"]["dataset_statistics"]
    bands = [UKIS_TO_S2[b] for b in st["band_names"]]
    mean = [float(x) for x in st["img"][0]]
    std = [float(x) for x in st["img"][1]]
    meta = {
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "nexttile_role": "encoder",
        "nexttile_contract": "1",
        # (the bottleneck variant keeps the plain name: it is byte-identical to the file shipped before)
        "model_name": "ukis-csmask-6b-l1c-effb4-encoder" + ("" if embedding == "bottleneck" else "-multiscale"),
        "description": (
            f"EfficientNet-B4 encoder of the ukis-csmask {PACKAGE_VERSION} Sentinel-2 L1C cloud/cloud-shadow U-Net "
            f"({stats_json['model']['version']}; trained by DLR on SPARCS, CloudSEN12+ and custom samples, "
            f"ImageNet-initialised), cut before the decoder at {bottleneck}, "
            + (f"global-average-pooled to {dim}-d; " if embedding == "bottleneck" else f"stem, skip and bottleneck maps ({', '.join(taps)}) each global-average-pooled and concatenated to {dim}-d; ")
            + f"{'float32' if compute == 'fp32' else 'float16'} arithmetic"
        ),
        "licence": "Apache-2.0 (ukis-csmask 1.0.0 weights, DLR)",
        "source": (
            f"PyPI ukis-csmask=={PACKAGE_VERSION} (https://github.com/dlr-eoc/ukis-csmask), file ukis_csmask/{SRC_NAME} "
            f"sha256 {src_hash}; derived by onnx/ukis_csmask/derive_encoder.py --compute {compute} --embedding {embedding}"
        ),
        "input_name": in_name,
        "embedding_output": EMBEDDING,
        "embedding_dim": str(dim),
        "input_bands": bands,
        # ukis-csmask expects top-of-atmosphere reflectance in [0, 1] (float32) and only
        # standardises it: img -= mean; img /= std (mask.py CSmask.normalize). No clip.
        "input_scale": "0.0001",
        "input_offset": "0",
        "standardization_mean": mean,
        "standardization_std": std,
        "tiles_size": str(TILE_SIZE),
        "tiles_overlap": "0",
        "input_stride": str(INPUT_STRIDE),
        "resolution": "1000",
    }
    set_meta(out, meta)
    return out, meta


def check(path: Path, threads: int = 1) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    meta = s.get_modelmeta().custom_metadata_map
    name, dim = meta["input_name"], int(meta["embedding_dim"])
    rng = np.random.default_rng(0)
    for n, hw in [(1, 64), (3, 64), (1, 256), (3, 256), (2, 96), (1, 128)]:
        x = rng.normal(size=(n, 6, hw, hw)).astype(np.float32)
        e = s.run([meta["embedding_output"]], {name: x})[0]
        assert e.shape == (n, dim), (e.shape, n, dim)
        assert np.isfinite(e).all()
        # batch independence: first item alone equals first item of the batch
        e1 = s.run([meta["embedding_output"]], {name: x[:1]})[0]
        err = float(np.abs(e1[0] - e[0]).max())
        assert err < 1e-3 * (1 + float(np.abs(e[0]).max())), err
        print(f"check: batch {n} x {hw}x{hw} -> {e.shape}, |e| mean {np.abs(e).mean():.4f}, batch-consistency err {err:.2e}")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="ukis_csmask/model_6b_l1c.onnx from the wheel")
    p.add_argument("--json", type=Path, default=None, help="model_6b_l1c.json (default: next to --src)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compute", choices=["fp16", "fp32"], default="fp16")
    p.add_argument(
        "--embedding",
        choices=["bottleneck", "multiscale"],
        default="multiscale",
        help="multiscale (default, what build.sh ships): the four pooled U-Net skip sources + the pooled "
        "bottleneck, concatenated (744-d); bottleneck: the pooled deepest map alone (448-d; worse for "
        "land/water than random weights, see README)",
    )
    p.add_argument("--check", action="store_true", help="run the output with onnxruntime (1 thread)")
    args = p.parse_args(argv)
    js = args.json or args.src.with_suffix(".json")
    model, meta = derive(args.src, json.loads(js.read_text()), args.compute, args.embedding)
    data = model.SerializeToString(deterministic=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(data)} B) sha256 {sha256_bytes(data)}")
    print(json.dumps(meta, indent=1))
    if args.check:
        check(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
