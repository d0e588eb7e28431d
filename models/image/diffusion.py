"""Denoising diffusion (DDPM, Ho et al. 2020; DDIM, Song et al. 2021), as in Deep Learning from
Scratch 5 ch. 10 and Foster ch. 8.

A fixed forward process adds Gaussian noise over T steps, ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)``
with ``ᾱ_t = Π (1 - β_s)``, until ``x_T`` is pure noise. A U-Net ``ε_θ(x_t, t)`` learns to predict
the noise that was added, with the simple loss ``|ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)|²``. Sampling
runs the process backwards from noise; from any ``x_t`` the model's guess of the clean image is

    x̂_0 = (x_t - √(1-ᾱ_t) ε_θ) / √ᾱ_t

DDIM steps from ``t`` to an earlier ``s`` (any subsequence of timesteps) with
``x_s = √ᾱ_s x̂_0 + √(1-ᾱ_s-σ²) ε_θ + σ z``; ``η`` scales σ between 0 (deterministic DDIM) and 1,
where using all T steps is exactly DDPM's ancestral sampler.

Class-conditional models (classifier-free guidance, Ho & Salimans 2022) are trained with the label
replaced by a "null" label 10% of the time; sampling mixes
``ε = ε_uncond + w (ε_cond - ε_uncond)``: w = 0 ignores the label, 1 follows it, above 1 exaggerates it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_lr_decay, check_range, device_of

CLASSES = 10


@dataclass
class DiffusionConfig:
    dataset: str = "mnist"
    channels: tuple = (64, 128, 256)  # U-Net widths at 28, 14 and 7 pixels (the book's)
    time_dim: int = 100  # sinusoidal time-embedding size
    T: int = 1000  # noising steps used in training
    schedule: str = "linear"  # "linear" (β from 1e-4 to 0.02, Ho et al.) or "cosine" (Nichol & Dhariwal)
    conditional: bool = False  # learn p(x | class) too, for classifier-free guidance
    p_uncond: float = 0.1  # how often the label is dropped in training (conditional models)
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 4690  # 10 epochs of 60k at batch 128, as in the book
    ema_decay: float = 0.0  # EMA of the weights, sampled from (0 = off; checkpoints written before EMA)
    min_snr_gamma: float = 0.0  # loss weight min(SNR_t, γ) / SNR_t (Hang et al. 2023; 0 = the plain loss)
    warmup_steps: int = 0  # linear learning-rate warm-up
    lr_decay: str = "none"  # "none" or "cosine" (to 0 at the last step)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError("channels must be three positive widths, e.g. (64, 128, 256).")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine'; got {self.schedule!r}.")
        check_range("T (noising steps)", self.T, 2, 10_000)
        check_range("label dropout", self.p_uncond, 0.0, 1.0)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("EMA decay", self.ema_decay, 0.0, 0.9999)
        check_range("min-SNR γ", self.min_snr_gamma, 0.0, 1000.0)
        check_range("warm-up steps", self.warmup_steps, 0, 10_000_000)
        check_lr_decay(self.lr_decay)


PRESETS = {
    "book": {"ema_decay": 0.999},  # the book samples from an EMA of the weights, decay 0.999
    "cpu": {"channels": (32, 64, 128), "steps": 3000, "batch_size": 64, "ema_decay": 0.999},  # about 35 minutes on 2 cores
    "tiny": {"channels": (4, 8, 8), "time_dim": 8, "T": 10, "batch_size": 8, "steps": 2},
}


def betas_for(schedule: str, T: int) -> torch.Tensor:
    if schedule == "linear":
        return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    s = 0.008  # cosine: ᾱ follows a squared cosine, so noise is added more evenly over t
    f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def alpha_bars(schedule: str, T: int) -> torch.Tensor:
    """ᾱ_t = Π_{s<=t} (1 - β_s): how much of x_0 survives at step t."""
    if schedule not in ("linear", "cosine"):
        raise ValueError(f"schedule must be 'linear' or 'cosine'; got {schedule!r}.")
    return torch.cumprod(1 - betas_for(schedule, T), 0).float()


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim), as for transformer positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half, 1))
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class ConvBlock(nn.Module):
    """(Conv-BN-ReLU)×2, with the time (and label) embedding added to the input channels."""

    def __init__(self, c_in: int, c_out: int, time_dim: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
        )
        self.mlp = nn.Sequential(nn.Linear(time_dim, c_in), nn.ReLU(), nn.Linear(c_in, c_in))

    def forward(self, x, v):
        return self.convs(x + self.mlp(v)[:, :, None, None])


class UNet(nn.Module):
    """ε_θ(x_t, t[, y]): two down stages (28 -> 14 -> 7), a bottleneck, two up stages with skips."""

    def __init__(self, c: DiffusionConfig):
        super().__init__()
        c1, c2, c3 = c.channels
        self.time_dim = c.time_dim
        self.conditional = c.conditional
        self.down1 = ConvBlock(1, c1, c.time_dim)
        self.down2 = ConvBlock(c1, c2, c.time_dim)
        self.bottleneck = ConvBlock(c2, c3, c.time_dim)
        self.up2 = ConvBlock(c3 + c2, c2, c.time_dim)
        self.up1 = ConvBlock(c2 + c1, c1, c.time_dim)
        self.out = nn.Conv2d(c1, 1, 1)
        # label CLASSES is the "null" label used for the unconditional half of guidance
        self.label_emb = nn.Embedding(CLASSES + 1, c.time_dim) if c.conditional else None
        self.T = c.T
        self.register_buffer("alpha_bar", alpha_bars(c.schedule, c.T), persistent=False)
        # NHWC weights pick oneDNN's faster CPU convolutions (about 1.6× per denoising step)
        self.to(memory_format=torch.channels_last)

    def forward(self, x, t, y=None):
        v = time_embedding(t, self.time_dim)
        if self.label_emb is not None:
            y = torch.full_like(t, CLASSES) if y is None else y
            v = v + self.label_emb(y)
        x1 = self.down1(x, v)  # (B, c1, 28, 28)
        x2 = self.down2(F.max_pool2d(x1, 2), v)  # (B, c2, 14, 14)
        h = self.bottleneck(F.max_pool2d(x2, 2), v)  # (B, c3, 7, 7)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2, mode="bilinear"), x2], 1), v)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2, mode="bilinear"), x1], 1), v)
        return self.out(h)


def build(config: DiffusionConfig) -> UNet:
    return UNet(config)


def to_model_space(x):
    """Images in [0, 1] -> [-1, 1], the range the noise schedule assumes."""
    return x * 2 - 1


def q_sample(alpha_bar: torch.Tensor, x0, t, noise):
    """Forward process: x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, for timesteps ``t`` (B,)."""
    ab = alpha_bar[t][:, None, None, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def strip_timesteps(T: int) -> list[int]:
    """The timesteps a forward-process strip shows: dense early, where most of the image goes, then
    sparser up to T - 1 (for T = 1000: 0, 50, 100, 200, ..., 800, 999)."""
    check_range("T (noising steps)", T, 2, 100_000)
    return sorted({min(T - 1, round(f * T)) for f in (0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)} | {T - 1})


def forward_strip(x0, alpha_bar: torch.Tensor, ts, generator=None) -> torch.Tensor:
    """q(x_t | x_0) for one image at each timestep in ``ts``, every one with the same ε, so the strip
    shows the signal fading under one fixed noise rather than fresh noise each time.

    ``x0``: (1, 1, H, W) image in [0, 1]. Returns (len(ts), 1, H, W) images in [0, 1]."""
    T = len(alpha_bar)
    ts = [int(t) for t in ts]
    for t in ts:
        check_range("t", t, 0, T - 1)
    x0 = to_model_space(x0)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator else "cpu")
    n = len(ts)
    xt = q_sample(alpha_bar, x0.expand(n, -1, -1, -1), torch.tensor(ts), noise.expand(n, -1, -1, -1))
    return to_pixels(xt)


def min_snr_weights(alpha_bar: torch.Tensor, t, gamma: float):
    """Min-SNR-γ loss weights for ε-prediction (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy"): min(SNR_t, γ) / SNR_t with SNR_t = ᾱ_t / (1 − ᾱ_t). Nearly clean
    timesteps (high SNR), whose noise is easy to see and whose gradients otherwise dominate, are
    weighted down; noisy ones keep weight 1. γ = 5 is the paper's choice."""
    ab = alpha_bar[t]
    snr = ab / (1 - ab)
    return snr.clamp(max=gamma) / snr


def _loss(model: UNet, x, y, generator=None, p_uncond=0.0, min_snr_gamma=0.0):
    x0 = to_model_space(x)
    b = len(x0)
    t = torch.randint(0, model.T, (b,), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    if model.conditional:
        drop = torch.rand(b, generator=generator, device=x0.device) < p_uncond
        y = torch.where(drop, torch.full_like(y, CLASSES), y)
    else:
        y = None
    err = (model(q_sample(model.alpha_bar, x0, t, noise), t, y) - noise).pow(2).mean((1, 2, 3))
    if min_snr_gamma:
        err = err * min_snr_weights(model.alpha_bar, t, min_snr_gamma)
    return err.mean()


def train_step(model: UNet, batch, config: DiffusionConfig) -> dict:
    x, y = batch
    return {"loss": _loss(model, x, y, p_uncond=config.p_uncond, min_snr_gamma=config.min_snr_gamma)}


@torch.no_grad()
def evaluate(model: UNet, x, y, batch_size: int = 1000) -> dict:
    """Held-out noise-prediction MSE at seeded random timesteps (labels kept for conditional models)."""
    model.eval()
    device = device_of(model)
    g = torch.Generator(device=device).manual_seed(0)
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        total += _loss(model, xb, yb, generator=g).item() * len(xb)
    return {"test_mse": total / len(x)}


def timesteps(T: int, steps: int) -> list[int]:
    """An evenly spaced, decreasing subsequence of ``steps`` timesteps from T-1 down to 0."""
    check_range("sampling steps", steps, 1, T)
    if steps == 1:
        return [T - 1]
    return sorted({round(i * (T - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def reverse(eps_fn, alpha_bar: torch.Tensor, x_t, ts: list[int], generator=None, eta: float = 1.0,
            clip: float | None = 1.0):
    """The reverse process for any noise predictor ``eps_fn(x, t) -> ε`` (pixels or latents): DDIM
    steps over the decreasing timesteps ``ts``, with σ scaled by η. Yields ``(t, x_t, x̂_0)`` after
    each step. ``clip`` bounds x̂_0 (pixels live in [-1, 1]; latents are left unclipped)."""
    check_range("η", eta, 0.0, 1.0)
    x = x_t
    device = x.device
    for i, t in enumerate(ts):
        eps = eps_fn(x, torch.full((len(x),), t, device=device, dtype=torch.long))
        ab = alpha_bar[t]
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # keep ε consistent with the clipped x̂_0
        s = ts[i + 1] if i + 1 < len(ts) else -1
        ab_s = alpha_bar[s] if s >= 0 else torch.ones((), device=device)
        sigma = eta * ((1 - ab_s) / (1 - ab) * (1 - ab / ab_s)).clamp(min=0).sqrt()
        x = ab_s.sqrt() * x0 + (1 - ab_s - sigma ** 2).clamp(min=0).sqrt() * eps
        if s >= 0 and eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=generator.device if generator else "cpu").to(device)
        yield t, x, x0


def guided(eps_c, eps_u, guidance: float):
    """Classifier-free guidance: ε_u + w (ε_c − ε_u)."""
    return eps_u + guidance * (eps_c - eps_u)


@torch.no_grad()
def denoise(model: UNet, x_t, ts: list[int], generator=None, eta: float = 1.0, labels=None, guidance: float = 0.0):
    """Run the reverse process over the decreasing timesteps ``ts`` starting from ``x_t``; yields
    ``(t, x_t, x̂_0)`` after each step, all in model space [-1, 1]. Any state can be rebuilt from the
    seed (:func:`replay`), so a replay can branch from it with a new seed, η or step count."""
    check_range("η", eta, 0.0, 1.0)
    check_range("guidance scale", guidance, 0.0, 50.0)
    if guidance and not model.conditional:
        raise ValueError("Guidance needs a class-conditional checkpoint.")
    model.eval()
    device = device_of(model)
    b = len(x_t)
    y = None
    if labels is not None and not model.conditional:
        raise ValueError("Class labels need a class-conditional checkpoint.")
    if model.conditional:
        y = torch.full((b,), CLASSES, device=device)
        if labels is not None:
            y = torch.as_tensor(labels, dtype=torch.long).flatten()
            if len(y) != b or y.min() < 0 or y.max() >= CLASSES:
                raise ValueError(f"Give one class label from 0 to {CLASSES - 1} per sample ({b}); got {labels!r}.")
            y = y.to(device)

    def eps_fn(x, tt):
        if model.conditional and guidance != 1.0 and labels is not None:
            eps_c, eps_u = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, torch.full_like(y, CLASSES)])).chunk(2)
            return guided(eps_c, eps_u, guidance)
        return model(x, tt, y)

    yield from reverse(eps_fn, model.alpha_bar, x_t.to(device), ts, generator, eta)


def initial_noise(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_T ~ N(0, I): the start of every reverse process."""
    return torch.randn(n, 1, 28, 28, generator=generator, device=generator.device if generator else "cpu")


@torch.no_grad()
def sample(model: UNet, n: int, generator: torch.Generator | None = None, steps: int | None = None,
           eta: float = 1.0, labels=None, guidance: float = 0.0, preview_every: int = 10):
    """Images (n, 1, 28, 28) in [0, 1], from noise. Yields the current x̂_0 every ``preview_every``
    steps and the final images last. Defaults: all T steps with η = 1, i.e. DDPM ancestral sampling."""
    check_range("number of samples", n, 1, 10_000)
    check_range("preview interval", preview_every, 1, 10_000)
    ts = timesteps(model.T, model.T if steps is None else int(steps))
    x_T = initial_noise(n, generator)
    for i, (t, x, x0) in enumerate(denoise(model, x_T, ts, generator, eta, labels, guidance)):
        if i + 1 == len(ts):
            yield to_pixels(x)
        elif (i + 1) % preview_every == 0:
            yield to_pixels(x0)


def to_pixels(x) -> torch.Tensor:
    """Model space [-1, 1] -> images in [0, 1] on the CPU."""
    return ((x.clamp(-1, 1) + 1) / 2).cpu()


@torch.no_grad()
def replay(model: UNet, n: int, seed: int, ts: list[int], k: int, eta: float = 1.0, labels=None,
           guidance: float = 0.0) -> torch.Tensor:
    """x after the first ``k`` steps of the run that ``seed`` starts (x_T from the seeded generator,
    then the reverse process over ``ts`` drawing from the same generator): a run is a pure function
    of its seed and settings, so any of its states can be rebuilt instead of kept (k = 0 is x_T)."""
    from itertools import islice

    from models.core.family import seeded

    check_range("replay step", k, 0, len(ts))
    g = seeded(seed)
    x = initial_noise(n, g)
    # the whole schedule, stopped after k steps: a shorter ``ts`` would change the last step's target
    for _, x, _ in islice(denoise(model, x, ts, g, eta, labels, guidance), k):
        pass
    return x.cpu()


def branch(model: UNet, x_i, ts: list[int], i: int, seed: int, steps: int | None = None, eta: float = 1.0,
           labels=None, guidance: float = 0.0):
    """Re-run the reverse process from state ``x_i`` (after ``i`` steps of a run over ``ts``, so at
    noise level ``ts[i]``) with a seed, η and total step count of your choice.

    The random draws the original run made before step i are replayed first, so branching with the
    original seed and settings reproduces the original run exactly; any change makes a sibling.
    """
    from models.core.family import seeded

    check_range("branch step", i, 0, len(ts) - 1)
    g = seeded(seed)
    initial_noise(len(x_i), g)
    if eta > 0:
        for _ in range(i):
            torch.randn(x_i.shape, generator=g)
    rest = ts[i:] if steps is None else [ts[i]] + [t for t in timesteps(model.T, int(steps)) if t < ts[i]]
    yield from denoise(model, x_i, rest, g, eta, labels, guidance)



def describe(cfg: dict) -> str:
    return f"{cfg['schedule']} schedule, T {cfg['T']}" + (", class-conditional" if cfg.get("conditional") else "")


def card_lines(m: dict) -> list[str]:
    return [f"Test set: noise-prediction MSE **{m['test_mse']:.4f}**"] if "test_mse" in m else []


FAMILY = Family(
    name="diffusion",
    title="Diffusion (DDPM / DDIM)",
    config_cls=DiffusionConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    describe=describe,
    card_lines=card_lines,
    presets=PRESETS,
    # the page's default and its cards: 100 strided steps with full noise (η = 1). On the 28,000-step Fashion
    # model it scores Fréchet 107 where deterministic DDIM (η = 0, 50 steps) scores 130; all 1000 DDPM
    # steps per sample would be hours of scoring on a CPU
    score_kwargs={"steps": 100, "eta": 1.0},
    class_kwargs={"guidance": 3.0},  # the page's default w
)
