#!/usr/bin/env python3
"""Export torchgeo's SSL4EO-S12 ResNet-50 MoCo Sentinel-2 encoder to ONNX for NextTile.

Weights: torchgeo `ResNet50_Weights.SENTINEL2_ALL_MOCO` (Wang et al., "SSL4EO-S12",
arXiv:2211.07044; MoCo-v2 on SSL4EO-S12 Sentinel-2 L1C, all 13 bands). The
exported graph is the ResNet-50 trunk with its global average pool and no
classifier: `image` N x 13 x H x W float32 -> `embedding` N x 2048 float32,
with dynamic batch, height and width (H, W multiples of 32).

Preprocessing written into the metadata is torchgeo's transform for these
weights (`_ssl4eo_s12_transforms_s2_10k`: Resize 256, CenterCrop 224,
Normalize(mean=0, std=10000)), i.e. L1C reflectance x 10000 divided by 10000.
NextTile does the resize/crop part by tiling at 10 m (`tiles_size` 224).

Needs network access to download the weights (~95 MB, from Hugging Face via
torchgeo / torch.hub), so it is not run in CI. Two ways to build the model:

    pip install torch onnx torchgeo                         # torchgeo pulls timm, torchvision, ...
    python onnx/torchgeo_ssl4eo/export.py --out .cache/ssl4eo_s2_moco_rn50.onnx

    pip install torch onnx                                  # no torchgeo / timm
    python onnx/torchgeo_ssl4eo/export.py --backend builtin --out .cache/ssl4eo_s2_moco_rn50.onnx
        # same weights, downloaded from the URL pinned below (torchgeo 0.8.1), loaded into a
        # plain-PyTorch ResNet-50 with timm's parameter names (load is strict)

    python onnx/torchgeo_ssl4eo/export.py --backend builtin --weights-file resnet50_sentinel2_all_moco-df8b932e.pth
        # offline, from a checkpoint fetched elsewhere

    python onnx/torchgeo_ssl4eo/export.py --random-weights --out /tmp/rn50_random.onnx
        # dry run without any download: random weights, same graph and metadata (marked as such)

If onnxruntime is installed the script checks the export against PyTorch on
two input sizes. The result is ~94 MB: keep it out of git (e.g. in .cache/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# torchgeo 0.8.1, torchgeo/models/resnet.py, ResNet50_Weights.SENTINEL2_ALL_MOCO
WEIGHTS_NAME = "ResNet50_Weights.SENTINEL2_ALL_MOCO"
WEIGHTS_URL = (
    "https://hf.co/torchgeo/resnet50_sentinel2_all_moco/resolve/"
    "da4f3c9dbe09272eb902f3b37f46635fa4726879/resnet50_sentinel2_all_moco-df8b932e.pth"
)
# torchgeo's `_sentinel2_toa_bands` ('B1', 'B2', ..., 'B8', 'B8a', 'B9', 'B10', 'B11', 'B12')
# in NextTile's canonical spelling; this is the channel order the weights expect.
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
EMBED_DIM = 2048
STRIDE = 32  # ResNet-50: stem /4, then three stride-2 stages
TILE = 224  # torchgeo transform: Resize 256 -> CenterCrop 224 (SSL4EO-S12 patches are 264 px at 10 m)


def metadata(clip: bool, random_weights: bool, tile: int) -> dict[str, str]:
    """NextTile contract keys (README "Model contract"), every value a string."""
    m = {
        "nexttile_role": "encoder",
        "nexttile_contract": "1",
        "model_type": json.dumps("Recognition"),  # Deepness reads it with json.loads
        "model_name": "ssl4eo-s12-resnet50-s2-all-moco" + ("-RANDOM-WEIGHTS" if random_weights else ""),
        "description": (
            "ResNet-50 (timm layout, 13-band stem) pre-trained with MoCo-v2 on SSL4EO-S12 Sentinel-2 L1C, "
            f"all 13 bands (torchgeo {WEIGHTS_NAME}); global-average-pooled 2048-d embedding, no classifier."
            + (" DRY RUN: RANDOM WEIGHTS, NOT THE PRE-TRAINED MODEL." if random_weights else "")
        ),
        "licence": (
            "Weights: SSL4EO-S12 pre-trained models, CC-BY-4.0 (Wang et al. 2022, arXiv:2211.07044), "
            "redistributed by torchgeo (MIT code); SSL4EO-S12 data contain modified Copernicus Sentinel data. "
            "Check https://github.com/zhu-xlab/SSL4EO-S12 before redistributing."
        ),
        "source": f"torchgeo {WEIGHTS_NAME}: {WEIGHTS_URL}; exported by onnx/torchgeo_ssl4eo/export.py (NextTile)",
        "input_name": "image",
        "embedding_output": "embedding",
        "embedding_dim": str(EMBED_DIM),
        "input_bands": json.dumps(BANDS),
        # torchgeo: Normalize(mean=0, std=10000) on L1C UInt16 reflectance x 10000
        "input_scale": "0.0001",
        "input_offset": "0",
        "standardization_mean": json.dumps([0.0] * len(BANDS)),
        "standardization_std": json.dumps([1.0] * len(BANDS)),
        "tiles_size": str(tile),
        "tiles_overlap": "0",
        "input_stride": str(STRIDE),
        "resolution": "1000",  # cm/px: Sentinel-2 10 m (20/60 m bands resampled to 10 m, as in SSL4EO-S12)
    }
    if clip:
        # SSL4EO-S12 pre-training divided by 10000 and converted to uint8, i.e. saturated at [0, 1]
        m["input_clip"] = json.dumps([0.0, 1.0])
    return m


def build_builtin_resnet50(in_chans: int = 13):
    """Plain-PyTorch ResNet-50 (v1.5: stride on the 3x3 conv) with timm's parameter
    names, global average pool, no fc: N x C x H x W -> N x 2048."""
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int, down: bool):
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if down else None
            )

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            s = x if self.downsample is None else self.downsample(x)
            return self.relu(y + s)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
                layer = []
                for b in range(blocks):
                    layer.append(Bottleneck(cin, width, stride if b == 0 else 1, b == 0))
                    cin = width * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return x.mean(dim=(2, 3))

    return ResNet50()


def load_model(args):
    import torch

    if args.backend == "torchgeo" and not args.random_weights:
        from torchgeo.models import ResNet50_Weights, resnet50

        weights = ResNet50_Weights.SENTINEL2_ALL_MOCO
        assert weights.meta["in_chans"] == len(BANDS)
        tg_bands = [b.upper() for b in weights.meta["bands"]]  # 'B1' ... 'B8a' ... 'B12'
        canon = [b if b == "B8A" else f"B{int(b[1:]):02d}" for b in tg_bands]
        assert canon == BANDS, f"torchgeo band order changed: {weights.meta['bands']}"
        # num_classes=0: timm drops fc and returns the global-average-pooled features
        model = resnet50(weights=weights, num_classes=0)
        return model.eval()

    model = build_builtin_resnet50(len(BANDS))
    if args.random_weights:
        torch.manual_seed(0)
        return model.eval()
    if args.weights_file:
        state = torch.load(args.weights_file, map_location="cpu", weights_only=True)
    else:
        state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, map_location="cpu", progress=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"checkpoint does not match the builtin ResNet-50: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(".cache") / "ssl4eo_s2_moco_rn50.onnx")
    p.add_argument("--backend", choices=["torchgeo", "builtin"], default="torchgeo")
    p.add_argument("--weights-file", type=Path, help="local checkpoint (builtin backend), instead of downloading")
    p.add_argument("--random-weights", action="store_true", help="dry run: no download, random weights")
    p.add_argument("--clip", action="store_true", help="add input_clip [0,1] (as SSL4EO-S12 pre-training saturated)")
    p.add_argument("--tile-size", type=int, default=TILE, help=f"tiles_size metadata (multiple of {STRIDE})")
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args(argv)
    if args.tile_size % STRIDE:
        sys.exit(f"--tile-size must be a multiple of {STRIDE}")

    import onnx
    import torch

    model = load_model(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, len(BANDS), args.tile_size, args.tile_size)
    with torch.no_grad():
        assert model(dummy).shape == (1, EMBED_DIM)
    torch.onnx.export(
        model,
        (dummy,),
        str(args.out),
        input_names=["image"],
        output_names=["embedding"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
        opset_version=args.opset,
        do_constant_folding=True,
        dynamo=False,
    )

    m = onnx.load(str(args.out))
    if m.ir_version > 8:
        m.ir_version = 8  # the contract's ir_version; opset 17 needs nothing newer
    del m.metadata_props[:]
    for k, v in metadata(args.clip, args.random_weights, args.tile_size).items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {sha256(args.out)}")

    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipped the parity check")
        return
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(2, len(BANDS), 64, 64), (1, len(BANDS), args.tile_size, args.tile_size)]:
        raw = rng.integers(0, 4000, size=shape).astype(np.float32)  # fake L1C reflectance x 10000
        x = raw * 1e-4  # = metadata preprocessing (scale 1e-4, mean 0, std 1)
        y = sess.run(["embedding"], {"image": x})[0]
        with torch.no_grad():
            yt = model(torch.from_numpy(x)).numpy()
        print(f"input {shape}: embedding {y.shape}, max |onnx - torch| {np.abs(y - yt).max():.2e}")


if __name__ == "__main__":
    main(sys.argv[1:])
