"""Generative moment-matching networks (Li, Swersky & Zemel 2015; Dziugaite et al. 2015; Goodfellow
et al. §20.10.5): a generator trained by maximum mean discrepancy instead of a discriminator.

A generator ``G`` maps uniform noise ``z ∈ [−1, 1]^d`` to a sample. Two distributions are equal
exactly when every "moment" matches; a Gaussian kernel ``k(a, b) = exp(−‖a − b‖² / 2σ²)`` compares
infinitely many at once. On a batch of data ``x₁…x_N`` and samples ``y₁…y_M``,

    MMD² = mean_{i,i'} k(xᵢ, xᵢ') − 2 mean_{i,j} k(xᵢ, yⱼ) + mean_{j,j'} k(yⱼ, yⱼ')

is zero when the batches are identical and grows as they differ; G descends its square root. No
adversary, so no mode collapse from a game — but the estimate is noisy: its variance shrinks only as
1/batch, so GMMNs need large batches (the notes' warning; :func:`estimate_spread` shows it), and a
single bandwidth σ sees only differences of its own scale, hence a sum over several σ (``bandwidths``).

Matching pixels directly gives blurry digits, because pixel distance is a poor measure of how two
images differ. Li et al.'s "GMMN+AE" first trains an autoencoder, then matches the distribution of its
codes and decodes the generated codes. ``space="code"`` does that in one run: the first ``ae_steps``
steps train the autoencoder (reconstruction loss), the rest train G by MMD on the frozen encoder's codes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of

SPACES = ("pixels", "code")
PIXELS = 784


@dataclass
class GMMNConfig:
    dataset: str = "mnist"
    space: str = "pixels"  # match the distribution of "pixels", or of an autoencoder's "code"s (GMMN+AE)
    noise_dim: int = 10  # z ~ uniform [−1, 1]^noise_dim
    hidden: tuple = (64, 256, 256, 1024)  # generator's ReLU layers (Li et al.'s MNIST GMMN)
    bandwidths: tuple = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # σ of the kernel mixture (Li et al.'s, pixel space)
    code_dim: int = 32  # autoencoder code size (space="code")
    ae_hidden: int = 1024  # autoencoder's hidden layer
    ae_steps: int = 0  # steps that train the autoencoder before G (space="code")
    lr: float = 1e-3  # Adam
    batch_size: int = 1000  # large batches, as MMD estimates need (Li et al.'s 1,000)
    steps: int = 10_000

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.bandwidths = tuple(float(b) for b in self.bandwidths)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        if self.space not in SPACES:
            raise ValueError(f"Unknown space {self.space!r}; choose from {SPACES}.")
        check_range("noise size", self.noise_dim, 1, 1024)
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden must be one or more positive widths, e.g. (64, 256).")
        check_bandwidths(self.bandwidths)
        check_range("code size", self.code_dim, 1, 784)
        check_range("autoencoder width", self.ae_hidden, 1, 8192)
        check_range("autoencoder steps", self.ae_steps, 0, 10_000_000)
        if self.space == "code" and self.ae_steps >= self.steps:
            raise ValueError(f"ae_steps ({self.ae_steps}) must be fewer than steps ({self.steps}) "
                             "to leave steps for G.")
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 2, 10_000)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    "book": {},  # Li et al.'s pixel-space MNIST GMMN
    # GMMN+AE (Li et al. §4): pixel-space MMD gives blurred digits the classifier is unsure of; matching
    # a 16-d code is cheap and sharp. 1,000 autoencoder steps then 3,000 G steps at batch 500; bandwidths
    # for codes standardised to mean 0, variance 1 (typical squared distances about 2 × 16).
    "cpu": {"space": "code", "code_dim": 16, "ae_hidden": 512, "noise_dim": 16, "hidden": (128, 256),
            "bandwidths": (1.0, 2.0, 4.0, 8.0, 16.0), "ae_steps": 1000, "batch_size": 500, "steps": 4000},
    "tiny": {"space": "code", "code_dim": 4, "ae_hidden": 8, "noise_dim": 3, "hidden": (8,),
             "bandwidths": (1.0,), "ae_steps": 1, "batch_size": 8, "steps": 2},
}


def check_bandwidths(bandwidths) -> tuple:
    try:
        bw = tuple(float(b) for b in bandwidths)
    except (TypeError, ValueError):
        raise ValueError(f"Bandwidths must be numbers; got {bandwidths!r}.") from None
    if not 1 <= len(bw) <= 12 or not all(math.isfinite(b) and 1e-3 <= b <= 1e3 for b in bw):
        raise ValueError(f"Bandwidths must be 1 to 12 numbers between 0.001 and 1000; got {bandwidths!r}.")
    return bw


# --- MMD -------------------------------------------------------------------------------------------

def kernel(a: torch.Tensor, b: torch.Tensor, bandwidths) -> torch.Tensor:
    """Σ_σ exp(−‖a_i − b_j‖² / 2σ²) for every pair: (N, D), (M, D) -> (N, M)."""
    d2 = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)
    return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths, unbiased: bool = False) -> torch.Tensor:
    """The squared MMD between samples ``x`` (N, D) and ``y`` (M, D). The biased estimate (all pairs)
    is ≥ 0 and exactly 0 for identical batches; the unbiased one leaves out each point's kernel with
    itself, so it averages to 0 over batches from one distribution (and can be negative)."""
    kxx, kyy, kxy = kernel(x, x, bandwidths), kernel(y, y, bandwidths), kernel(x, y, bandwidths)
    if not unbiased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("The unbiased estimate needs at least 2 points on each side.")
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


def estimate_spread(x_pool: torch.Tensor, y_pool: torch.Tensor, bandwidths, batch_sizes, repeats: int = 20,
                    generator: torch.Generator | None = None, unbiased: bool = True) -> list[dict]:
    """How the MMD² estimate of the same two distributions varies with the batch size: for each size,
    ``repeats`` batches drawn from the pools, the mean and standard deviation of the estimates."""
    check_range("repeats", repeats, 2, 500)
    rows = []
    for b in batch_sizes:
        check_range("batch size", b, 2, min(len(x_pool), len(y_pool)))
        values = []
        for _ in range(repeats):
            i = torch.randperm(len(x_pool), generator=generator)[:b]
            j = torch.randperm(len(y_pool), generator=generator)[:b]
            values.append(float(mmd2(x_pool[i], y_pool[j], bandwidths, unbiased)))
        t = torch.tensor(values)
        rows.append({"batch_size": int(b), "mean": float(t.mean()), "std": float(t.std()), "values": values})
    return rows


# --- the networks ----------------------------------------------------------------------------------

def stack(sizes: list[int], last: nn.Module | None) -> nn.Sequential:
    """Linear layers with ReLU between them, ``last`` after the final one."""
    mods = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods, *([last] if last is not None else []))


class GMMN(nn.Module):
    """G: z -> pixels (space="pixels") or -> an autoencoder code, decoded to pixels (space="code")."""

    def __init__(self, c: GMMNConfig):
        super().__init__()
        self.space, self.noise_dim, self.bandwidths = c.space, c.noise_dim, c.bandwidths
        pixels = c.space == "pixels"
        # pixels in [0, 1] (a sigmoid); codes are unbounded (a linear last layer)
        self.G = stack([c.noise_dim, *c.hidden, PIXELS if pixels else c.code_dim], nn.Sigmoid() if pixels else None)
        if not pixels:
            # Li et al.'s code layer is a sigmoid; here the code is standardised by a batch norm without
            # learned scale (mean 0, variance 1 per unit), which trains far faster than saturating sigmoids
            # (78 vs 200 nats after 800 steps) and fixes the scale the bandwidths see
            self.encoder = stack([PIXELS, c.ae_hidden, c.code_dim], nn.BatchNorm1d(c.code_dim, affine=False))
            self.decoder = stack([c.code_dim, c.ae_hidden, PIXELS], nn.Sigmoid())
        self.register_buffer("trained", torch.zeros((), dtype=torch.int64))  # train_step calls so far

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, noise_dim) -> (B, 1, 28, 28) images in [0, 1]."""
        out = self.G(z)
        if self.space == "code":
            out = self.decoder(out)
        return out.view(-1, 1, 28, 28)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What G's outputs are matched against: flattened pixels, or the (frozen) encoder's codes."""
        flat = x.reshape(len(x), -1)
        if self.space == "pixels":
            return flat
        with torch.no_grad():
            return self.encoder(flat)


def build(config: GMMNConfig) -> GMMN:
    return GMMN(config)


def noise(n: int, noise_dim: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """z ~ uniform [−1, 1]^noise_dim (Li et al.'s prior)."""
    g_device = generator.device if generator else "cpu"
    return (torch.rand(n, noise_dim, generator=generator, device=g_device) * 2 - 1).to(device)


def train_step(model: GMMN, batch, config: GMMNConfig) -> dict:
    """The autoencoder's reconstruction loss for the first ``ae_steps`` steps (space="code"), then
    G's √MMD² against the batch (Li et al. train the square root: its gradient does not vanish near 0)."""
    x, _ = batch
    phase_ae = config.space == "code" and int(model.trained) < config.ae_steps
    model.trained += 1
    if phase_ae:
        flat = x.reshape(len(x), -1)
        recon = F.binary_cross_entropy(model.decoder(model.encoder(flat)), flat, reduction="sum") / len(x)
        return {"loss": recon, "reconstruction": recon.detach()}
    fake = model.G(noise(len(x), model.noise_dim, device=x.device))
    m2 = mmd2(model.target(x), fake, model.bandwidths)
    return {"loss": m2.clamp_min(1e-12).sqrt(), "mmd2": m2.detach()}


@torch.no_grad()
def sample(model: GMMN, n: int, generator: torch.Generator | None = None):
    """``n`` images, one pass of G (and the decoder)."""
    check_range("number of samples", n, 1, 10_000)
    z = noise(n, model.noise_dim, generator, device_of(model))
    yield torch.cat([model.generate(z[i:i + 1000]).cpu() for i in range(0, n, 1000)])


@torch.no_grad()
def evaluate(model: GMMN, x, y, n: int = 1000) -> dict:
    """MMD² (unbiased, the model's own kernels) between held-out images and samples, in the space G is
    trained in, beside the same estimate between two halves of the held-out set (what 0 looks like)."""
    device = device_of(model)
    g = torch.Generator().manual_seed(0)
    real = model.target(x[:n].to(device))
    fake = model.G(noise(n, model.noise_dim, g, device))
    other = model.target(x[n:2 * n].to(device))
    out = {"mmd2_test": float(mmd2(real, fake, model.bandwidths, unbiased=True)),
           "mmd2_test_vs_test": float(mmd2(real, other, model.bandwidths, unbiased=True))}
    if model.space == "code":
        flat = x[:n].reshape(-1, PIXELS).to(device)
        out["reconstruction_bce"] = float(F.binary_cross_entropy(model.decoder(model.encoder(flat)), flat,
                                                                 reduction="sum") / len(flat))
    return out


def card_lines(metrics: dict) -> list[str]:
    if "mmd2_test" not in metrics:
        return []
    lines = [f"MMD² between held-out images and samples **{metrics['mmd2_test']:.3g}** "
             f"(between two held-out halves: {metrics['mmd2_test_vs_test']:.3g})"]
    if "reconstruction_bce" in metrics:
        lines.append(f"Autoencoder reconstruction: {metrics['reconstruction_bce']:.1f} nats per image (held-out)")
    return lines


def describe(cfg: dict) -> str:
    where = "GMMN+AE, code {}".format(cfg["code_dim"]) if cfg.get("space") == "code" else "pixel space"
    return f"{where}, {len(cfg['bandwidths'])} bandwidths, batch {cfg['batch_size']}"


# --- a 2-D lab: the same loss on toy data, trained in the page ------------------------------------------

LAB_BANDWIDTHS = {"mixture": (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)}  # the multi-bandwidth choice of the 2-D lab


@dataclass
class Lab2D:
    """A small generator of 2-D points trained by MMD against one of the GAN lab's toy distributions."""

    dataset: str
    bandwidths: tuple
    batch_size: int
    G: nn.Module
    opt: torch.optim.Optimizer
    generator: torch.Generator  # all of the lab's randomness
    step: int = 0
    history: list = field(default_factory=list)  # {"step", "mmd2"} per step


def make_lab2d(dataset: str = "grid", bandwidths=LAB_BANDWIDTHS["mixture"], batch_size: int = 256,
               lr: float = 5e-3, hidden: int = 64, seed: int = 0) -> Lab2D:
    from models.image import gan2d

    if dataset not in gan2d.DATASETS or dataset == "drawn":
        raise ValueError(f"Unknown 2-D dataset {dataset!r}; choose from {[d for d in gan2d.DATASETS if d != 'drawn']}.")
    bandwidths = check_bandwidths(bandwidths)
    check_range("batch size", batch_size, 4, 4096)
    check_range("learning rate", lr, 1e-6, 1.0)
    check_range("hidden neurons", hidden, 2, 512)
    g = torch.Generator().manual_seed(seed)
    G = gan2d.mlp(2, hidden, 3, 2, g)
    return Lab2D(dataset, bandwidths, batch_size, G, torch.optim.Adam(G.parameters(), lr=lr), g)


def lab_real(lab: Lab2D, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    from models.image import gan2d

    return gan2d.real_points(lab.dataset, n, generator or lab.generator)


def lab_fake(lab: Lab2D, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return lab.G(noise(n, 2, generator or lab.generator))


def train2d(lab: Lab2D, steps: int) -> list[dict]:
    """``steps`` steps of √MMD² between a fresh real batch and a fresh batch of G's points."""
    check_range("steps", steps, 1, 100_000)
    for _ in range(steps):
        real, fake = lab_real(lab, lab.batch_size), lab_fake(lab, lab.batch_size)
        m2 = mmd2(real, fake, lab.bandwidths)
        lab.opt.zero_grad(set_to_none=True)
        m2.clamp_min(1e-12).sqrt().backward()
        lab.opt.step()
        lab.step += 1
        lab.history.append({"step": lab.step, "mmd2": float(m2.detach())})
    return lab.history


FAMILY = Family(
    name="gmmn",
    title="Generative moment-matching network",
    config_cls=GMMNConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    describe=describe,
    card_lines=card_lines,
)
