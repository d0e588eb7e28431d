"""A two-level hierarchical VAE on binarised MNIST (Deep Learning from Scratch 5, the step from the
VAE to diffusion; Sønderby et al.'s Ladder VAE for the top-down inference used here).

One latent level ``z`` under a fixed N(0, I) prior becomes two: a **top** latent ``z₂ ~ N(0, I)``
and a **bottom** latent drawn from a *learned* prior given the top, ``z₁ ~ p(z₁|z₂) = N(μ(z₂), σ²(z₂))``;
the decoder ``p(x|z₁, z₂)`` gives each pixel's Bernoulli probability. Inference runs top-down too:
``q(z₂|x)`` then ``q(z₁|x, z₂)``, sharing one bottom-up feature extractor of ``x``. The ELBO adds one KL
term per level, each against its own prior:

    ELBO = E_q[ log p(x|z₁, z₂) ]  −  KL(q(z₂|x) ‖ N(0, I))  −  E_q(z₂|x)[ KL(q(z₁|x, z₂) ‖ p(z₁|z₂)) ]

Both KLs are Gaussian-to-Gaussian, in closed form. Sampling is ancestral: ``z₂``, then
``z₁ = μ(z₂) + σ(z₂)·ε₁``, then the pixels. Holding ``ε₁`` (the bottom's own randomness) fixed while
``z₂`` is redrawn shows what the top level holds; holding ``z₂`` and redrawing ``ε₁`` shows the bottom's.

The one-level VAE it is compared with is the same family with ``top_dim = 0`` (preset ``one_level``):
same networks, data, steps and total latent size, so the ELBOs differ only by the hierarchy. The
ELBO is a **lower bound** on log p(x); the importance-weighted bound (IWAE, Burda et al. 2016)

    log p(x) ≥ log (1/k) Σ_i p(x, z⁽ⁱ⁾) / q(z⁽ⁱ⁾|x),   z⁽ⁱ⁾ ~ q(z|x)

tightens as ``k`` grows (k = 1 is the ELBO), and is what the likelihood table reports beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.data import BINARISATIONS
from models.core.family import Family, check_range, device_of

BINARISATION = "stochastic"  # the published scheme (models.core.data.BINARISATIONS); PixelCNN/NADE use it too
LOG_2PI = math.log(2 * math.pi)


@dataclass
class HVAEConfig:
    dataset: str = "mnist"
    top_dim: int = 8  # z₂; 0 gives the one-level VAE (z₁ under N(0, I))
    bottom_dim: int = 8  # z₁
    hidden: int = 256  # width of the MLPs (the feature extractor is hidden → hidden/2)
    skip: bool = True  # the decoder reads z₂ as well as z₁ (top-down); False is DLFS5's Markov chain x ← z₁ ← z₂
    lr: float = 1e-3  # Adam
    batch_size: int = 128
    steps: int = 4000  # about 8.5 epochs of binarised MNIST

    def validate(self):
        if self.dataset != "mnist":
            raise ValueError(f"Unknown dataset {self.dataset!r} for the hierarchical VAE: it trains on binarised 'mnist'.")
        check_range("top latent size", self.top_dim, 0, 256)
        check_range("bottom latent size", self.bottom_dim, 1, 256)
        check_range("hidden width", self.hidden, 2, 4096)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    "book": {"skip": False},  # DLFS5's Markovian hierarchy: the decoder sees z₁ only
    "cpu": {},  # top 8 + bottom 8, decoder reads both: minutes on 2 cores
    "one_level": {"top_dim": 0, "bottom_dim": 16},  # the baseline at the same latent budget (16)
    "tiny": {"hidden": 16, "top_dim": 2, "bottom_dim": 2, "batch_size": 8, "steps": 2},
}


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class HVAE(nn.Module):
    def __init__(self, c: HVAEConfig):
        super().__init__()
        self.top_dim, self.bottom_dim, self.skip = c.top_dim, c.bottom_dim, c.skip
        h = c.hidden
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h // 2), nn.ReLU())
        if c.top_dim:
            self.q_top = nn.Linear(h // 2, 2 * c.top_dim)  # q(z₂|x)
            self.q_bottom = mlp(h // 2 + c.top_dim, h // 2, 2 * c.bottom_dim)  # q(z₁|x, z₂)
            self.p_bottom = mlp(c.top_dim, h // 2, 2 * c.bottom_dim)  # p(z₁|z₂)
        else:
            self.q_bottom = nn.Linear(h // 2, 2 * c.bottom_dim)  # q(z|x)
        reads = c.bottom_dim + (c.top_dim if c.skip else 0)
        self.decoder = nn.Sequential(nn.Linear(reads, h // 2), nn.ReLU(), nn.Linear(h // 2, h), nn.ReLU(),
                                     nn.Linear(h, 784), nn.Unflatten(1, (1, 28, 28)))  # logits

    def decode_logits(self, z1, z2=None):
        return self.decoder(torch.cat([z1, z2], 1) if (self.skip and self.top_dim) else z1)

    def prior_bottom(self, z2):
        """``μ, logvar`` of p(z₁|z₂) (N(0, I) for the one-level model)."""
        if not self.top_dim:
            zeros = z2.new_zeros(len(z2), self.bottom_dim)
            return zeros, zeros
        return self.p_bottom(z2).chunk(2, 1)


def build(config: HVAEConfig) -> HVAE:
    return HVAE(config)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, σ_q²) ‖ N(mu_p, σ_p²)) summed over the last dimension."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1).sum(-1)


def gaussian_logpdf(z, mu, logvar) -> torch.Tensor:
    return (-0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp())).sum(-1)


def _draw(mu, logvar, generator):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=mu.device)


def posterior(model: HVAE, x, generator=None) -> dict:
    """One draw from q(z₂|x) q(z₁|x, z₂) with every Gaussian's parameters (for the KLs and IWAE)."""
    h = model.features(x)
    out = {}
    if model.top_dim:
        out["mu2"], out["logvar2"] = model.q_top(h).chunk(2, 1)
        out["z2"] = _draw(out["mu2"], out["logvar2"], generator)
        out["mu1"], out["logvar1"] = model.q_bottom(torch.cat([h, out["z2"]], 1)).chunk(2, 1)
    else:
        out["z2"] = h.new_zeros(len(h), 0)
        out["mu1"], out["logvar1"] = model.q_bottom(h).chunk(2, 1)
    out["z1"] = _draw(out["mu1"], out["logvar1"], generator)
    out["prior_mu1"], out["prior_logvar1"] = model.prior_bottom(out["z2"])
    return out


def elbo_terms(model: HVAE, x, generator=None) -> dict:
    """Per-image reconstruction (−log p(x|z)) and the KL of each level, in nats."""
    q = posterior(model, x, generator)
    logits = model.decode_logits(q["z1"], q["z2"])
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl1 = gaussian_kl(q["mu1"], q["logvar1"], q["prior_mu1"], q["prior_logvar1"])
    kl2 = (gaussian_kl(q["mu2"], q["logvar2"], torch.zeros_like(q["mu2"]), torch.zeros_like(q["mu2"]))
           if model.top_dim else torch.zeros_like(kl1))
    return {"reconstruction": recon, "kl_bottom": kl1, "kl_top": kl2}


def train_step(model: HVAE, batch, config: HVAEConfig) -> dict:
    x, _ = batch
    t = {k: v.mean() for k, v in elbo_terms(model, x).items()}
    loss = t["reconstruction"] + t["kl_bottom"] + t["kl_top"]
    return {"loss": loss, **t}


@torch.no_grad()
def iwae_bound(model: HVAE, x, k: int, generator=None) -> torch.Tensor:
    """The importance-weighted lower bound on log p(x) with ``k`` samples, per image (nats)."""
    check_range("importance samples k", k, 1, 10_000)
    model.eval()
    log_w = []
    for _ in range(k):
        q = posterior(model, x, generator)
        logits = model.decode_logits(q["z1"], q["z2"])
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        log_p = log_px + gaussian_logpdf(q["z1"], q["prior_mu1"], q["prior_logvar1"])
        log_q = gaussian_logpdf(q["z1"], q["mu1"], q["logvar1"])
        if model.top_dim:
            log_p = log_p + gaussian_logpdf(q["z2"], torch.zeros_like(q["z2"]), torch.zeros_like(q["z2"]))
            log_q = log_q + gaussian_logpdf(q["z2"], q["mu2"], q["logvar2"])
        log_w.append(log_p - log_q)
    return torch.logsumexp(torch.stack(log_w), 0) - math.log(k)


def _check_binary(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"The hierarchical VAE scores (N, 1, 28, 28) binary images; got {tuple(x.shape)}.")
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("The hierarchical VAE scores binarised images (pixels 0 or 1).")
    return x


@torch.no_grad()
def log_likelihood(model: HVAE, x, k: int = 1, batch_size: int = 1000) -> torch.Tensor:
    """Per-image lower bound on log p(x) in nats: the ELBO (``k = 1``) or the IWAE bound; seeded."""
    x = _check_binary(x)
    model.eval()
    device = device_of(model)
    g = torch.Generator(device=device).manual_seed(0)
    return torch.cat([iwae_bound(model, chunk.to(device), k, g).cpu() for chunk in x.split(batch_size)])


@torch.no_grad()
def evaluate(model: HVAE, x, y=None, batch_size: int = 1000) -> dict:
    """Held-out −ELBO and its terms (nats per image), and the tighter IWAE bound with k = 50."""
    model.eval()
    device = device_of(model)
    g = torch.Generator(device=device).manual_seed(0)
    sums: dict[str, float] = {}
    for chunk in x.split(batch_size):
        for key, v in elbo_terms(model, chunk.to(device), g).items():
            sums[key] = sums.get(key, 0.0) + v.sum().item()
    m = {k: v / len(x) for k, v in sums.items()}
    m["neg_elbo_nats"] = m["reconstruction"] + m["kl_bottom"] + m["kl_top"]
    m["neg_iwae50_nats"] = float(-log_likelihood(model, x[:2000], k=50).mean())
    m["iwae_test_images"] = min(len(x), 2000)
    return m


def _noise(model: HVAE, n: int, generator):
    return (torch.randn(n, model.top_dim, generator=generator), torch.randn(n, model.bottom_dim, generator=generator))


@torch.inference_mode()
def decode_levels(model: HVAE, z2, eps1) -> torch.Tensor:
    """Ancestral decoding of given top codes ``z₂`` (N, top) and bottom noise ``ε₁`` (N, bottom):
    ``z₁ = μ(z₂) + σ(z₂)·ε₁``, then pixel probabilities (N, 1, 28, 28)."""
    model.eval()
    device = device_of(model)
    z2 = torch.as_tensor(z2, dtype=torch.float32).to(device)
    eps1 = torch.as_tensor(eps1, dtype=torch.float32).to(device)
    if z2.shape[1:] != (model.top_dim,) or eps1.shape != (len(z2), model.bottom_dim):
        raise ValueError(f"Expected z₂ of shape (N, {model.top_dim}) and ε₁ of shape (N, {model.bottom_dim}).")
    mu, logvar = model.prior_bottom(z2)
    z1 = mu + torch.exp(0.5 * logvar) * eps1
    return torch.sigmoid(model.decode_logits(z1, z2)).cpu()


@torch.no_grad()
def sample(model: HVAE, n: int, generator: torch.Generator | None = None, temperature: float = 1.0):
    """``n`` images: ``z₂ ~ N(0, T²I)``, ``ε₁ ~ N(0, T²I)``, decoded ancestrally (pixel probabilities)."""
    check_range("number of samples", n, 1, 10_000)
    check_range("temperature", temperature, 0.0, 3.0)
    z2, eps1 = _noise(model, n, generator)
    yield decode_levels(model, temperature * z2, temperature * eps1)


def resample_level(model: HVAE, level: str, rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A rows × cols grid of images: in each row one level's draw is held and the other is redrawn
    along the columns. ``level`` names the one redrawn: ``"top"`` (ε₁ held, z₂ redrawn) or ``"bottom"``
    (z₂ held, ε₁ redrawn)."""
    if level not in ("top", "bottom"):
        raise ValueError(f"Resample 'top' or 'bottom'; got {level!r}.")
    check_range("rows", rows, 1, 16)
    check_range("columns", cols, 1, 16)
    if not model.top_dim:
        raise ValueError("This is a one-level VAE: it has no top latent to hold or redraw.")
    z2, eps1 = _noise(model, rows, generator)
    z2_new, eps1_new = _noise(model, rows * cols, generator)
    if level == "top":
        z2, eps1 = z2_new, eps1.repeat_interleave(cols, 0)
    else:
        z2, eps1 = z2.repeat_interleave(cols, 0), eps1_new
    return decode_levels(model, z2, eps1)


def data(config: HVAEConfig, split: str):
    from models.core import data as datasets

    x, y = datasets.binary_images(config.dataset, split, BINARISATION)
    return (x, y), {"title": "binarised MNIST", "dataset": config.dataset, "binarisation": BINARISATION,
                    "preprocessing": PREPROCESSING}


PREPROCESSING = BINARISATIONS[BINARISATION]  # the same words as PixelCNN's and NADE's rows


def describe(cfg: dict) -> str:
    if not cfg["top_dim"]:
        return f"one level, latent {cfg['bottom_dim']}"
    return f"two levels, top {cfg['top_dim']} + bottom {cfg['bottom_dim']}" + ("" if cfg.get("skip", True) else ", Markov")


def card_lines(m: dict) -> list[str]:
    kl = f"KL bottom {m['kl_bottom']:.1f}" + (f", top {m['kl_top']:.1f}" if m.get("kl_top") else "")
    return [f"Test set (binarised MNIST, stochastic binarisation): −ELBO **{m['neg_elbo_nats']:.2f} nats** "
            f"(a bound: reconstruction {m['reconstruction']:.1f}, {kl}); IWAE k=50 bound "
            f"**{m['neg_iwae50_nats']:.2f} nats** on {m['iwae_test_images']} images"] if "neg_elbo_nats" in m else []


FAMILY = Family(
    name="hvae",
    title="Hierarchical VAE",
    config_cls=HVAEConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    data=data,
    describe=describe,
    card_lines=card_lines,
    log_likelihood=log_likelihood,
    likelihood="bound",
)
