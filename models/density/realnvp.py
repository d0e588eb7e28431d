"""RealNVP: a normalising flow with affine coupling layers (Dinh, Sohl-Dickstein & Bengio 2017),
as in Foster 2nd ed. ch. 6.

A flow is an invertible function ``z = f(x)`` from data to a simple prior (here ``N(0, I)``), built
from layers whose Jacobian determinant is cheap. The change-of-variables formula then gives the
*exact* log-density of any point:

    log p(x) = log N(f(x); 0, I)  +  Σ_layers log |det ∂f_k/∂x_{k-1}|
               prior term             how much each layer stretches space

An **affine coupling layer** keeps the features picked by a binary ``mask`` and rescales and shifts
the others by amounts computed *from the kept ones*:

    y = m ⊙ x  +  (1 − m) ⊙ (x ⊙ exp(s(m ⊙ x)) + t(m ⊙ x))
    log |det J| = Σ (1 − m) ⊙ s(m ⊙ x)        inverse: x = m ⊙ y + (1 − m) ⊙ (y − t) ⊙ exp(−s)

The Jacobian is triangular, so its determinant is the product of its diagonal ``exp(s)``, and the
inverse never has to invert ``s`` or ``t``, which can be any networks. Alternating masks lets every
feature be transformed. Sampling runs the layers backwards from ``z ~ N(0, T² I)`` (``T`` is the
temperature). On images (Dinh et al. §3.6) the masks are checkerboards and channel halves, and a
**squeeze** (each 2×2 block of pixels becomes 4 channels) lets later couplings mix pixels that are
far apart; this file keeps every dimension to the end (no factoring-out), which costs little at
28×28 and keeps each layer's output the same size as the data, so it can be looked at.

**Pixels are discrete, densities are not.** An 8-bit image ``x ∈ {0…255}^D`` is *dequantised*,
``y = (x + u)/256`` with ``u ~ U[0, 1)^D``, and moved off the edges of [0, 1] by the logit transform
of Dinh et al., ``w = logit(α + (1 − 2α) y)``. The flow models ``w``; the density of ``y`` adds the
logit's log-Jacobian, and ``log p(y) − D log 256`` is a lower bound on the discrete log-likelihood
(Theis et al. 2016). Bits per dimension, comparable to the published ~1.06 on MNIST, is

    bits/dim = −(log p_w(w) + Σ log |dw/dy| − D log 256) / (D ln 2).

The 2-D coupling layer here is also what the in-page toy flow (:mod:`models.density.flow2d`) stacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.core.family import Family, check_range, device_of

LOG_2PI = math.log(2 * math.pi)
LEVELS = 256  # 8-bit pixels


class Coupling(nn.Module):
    """An affine coupling layer: features where ``mask`` is 1 pass through and set the scale ``s``
    and shift ``t`` of the others. ``net`` maps the masked input to ``2×`` its channels (s then t)."""

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        # s = scale · tanh(raw): bounded early in training (Dinh et al. use tanh with a learned scale)
        self.scale = nn.Parameter(torch.ones(mask.shape[0], *([1] * (mask.ndim - 1))))

    def _s_t(self, x_kept):
        s, t = self.net(x_kept).chunk(2, dim=1)
        free = 1 - self.mask
        return self.scale * torch.tanh(s) * free, t * free

    def forward(self, x):
        """``x -> (y, log|det J|)``, the log-determinant per example."""
        s, t = self._s_t(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y):
        s, t = self._s_t(y * self.mask)
        return (y - t) * torch.exp(-s)


class Squeeze(nn.Module):
    """(C, H, W) -> (4C, H/2, W/2): each 2×2 block of pixels becomes four channels; log|det| = 0."""

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y):
        b, c, h, w = y.shape
        y = y.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c // 4, h * 2, w * 2)


class ConvNet(nn.Module):
    """s and t for image couplings: 3×3 conv in, ``blocks`` residual 3×3 blocks, 3×3 conv out
    (zero-initialised, so every coupling starts as the identity and training starts from the prior)."""

    def __init__(self, channels: int, hidden: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                                                  nn.ReLU(), nn.Conv2d(hidden, hidden, 1)) for _ in range(blocks))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, 2 * channels, 3, padding=1))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def checkerboard(c: int, h: int, w: int, parity: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((ys + xs) % 2 == parity).float().expand(c, h, w).clone()


def channel_mask(c: int, h: int, w: int, parity: int) -> torch.Tensor:
    keep = (torch.arange(c) < c // 2) if parity == 0 else (torch.arange(c) >= c // 2)
    return keep.float()[:, None, None].expand(c, h, w).clone()


@dataclass
class RealNVPConfig:
    dataset: str = "mnist"
    scales: tuple = (2, 4, 4)  # coupling layers per scale: 28×28×1, then 14×14×4, then 7×7×16 (squeezes between)
    hidden: int = 32  # channels of each coupling's s/t network
    blocks: int = 1  # residual blocks per s/t network
    alpha: float = 0.05  # logit transform margin (Dinh et al. use 0.05)
    lr: float = 1e-3  # Adam
    batch_size: int = 64
    steps: int = 12_000  # 12.8 epochs at batch 64

    def __post_init__(self):
        self.scales = tuple(int(k) for k in self.scales)

    def validate(self):
        if self.dataset not in ("mnist", "fashion"):
            raise ValueError(f"Unknown dataset {self.dataset!r} for RealNVP: it trains on 'mnist' or 'fashion'.")
        if not 1 <= len(self.scales) <= 3 or min(self.scales) < 0 or sum(self.scales) < 1:
            raise ValueError("scales must list 1 to 3 coupling counts (28×28, 14×14, 7×7), at least one layer.")
        check_range("hidden channels", self.hidden, 1, 1024)
        check_range("residual blocks", self.blocks, 0, 16)
        check_range("logit margin α", self.alpha, 1e-6, 0.2)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    # Dinh et al.'s image model is far larger (8 residual blocks of 64 features per coupling, batch norm,
    # several scales); Foster's chapter trains RealNVP on 2-D moons only (see flow2d's book preset). This
    # "book" keeps the paper's pattern (checkerboard / squeeze / channel couplings) at a size a CPU can train.
    "book": {"scales": (3, 6, 6), "hidden": 96, "blocks": 2, "steps": 30_000},
    "cpu": {},  # about 70 minutes on one CPU thread
    "tiny": {"scales": (1, 1, 1), "hidden": 4, "blocks": 0, "batch_size": 8, "steps": 2},
}


class Flow(nn.Module):
    """A stack of invertible ``layers``: each maps ``x -> (y, log|det J|)`` and has an ``inverse``."""

    layers: nn.ModuleList

    def forward(self, x):
        """``x -> (z, Σ log|det J|)``, the log-determinant per example."""
        logdet = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


class RealNVP(Flow):
    """The image flow: the logit pre-processing is outside (see :func:`to_flow_space`); ``layers`` map
    ``w`` (B, 1, 28, 28) to ``z`` (B, 16, 7, 7) or whatever the last scale's shape is."""

    def __init__(self, c: RealNVPConfig):
        super().__init__()
        self.alpha = c.alpha
        layers, ch, size = [], 1, 28
        for k, count in enumerate(c.scales):
            if k > 0:
                layers.append(Squeeze())
                ch, size = ch * 4, size // 2
            for i in range(count):
                # 1 channel cannot be split by channels: checkerboards at 28×28; after a squeeze,
                # alternate checkerboard and channel masks (Dinh et al. §3.6)
                if ch == 1:
                    mask = checkerboard(ch, size, size, i % 2)
                else:
                    mask = (channel_mask if i % 2 else checkerboard)(ch, size, size, (i // 2) % 2)
                layers.append(Coupling(mask, ConvNet(ch, c.hidden, c.blocks)))
        self.layers = nn.ModuleList(layers)
        self.z_shape = (ch, size, size)



def build(config: RealNVPConfig) -> RealNVP:
    return RealNVP(config)


def standard_normal_logpdf(z) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the first dimension."""
    return (-0.5 * (z.pow(2) + LOG_2PI)).flatten(1).sum(1)


def dequantise(pixels, generator=None) -> torch.Tensor:
    """8-bit pixel values (floats 0…255) -> ``y = (x + u) / 256`` in [0, 1), ``u ~ U[0, 1)``."""
    u = torch.rand(pixels.shape, generator=generator, device=pixels.device)
    return (pixels + u) / LEVELS


def to_flow_space(y, alpha: float):
    """``w = logit(α + (1 − 2α) y)`` and the per-example log|dw/dy|."""
    p = alpha + (1 - 2 * alpha) * y
    w = torch.log(p) - torch.log1p(-p)
    logdet = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return w, logdet


def from_flow_space(w, alpha: float):
    return ((torch.sigmoid(w) - alpha) / (1 - 2 * alpha)).clamp(0, 1)


def log_prob_parts(model: RealNVP, pixels, generator=None) -> dict:
    """The terms of the dequantised image log-likelihood, per example, in nats: ``prior`` (log N(z)),
    ``flow`` (Σ log|det| of the couplings), ``logit`` (log|dw/dy|) and ``log_p`` = their sum − D log 256,
    the log-likelihood of the 8-bit pixels (a lower bound, over the dequantisation noise)."""
    y = dequantise(pixels, generator)
    w, logit_ld = to_flow_space(y, model.alpha)
    z, flow_ld = model(w)
    prior = standard_normal_logpdf(z)
    d = pixels[0].numel()
    return {"prior": prior, "flow": flow_ld, "logit": logit_ld,
            "log_p": prior + flow_ld + logit_ld - d * math.log(LEVELS)}


def bits_per_dim(log_p, dims: int):
    return -log_p / (dims * math.log(2))


def train_step(model: RealNVP, batch, config: RealNVPConfig) -> dict:
    pixels, _ = batch
    parts = log_prob_parts(model, pixels)
    bpd = bits_per_dim(parts["log_p"], pixels[0].numel()).mean()
    return {"loss": bpd, "bits_per_dim": bpd.detach(), "log_det": (parts["flow"] + parts["logit"]).mean().detach()}


@torch.no_grad()
def log_likelihood(model: RealNVP, pixels, batch_size: int = 500) -> torch.Tensor:
    """Per-image log-likelihood of 8-bit images (N, 1, 28, 28) of values 0…255, in nats, with the
    dequantisation noise seeded (the same figure every time)."""
    model.eval()
    pixels = torch.as_tensor(pixels, dtype=torch.float32)
    if pixels.ndim != 4 or pixels.shape[1:] != (1, 28, 28):
        raise ValueError(f"RealNVP scores (N, 1, 28, 28) images; got {tuple(pixels.shape)}.")
    if not torch.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > LEVELS - 1:
        raise ValueError("RealNVP scores 8-bit pixel values between 0 and 255.")
    device = device_of(model)
    g = torch.Generator(device=device).manual_seed(0)
    out = [log_prob_parts(model, chunk.to(device), g)["log_p"].cpu() for chunk in pixels.split(batch_size)]
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: RealNVP, pixels, y=None) -> dict:
    """Held-out bits/dim on the test set (8-bit pixel space, uniform dequantisation, seeded)."""
    log_p = log_likelihood(model, pixels)
    return {"bits_per_dim": float(bits_per_dim(log_p, 784).mean()), "nll_nats": float(-log_p.mean()),
            "test_images": len(pixels)}


@torch.no_grad()
def sample(model: RealNVP, n: int, generator: torch.Generator | None = None, temperature: float = 1.0):
    """``n`` images (n, 1, 28, 28) in [0, 1]: ``z ~ N(0, T² I)`` run backwards through the flow.
    Temperatures below 1 (Kingma & Dhariwal 2018) give cleaner, less varied digits."""
    check_range("number of samples", n, 1, 10_000)
    check_range("temperature", temperature, 0.0, 2.0)
    model.eval()
    z = temperature * torch.randn(n, *model.z_shape, generator=generator).to(device_of(model))
    images = torch.cat([from_flow_space(model.inverse(chunk), model.alpha) for chunk in z.split(256)])
    yield images.cpu()


def data(config: RealNVPConfig, split: str):
    """8-bit pixel values as floats 0…255 (the flow dequantises them itself) and labels."""
    from models.core import data as datasets

    x, y = datasets.load_uint8(config.dataset, split)
    return (torch.from_numpy(x).unsqueeze(1).float(), torch.from_numpy(y).long()), {
        "title": datasets.DATASETS[config.dataset]["title"], "dataset": config.dataset,
        "preprocessing": PREPROCESSING}


PREPROCESSING = "8-bit pixels, uniform dequantisation (x + u)/256, logit transform (α 0.05); bits/dim in pixel space"


def describe(cfg: dict) -> str:
    return f"{sum(cfg['scales'])} couplings, width {cfg['hidden']}"


def card_lines(m: dict) -> list[str]:
    return [f"Test set: **{m['bits_per_dim']:.3f} bits/dim** ({m['nll_nats']:.0f} nats per image, "
            f"{m['test_images']} images; uniform dequantisation, 8-bit pixel space; published RealNVP-class "
            "flows reach about 1.06)"] if "bits_per_dim" in m else []


FAMILY = Family(
    name="realnvp",
    title="RealNVP normalising flow",
    config_cls=RealNVPConfig,
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
