"""PixelCNN (van den Oord et al. 2016), as in Foster 2nd ed. ch. 5: an image is a sequence of pixels.

The chain rule writes any distribution over an image as a product of one-pixel conditionals in
raster order (left to right, top to bottom):

    log p(x) = Σ_i log p(x_i | x_1, …, x_{i-1})

A PixelCNN computes every conditional at once with convolutions whose kernels are **masked** so the
output at pixel i never sees pixels ≥ i. The first layer uses a *type A* mask (the centre pixel is
hidden too: pixel i may not see itself); later layers use *type B* (the centre is allowed, because
there it only holds features of pixels < i). Training is one parallel pass (cross-entropy of each
pixel's softmax over its levels, summed: nats per image); sampling is sequential, one pixel per pass.

Two stacks live here:

* ``plain`` — Foster's network: a 7×7 type-A convolution, residual blocks around 3×3 type-B
  convolutions, two 1×1 layers, a softmax over the pixel levels. Stacked 3×3 masks leave a **blind
  spot**: pixels up and to the right of i that no path of masked kernels reaches.
* ``gated`` — the Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with
  PixelCNN Decoders"): a *vertical* stack that sees every row above (full width, growing with depth)
  and a *horizontal* stack that sees the pixels to the left in the current row, joined by a 1×1 link
  from vertical to horizontal, each layer gated: ``y = tanh(W_f ∗ x) ⊙ σ(W_g ∗ x)``. No blind spot.

Because the vertical stack at row r depends only on rows < r, :func:`sample` computes it once per
row, and keeps the horizontal features of the pixels already drawn in that row: each new pixel then
costs one small matrix product per layer (a cache of activations, like Ramachandran et al.'s Fast
PixelCNN++) instead of a pass of the whole network (``bench/pixelcnn_speed.py`` times both).

Pixels are binarised (``levels`` 2, with :func:`models.core.data.binary_images`) or quantised to 4
levels (Foster's setting). Log-likelihoods are exact: ``-log p(x)`` in nats per image, or divided by
784·ln 2 for bits per dimension.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of

SIZE = 28  # every image here is 28×28 (MNIST / Fashion-MNIST)
UNKNOWN = 0.5  # what a streamed, half-drawn image shows where pixels are not sampled yet


@dataclass
class PixelCNNConfig:
    dataset: str = "mnist"
    levels: int = 4  # pixel values: 2 (binary) or 4 (Foster's quantisation)
    binarisation: str = "stochastic"  # for levels 2: models.core.data.BINARISATIONS
    arch: str = "plain"  # "plain" (Foster's masked stack, with a blind spot) or "gated" (no blind spot)
    filters: int = 128  # channels of the plain stack / of each gated stack
    layers: int = 5  # residual blocks (plain) or gated layers after the first
    kernel: int = 3  # kernel of the type-B layers (the first, type-A layer is 7×7 in the plain stack)
    lr: float = 5e-4  # Adam (the book's)
    batch_size: int = 128
    steps: int = 70_000  # the book: 150 epochs of 60k at batch 128

    def validate(self):
        from models.core.data import BINARISATIONS, check_dataset

        check_dataset(self.dataset)
        if self.levels not in (2, 4):
            raise ValueError(f"levels must be 2 (binary) or 4; got {self.levels}.")
        if self.binarisation not in BINARISATIONS:
            raise ValueError(f"Unknown binarisation {self.binarisation!r}; choose from {sorted(BINARISATIONS)}.")
        if self.arch not in ("plain", "gated"):
            raise ValueError(f"arch must be 'plain' or 'gated'; got {self.arch!r}.")
        check_range("filters", self.filters, 2, 1024)
        check_range("layers", self.layers, 1, 40)
        if self.kernel not in (3, 5, 7):
            raise ValueError(f"kernel must be 3, 5 or 7; got {self.kernel}.")
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    # Foster 2nd ed. ch. 5 (from memory of the book's notebook): 128 filters, a 7×7 type-A layer, 5 residual
    # blocks (1×1 → 3×3 type B → 1×1), two 1×1 type-B layers, softmax over 4 levels, Adam 5e-4,
    # batch 128, 150 epochs. Departure: 28×28 images here, not the book's 16×16 resize.
    "book": {},
    # what ships: binarised MNIST, gated stacks of 32 channels, 7 layers, about an epoch (the shipped run stopped
    # at step 1,923: an hour of one thread on a busy machine, test NLL 91.0 nats; a longer run keeps improving)
    "cpu": {"levels": 2, "arch": "gated", "filters": 32, "layers": 7, "lr": 1e-3, "batch_size": 32,
            "steps": 2000},
    "tiny": {"levels": 2, "filters": 4, "layers": 2, "batch_size": 8, "steps": 2},
}


# --- the plain stack: masked convolutions --------------------------------------------------------

class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is zero at and after the centre (type A) or after it (type B),
    in raster order: rows below the centre, and the centre row right of the centre."""

    def __init__(self, mask_type: str, c_in: int, c_out: int, k: int):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones(k, k)
        mask[k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[k // 2 + 1:] = 0
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    """Foster's block: 1×1 halves the channels, a 3×3 type-B conv, 1×1 back, added to the input."""

    def __init__(self, ch: int, k: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(ch, ch // 2, 1), nn.ReLU(), MaskedConv2d("B", ch // 2, ch // 2, k),
                                 nn.ReLU(), nn.Conv2d(ch // 2, ch, 1), nn.ReLU())

    def forward(self, x):
        return x + self.net(x)


class PlainPixelCNN(nn.Module):
    def __init__(self, c: PixelCNNConfig):
        super().__init__()
        ch = c.filters
        self.levels = c.levels
        self.net = nn.Sequential(
            MaskedConv2d("A", 1, ch, 7), nn.ReLU(),
            *[ResidualBlock(ch, c.kernel) for _ in range(c.layers)],
            MaskedConv2d("B", ch, ch, 1), nn.ReLU(), MaskedConv2d("B", ch, ch, 1), nn.ReLU(),
            nn.Conv2d(ch, c.levels, 1),
        )

    def forward(self, x):
        """Pixel values (B, 1, H, W) in [0, 1] -> logits over the levels (B, levels, H, W)."""
        return self.net(2 * x - 1)


# --- the gated stacks -----------------------------------------------------------------------------

def gate(a):
    """tanh(a_f) ⊙ σ(a_g), the two halves of the channels (van den Oord et al. 2016, eq. 2)."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of both stacks. ``first``: the vertical conv looks at the rows strictly above (the input
    is shifted down one row) and the horizontal one at the pixels strictly left (type A); later layers
    include the current position of the previous layer's features, which already only see the past."""

    def __init__(self, c_in: int, ch: int, k: int, first: bool):
        super().__init__()
        self.first, self.k = first, k
        self.v_conv = nn.Conv2d(c_in, 2 * ch, (k // 2 + 1, k))  # rows r-k//2 … r, columns c ± k//2
        self.h_conv = nn.Conv2d(c_in, 2 * ch, (1, k // 2 + 1))  # row r, columns c-k//2 … c
        self.v_to_h = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.h_out = nn.Conv2d(ch, ch, 1)

    def vertical(self, v):
        """Vertical pre-activation (B, 2ch, H, W): position (r, c) sees rows < r of the image only."""
        k = self.k
        if self.first:
            v = F.pad(v, (0, 0, 1, 0))[:, :, :-1]  # shift down one row: row r holds row r-1
        return self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))

    def horizontal(self, h, v_pre):
        """Horizontal stack given the vertical pre-activation at the same rows: (B, ch, rows, W)."""
        k = self.k
        if self.first:
            h = F.pad(h, (1, 0))[..., :-1]  # shift right one column: type A, the pixel does not see itself
        out = self.h_out(gate(self.h_conv(F.pad(h, (k // 2, 0))) + self.v_to_h(v_pre)))
        return out if self.first else h + out  # residual on the horizontal stack (not on the first layer)


class GatedPixelCNN(nn.Module):
    def __init__(self, c: PixelCNNConfig):
        super().__init__()
        ch = c.filters
        self.levels = c.levels
        # the first layer's kernel is 7 wide, like the plain stack's 7×7 type A
        self.layers = nn.ModuleList([GatedLayer(1, ch, 7, first=True)]
                                    + [GatedLayer(ch, ch, c.kernel, first=False) for _ in range(c.layers)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 1), nn.ReLU(), nn.Conv2d(ch, c.levels, 1))

    def vertical_features(self, x):
        """Every layer's vertical pre-activation, (B, 2ch, H, W) each; row r depends on rows < r only."""
        v, pres = 2 * x - 1, []
        for layer in self.layers:
            pre = layer.vertical(v)
            pres.append(pre)
            v = gate(pre)
        return pres

    def horizontal_logits(self, x_rows, pres):
        """Logits for the rows ``x_rows`` (B, 1, R, W) given those rows' vertical pre-activations."""
        h = 2 * x_rows - 1
        for layer, pre in zip(self.layers, pres):
            h = layer.horizontal(h, pre)
        return self.out(h)

    def forward(self, x):
        return self.horizontal_logits(x, self.vertical_features(x))

    # The cache of activations used by the sampler. Within row r the vertical stack is fixed (it sees rows
    # < r), and the horizontal features left of column c never change once those pixels are drawn, so each
    # new pixel costs one small matrix product per layer on the cached columns to its left.

    def start_row(self, x, r: int) -> dict:
        """Row r's v→h links (B, W, 2ch) per layer (with the horizontal conv's bias), each layer's weights
        as matrices, and left-padded buffers (B, W + pad, C) of each layer's input along the row."""
        pres = self.vertical_features(x[:, :, :r + 1])
        links = [(layer.v_to_h(pre[:, :, r:r + 1])[:, :, 0] + layer.h_conv.bias[:, None]).transpose(1, 2)
                 for layer, pre in zip(self.layers, pres)]
        pads = [self.layers[0].k // 2 + 1] + [layer.k // 2 for layer in self.layers[1:]]
        ins = [x.new_zeros(len(x), SIZE + pad, layer.h_conv.in_channels) for layer, pad in zip(self.layers, pads)]
        ins[0][:, pads[0]:, 0] = 2 * x[:, 0, r] - 1
        # (kw · C_in, 2ch), rows ordered like a window (B, kw, C_in) flattened
        w_h = [layer.h_conv.weight[:, :, 0].permute(2, 1, 0).reshape(-1, layer.h_conv.out_channels)
               for layer in self.layers]
        w_out = [layer.h_out.weight.flatten(1).t() for layer in self.layers]
        return {"links": links, "ins": ins, "pads": pads, "w_h": w_h, "w_out": w_out}

    def step(self, state, c: int) -> torch.Tensor:
        """Logits (B, levels) of pixel c of the row ``state`` was started on; caches its features."""
        ins, pads = state["ins"], state["pads"]
        h = None
        for l, layer in enumerate(self.layers):
            kw = layer.k // 2 + 1  # first layer: columns c-kw … c-1; later ones: c-kw+1 … c
            window = ins[l][:, c:c + kw].flatten(1)
            out = torch.addmm(layer.h_out.bias, gate(torch.addmm(state["links"][l][:, c], window, state["w_h"][l])),
                              state["w_out"][l])
            h = out if layer.first else out.add_(ins[l][:, c + pads[l]])
            if l + 1 < len(self.layers):
                ins[l + 1][:, c + pads[l + 1]] = h
        for m in self.out:  # the 1×1 convolutions as matrix products
            h = F.linear(h, m.weight.flatten(1), m.bias) if isinstance(m, nn.Conv2d) else m(h)
        return h

    def set_pixel(self, state, c: int, value) -> None:
        """Record the value drawn at column c (B,) so later columns see it."""
        state["ins"][0][:, c + state["pads"][0], 0] = 2 * value - 1


def build(config: PixelCNNConfig) -> nn.Module:
    return GatedPixelCNN(config) if config.arch == "gated" else PlainPixelCNN(config)


# --- data, loss, likelihood -------------------------------------------------------------------------

def preprocessing(config: PixelCNNConfig) -> str:
    from models.core.data import BINARISATIONS

    if config.levels == 2:
        return BINARISATIONS[config.binarisation]
    return f"quantised to {config.levels} levels: level = min(floor({config.levels} · intensity), {config.levels - 1})"


def data(config: PixelCNNConfig, split: str):
    """Images as pixel values ``level / (levels - 1)`` in [0, 1], and labels."""
    from models.core import data as datasets

    if config.levels == 2:
        x, y = datasets.binary_images(config.dataset, split, config.binarisation)
    else:
        x, y = datasets.images(config.dataset, split)
        x = (x * config.levels).floor().clamp(max=config.levels - 1) / (config.levels - 1)
    title = datasets.DATASETS[config.dataset]["title"]
    return (x, y), {"title": f"{title}, {config.levels} levels" + (f" ({config.binarisation} binarisation)"
                                                                     if config.levels == 2 else ""),
                    "dataset": config.dataset, "preprocessing": preprocessing(config)}


def to_levels(model, x) -> torch.Tensor:
    """Pixel values in [0, 1] -> integer levels (B, H, W); refuses values that are not on the grid."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1:] != (1, SIZE, SIZE):
        raise ValueError(f"Images must have shape (N, 1, {SIZE}, {SIZE}); got {tuple(x.shape)}.")
    k = x * (model.levels - 1)
    levels = k.round()
    if not torch.isfinite(x).all() or (k - levels).abs().max() > 1e-3 or levels.min() < 0 or levels.max() >= model.levels:
        raise ValueError(f"Pixel values must be levels of {model.levels} (k / {model.levels - 1}) in [0, 1].")
    return levels.long()[:, 0]


def nll_per_image(model, x) -> torch.Tensor:
    """-log p(x) in nats for each image (B,): the sum over pixels of each softmax's cross-entropy."""
    return -pixel_log_probs(model, x).flatten(1).sum(1)


def pixel_log_probs(model, x) -> torch.Tensor:
    """log p(x_i | x_<i) of every pixel, (B, 28, 28) in nats: where the model is surprised."""
    return -F.cross_entropy(model(x), to_levels(model, x), reduction="none")


def train_step(model, batch, config: PixelCNNConfig) -> dict:
    x, _ = batch
    nll = nll_per_image(model, x).mean()
    return {"loss": nll, "bits_per_dim": nll / (SIZE * SIZE * math.log(2))}


@torch.no_grad()
def log_likelihood(model, x, batch_size: int = 32) -> torch.Tensor:
    """Exact log p(x) in nats for each image (N,), in the model's own preprocessing."""
    model.eval()
    device = device_of(model)
    return torch.cat([-nll_per_image(model, chunk.to(device)).cpu() for chunk in torch.as_tensor(x).split(batch_size)])


def evaluate(model, x, y) -> dict:
    """Held-out NLL in nats per image (mean over the whole test set) and bits per dimension."""
    nll = -log_likelihood(model, x).double().mean().item()
    return {"test_nll_nats": nll, "bits_per_dim": nll / (SIZE * SIZE * math.log(2)), "test_images": len(x)}


# --- sampling ---------------------------------------------------------------------------------------

def _check_controls(n: int, temperature: float, every: int) -> None:
    check_range("number of samples", n, 1, 10_000)
    check_range("temperature", temperature, 0.05, 5.0)
    check_range("pixels between previews", every, 1, SIZE * SIZE)


def _draw(logits, temperature: float, generator) -> torch.Tensor:
    """One level per row of ``logits`` (B, levels), from softmax(logits / temperature)."""
    probs = torch.softmax(logits.double() / temperature, dim=1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _fill(model, x, known, generator, temperature: float, every: int, cache: bool):
    """Sample every pixel where ``known`` is False, in raster order, each from p(x_i | x_<i) with the
    known pixels held at their values; yields the images every ``every`` pixels (unknown ones grey)."""
    device = device_of(model)
    x = x.clone().to(device)
    known = known.to(device)
    todo = ~known[:, 0]  # (B, H, W)
    scale = model.levels - 1
    cached = cache and isinstance(model, GatedPixelCNN)
    done = 0
    for r in range(SIZE):
        if not todo[:, r].any():
            continue
        if cached:  # rows < r are final now
            state = model.start_row(x, r)
        last_c = int(todo[:, r].any(0).nonzero().max())
        for c in range(last_c + 1):
            rows = todo[:, r, c]
            if cached:
                logits = model.step(state, c)  # every column, so the cache holds its features
            elif rows.any():  # output rows <= r only need input rows <= r
                logits = model(x[:, :, :r + 1])[:, :, r, c]
            if not rows.any():
                continue
            level = _draw(logits, temperature, generator)
            x[:, 0, r, c] = torch.where(rows, level.to(x.dtype) / scale, x[:, 0, r, c])
            if cached:
                model.set_pixel(state, c, x[:, 0, r, c])
            done += 1
            if done % every == 0:
                yield _show(x, todo, r, c)
    yield x.cpu()


def _show(x, todo, r, c):
    """The images so far, with the pixels after (r, c) that are still to be sampled grey."""
    later = torch.zeros_like(todo)
    later.view(len(x), -1)[:, r * SIZE + c + 1:] = True
    return torch.where((todo & later)[:, None], torch.full_like(x, UNKNOWN), x).cpu()


@torch.no_grad()
def sample(model, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, every: int = SIZE,
           cache: bool = True):
    """Draw ``n`` images pixel by pixel; yields (n, 1, 28, 28) every ``every`` pixels (pixels not drawn yet
    are grey), the complete images last. ``temperature`` divides the logits: below 1 is bolder and
    more typical, above 1 noisier. ``cache`` reuses the gated vertical stack within a row."""
    _check_controls(n, temperature, every)
    model.eval()
    device = device_of(model)
    x = torch.zeros(n, 1, SIZE, SIZE, device=device)
    yield from _fill(model, x, torch.zeros_like(x, dtype=torch.bool), generator, float(temperature), int(every), cache)


@torch.no_grad()
def complete(model, x, known, generator: torch.Generator | None = None, temperature: float = 1.0,
             every: int = SIZE, cache: bool = True, particles: int = 1):
    """Fill in the pixels where ``known`` (B, 1, 28, 28 bools) is False, in raster order, each drawn
    from p(x_i | x_<i) with the known pixels held. When every known pixel comes before every missing one
    (the bottom half is missing) that is the exact conditional p(x_missing | x_known); otherwise the
    known pixels after a missing one are ignored by it. With ``particles`` K > 1, K completions are
    drawn and one kept with probability ∝ p(the known pixels | the rest) (importance resampling,
    which tends to the exact conditional as K grows)."""
    _check_controls(len(x), temperature, every)
    check_range("particles", particles, 1, 64)
    check_range("images × particles", len(x) * particles, 1, 1024)
    model.eval()
    levels = to_levels(model, x)
    known = torch.as_tensor(known, dtype=torch.bool)
    if known.shape != levels[:, None].shape:
        raise ValueError(f"The mask must have the images' shape {tuple(levels[:, None].shape)}; got {tuple(known.shape)}.")
    B, K = len(x), int(particles)
    x = (levels[:, None].float() / (model.levels - 1)).repeat_interleave(K, 0)
    known = known.repeat_interleave(K, 0)
    frame = None
    for frame in _fill(model, x, known, generator, float(temperature), int(every), cache):
        if K == 1:
            yield frame
    if K > 1:
        device = device_of(model)
        weights = (pixel_log_probs(model, frame.to(device)) * known[:, 0].to(device)).flatten(1).sum(1).view(B, K)
        pick = torch.multinomial(torch.softmax(weights.double(), 1).cpu(), 1, generator=generator)[:, 0]
        yield frame.view(B, K, 1, SIZE, SIZE)[torch.arange(B), pick]


# --- receptive field --------------------------------------------------------------------------------

def receptive_field(model, r: int, c: int, x=None, n: int = 8, generator: torch.Generator | None = None):
    """|∂ logits(r, c) / ∂ x|, averaged over ``n`` random binary images (or the given ``x``): (28, 28).
    Zero wherever pixel (r, c)'s prediction cannot depend on the input: the pixel itself and every
    later one, and, for the plain stack, its blind spot."""
    check_range("row", r, 0, SIZE - 1)
    check_range("column", c, 0, SIZE - 1)
    model.eval()
    device = device_of(model)
    if x is None:
        x = torch.bernoulli(torch.full((n, 1, SIZE, SIZE), 0.5), generator=generator)
    x = torch.as_tensor(x, dtype=torch.float32).to(device).requires_grad_(True)
    with torch.enable_grad():
        model(x)[:, :, r, c].abs().sum().backward()
    return x.grad.abs().mean(0)[0].cpu()


def describe(cfg: dict) -> str:
    levels = cfg.get("levels", 4)
    return f"{cfg.get('arch', 'plain')} {cfg['filters']}×{cfg['layers']}, " + (
        f"binary ({cfg.get('binarisation', 'stochastic')})" if levels == 2 else f"{levels} levels")


def card_lines(m: dict) -> list[str]:
    if "test_nll_nats" not in m:
        return []
    return [f"Test set ({m.get('test_images', 10000):,} images): NLL **{m['test_nll_nats']:.2f} nats** per image, "
            f"{m['bits_per_dim']:.4f} bits/dim (exact)"]


FAMILY = Family(
    name="pixelcnn",
    title="PixelCNN",
    config_cls=PixelCNNConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    data=data,
    describe=describe,
    card_lines=card_lines,
    log_likelihood=log_likelihood,
    likelihood="exact",
)
