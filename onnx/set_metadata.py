#!/usr/bin/env python3
"""Read or set the NextTile/Deepness metadata of an ONNX model.

    python onnx/set_metadata.py MODEL.onnx                      # print all keys
    python onnx/set_metadata.py MODEL.onnx key=value [key=value ...]
    python onnx/set_metadata.py MODEL.onnx --delete key

Values are stored as strings; lists and objects are JSON, e.g.
    input_bands='["B04","B03","B02"]' class_names='{"0":"land","1":"water"}'
See the README's "Model contract" section for the keys. Needs `pip install onnx`.
"""
import argparse
import sys

import onnx


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("pairs", nargs="*", help="key=value")
    p.add_argument("--delete", action="append", default=[])
    p.add_argument("--out", help="write here instead of in place")
    a = p.parse_args(argv)
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
        props[k] = v
    for k in a.delete:
        props.pop(k, None)
    del m.metadata_props[:]
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, a.out or a.model)


if __name__ == "__main__":
    main(sys.argv[1:])
