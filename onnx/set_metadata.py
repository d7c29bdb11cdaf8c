#!/usr/bin/env python3
"""Read or set the NextTile/Deepness metadata of an ONNX model, or export an
encoder for Deepness.

    python onnx/set_metadata.py MODEL.onnx                      # print all keys
    python onnx/set_metadata.py MODEL.onnx key=value [key=value ...]
    python onnx/set_metadata.py MODEL.onnx --delete key
    python onnx/set_metadata.py ENCODER.onnx --deepness OUT.onnx [--tile-size N]

Values are stored as strings; lists and objects are JSON, e.g.
    input_bands='["B04","B03","B02"]' class_names='{"0":"land","1":"water"}'
Keys Deepness reads with json.loads are written the way it reads them
(https://qgis-plugin-deepness.readthedocs.io/en/latest/creators/creators_add_metadata_to_model.html):
`model_type=Recognition` is stored as the JSON string "Recognition", a list of
class names as the object {"0": ..., "1": ...}, and the tile size under both
`tiles_size` (Deepness's documentation) and `tile_size` (its code); NextTile
reads both the JSON and the bare form.

--deepness writes a copy of a NextTile encoder that Deepness loads and feeds
the same numbers NextTile feeds the original:
  * its input height and width fixed at the tile size (Deepness's recognition
    resizes to them, GeoDeep tiles at them; NextTile then uses that tile size);
  * NextTile's `clip(raw * input_scale + input_offset, lo, hi)` then
    `(x - mean) / std` re-expressed as Deepness's `raw / 255` then
    `(x - mean') / std'` with mean' = (mean - offset) / (255 * scale) and
    std' = std / (255 * scale), the clip moved into the graph as a per-channel
    Max/Min on the standardised input (exact: standardising is monotone);
  * input_scale = 1/255, input_offset = 0, no input_clip (NextTile's reading of
    the copy is Deepness's), and `nexttile_source_sha256` = the original's sha256,
    so heads trained on the original serve the copy without a warning.
The original file is not changed. Needs `pip install onnx numpy`.
"""
import argparse
import hashlib
import json
import sys

import onnx

# Keys Deepness (and GeoDeep) read with json.loads whose value is a string.
JSON_STRING_KEYS = ("model_type", "det_type")
# Keys both read as numbers.
NUMBER_KEYS = ("resolution", "tiles_size", "tile_size", "tiles_overlap", "seg_thresh",
               "seg_small_segment", "reg_output_scaling", "det_conf", "det_iou_thresh")


def deepness_value(key, value):
    """The text to store for `key` so Deepness reads `value` with json.loads."""
    if key in JSON_STRING_KEYS:
        try:
            if isinstance(json.loads(value), str):
                return value
        except json.JSONDecodeError:
            pass
        return json.dumps(value)
    if key in NUMBER_KEYS:
        try:
            v = json.loads(value.strip('"'))
        except json.JSONDecodeError:
            v = None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            sys.exit(f"{key}={value}: Deepness reads {key} as a number; give a plain number")
        return value.strip('"')
    if key == "class_names":
        v = json.loads(value)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return json.dumps({str(i): n for i, n in enumerate(v)})
    return value


def write_props(m, props):
    del m.metadata_props[:]
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deepness_export(src, out, tile_size=None):
    """Write the Deepness copy of NextTile encoder `src` to `out` (see the module doc)."""
    import numpy as np
    from onnx import helper, numpy_helper

    m = onnx.load(src)
    props = {kv.key: kv.value for kv in m.metadata_props}
    role = props.get("nexttile_role", "").strip('"')
    graph_inputs = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if role == "head" or len(graph_inputs) != 1:
        sys.exit(f"{src}: only an encoder with one image input exports to Deepness "
                 f"(Deepness takes one N x C x H x W input; heads are NextTile-only)")
    if props.get("per_band", "false").strip('"') == "true":
        sys.exit(f"{src}: a per-band encoder embeds one band at a time; Deepness has no way to feed it")
    image = graph_inputs[0]
    dims = image.type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].dim_value:
        sys.exit(f"{src}: input '{image.name}' is not N x C x H x W with a fixed C")
    c = dims[1].dim_value
    size = tile_size or int(json.loads(props.get("tiles_size", props.get("tile_size", "0")).strip('"') or 0))
    if size <= 0:
        sys.exit(f"{src}: no tiles_size in its metadata; give --tile-size N")
    for d, n in ((dims[2], size), (dims[3], size)):
        if d.dim_value and d.dim_value != n:
            sys.exit(f"{src}: its input is fixed at {d.dim_value} px, not {n}")
        d.Clear()
        d.dim_value = n
    # Intermediate shapes inferred for the dynamic graph may now be wrong: drop them.
    del m.graph.value_info[:]

    scale = float(props.get("input_scale", "1").strip('"'))
    offset = float(props.get("input_offset", "0").strip('"'))
    mean = np.array(json.loads(props.get("standardization_mean", json.dumps([0.0] * c))), dtype=np.float64)
    std = np.array(json.loads(props.get("standardization_std", json.dumps([1.0] * c))), dtype=np.float64)
    if scale <= 0:
        sys.exit(f"{src}: input_scale {scale} must be > 0 for a Deepness export")
    props["standardization_mean"] = json.dumps(((mean - offset) / (255.0 * scale)).tolist())
    props["standardization_std"] = json.dumps((std / (255.0 * scale)).tolist())
    props["input_scale"] = repr(1.0 / 255.0)
    props["input_offset"] = "0"
    clip = props.pop("input_clip", None)
    if clip is not None:
        lo, hi = json.loads(clip)
        shape = (1, c, 1, 1)
        low = ((lo - mean) / std).astype(np.float32).reshape(shape)
        high = ((hi - mean) / std).astype(np.float32).reshape(shape)
        clipped = image.name + "__nexttile_clipped"
        for node in m.graph.node:
            for i, name in enumerate(node.input):
                if name == image.name:
                    node.input[i] = clipped
        for o in m.graph.output:
            if o.name == image.name:
                sys.exit(f"{src}: the image input is also an output; cannot insert the clip")
        m.graph.initializer.extend([numpy_helper.from_array(low, image.name + "__nexttile_low"),
                                    numpy_helper.from_array(high, image.name + "__nexttile_high")])
        pre = [helper.make_node("Max", [image.name, image.name + "__nexttile_low"], [image.name + "__nexttile_floor"],
                                name="nexttile_clip_low"),
               helper.make_node("Min", [image.name + "__nexttile_floor", image.name + "__nexttile_high"], [clipped],
                                name="nexttile_clip_high")]
        nodes = pre + list(m.graph.node)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
    props["model_type"] = json.dumps("Recognition")
    props["tiles_size"] = str(size)
    props["tile_size"] = str(size)
    props["nexttile_source_sha256"] = sha256(src)
    for k in list(props):
        props[k] = deepness_value(k, props[k])
    write_props(m, props)
    onnx.checker.check_model(m)
    onnx.save(m, out)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("pairs", nargs="*", help="key=value")
    p.add_argument("--delete", action="append", default=[])
    p.add_argument("--out", help="write here instead of in place")
    p.add_argument("--deepness", metavar="OUT", help="write a Deepness copy of this encoder to OUT")
    p.add_argument("--tile-size", type=int, help="with --deepness: the fixed input size (default: tiles_size)")
    a = p.parse_args(argv)
    if a.deepness:
        if a.pairs or a.delete:
            sys.exit("--deepness exports the model as it is; set keys first, then export")
        deepness_export(a.model, a.deepness, a.tile_size)
        return
    m = onnx.load(a.model)
    props = {kv.key: kv.value for kv in m.metadata_props}
    if not a.pairs and not a.delete:
        for k in sorted(props):
            print(f"{k} = {props[k]}")
        return
    for pair in a.pairs:
        if "=" not in pair:
            sys.exit(f"'{pair}' is not key=value")
        k, v = pair.split("=", 1)
        props[k] = deepness_value(k, v)
        if k == "tiles_size":
            props["tile_size"] = props[k]
    for k in a.delete:
        props.pop(k, None)
    write_props(m, props)
    onnx.save(m, a.out or a.model)


if __name__ == "__main__":
    main(sys.argv[1:])
