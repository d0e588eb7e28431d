"""Variational autoencoder (Kingma & Welling 2014), as in Chollet ch. 12 and Foster ch. 3.

An encoder maps an image ``x`` to a Gaussian over a small latent code, ``q(z|x) = N(mu, sigma²)``;
a decoder maps a code back to pixel probabilities ``p(x|z)``. Both are trained together by
maximising the evidence lower bound (ELBO) on ``log p(x)``:

    -ELBO = E_q[-log p(x|z)]  +  KL(q(z|x) || N(0, I))
            reconstruction         pulls codes towards the prior
    KL    = -½ Σ (1 + logvar - mu² - exp(logvar))

Sampling ``z = mu + sigma * eps`` (the reparameterisation trick) keeps the draw differentiable.
Because the KL term packs codes around the origin, decoding *any* point near it gives a plausible
image: that is what makes the latent grid, interpolations and prior samples work. The codes the
decoder actually saw form the *aggregate posterior* q(z) = (1/N) Σₙ q(z|xₙ), which in 2-D is far
from N(0, I) (the prior has holes and over-weights some classes); sampling a Gaussian mixture fitted
to q(z) (:func:`aggregate_posterior`) draws where the codes are. ``beta``
weighs the KL term (β-VAE, Higgins et al. 2017): above 1 gives smoother, blurrier latents;
below 1 sharper reconstructions and a patchier latent space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_lr_decay, check_range, device_of, seeded
from models.density import gmm


@dataclass
class VAEConfig:
    dataset: str = "mnist"
    latent_dim: int = 2  # 2 draws a plane you can look at; 16-32 gives sharper samples
    channels: tuple = (32, 64)  # conv widths, each conv halves the image: 28 -> 14 -> 7
    hidden: int = 16  # dense layer before mu/logvar (the book's 16; use >= 2 * latent_dim when larger)
    decoder_hidden: int = 0  # 0: the book's single dense layer from z; > 0 adds a hidden layer, so a 2-D code can lift to ten digit shapes
    beta: float = 1.0  # weight of the KL term
    lr: float = 1e-3  # Adam
    batch_size: int = 128
    steps: int = 14_000  # about 30 epochs of 60k images at batch 128, as in the book
    lr_decay: str = "none"  # "none" or "cosine" (to 0 at the last step); the book keeps Adam's rate fixed

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        check_range("latent size", self.latent_dim, 1, 256)
        check_range("β (KL weight)", self.beta, 0.0, 100.0)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("decoder hidden size", self.decoder_hidden, 0, 4096)
        check_lr_decay(self.lr_decay)
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError("channels must be two positive conv widths, e.g. (32, 64).")


PRESETS = {
    "book": {},
    # The shipped 2-D checkpoints: wider dense layers both ways, so the plane's decoder draws every
    # class (the book's 16-unit encoder layer and single-layer lift leave 3s, 4s, 5s and 7s blurred into 8s and 9s)
    "wide": {"hidden": 256, "decoder_hidden": 256, "lr_decay": "cosine"},
    "cpu": {"steps": 3000},  # ~6 epochs, about 5 minutes on 2 cores
    "tiny": {"channels": (4, 8), "hidden": 8, "batch_size": 8, "steps": 2},
}


class VAE(nn.Module):
    def __init__(self, c: VAEConfig):
        super().__init__()
        c1, c2 = c.channels
        self.latent_dim = c.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),  # (B, c2, 7, 7)
            nn.Flatten(), nn.Linear(c2 * 7 * 7, c.hidden), nn.ReLU(),
        )
        self.to_mu = nn.Linear(c.hidden, c.latent_dim)
        self.to_logvar = nn.Linear(c.hidden, c.latent_dim)
        lift = (nn.Linear(c.latent_dim, c2 * 7 * 7) if not c.decoder_hidden else nn.Sequential(
            nn.Linear(c.latent_dim, c.decoder_hidden), nn.ReLU(), nn.Linear(c.decoder_hidden, c2 * 7 * 7)))
        self.decoder = nn.Sequential(  # mirror of the encoder; outputs logits
            lift, nn.ReLU(), nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 14
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 28
            nn.Conv2d(c1, 1, 3, padding=1),
        )
        # NHWC weights pick oneDNN's faster CPU convolutions (a 30×30 grid decodes ~2.5× faster)
        self.to(memory_format=torch.channels_last)

    def encode(self, x):
        """``x`` (B, 1, 28, 28) in [0, 1] -> ``mu, logvar`` (B, latent_dim)."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z):
        return self.decoder(z)

    def decode(self, z):
        """Latent codes (B, latent_dim) -> pixel probabilities (B, 1, 28, 28)."""
        return torch.sigmoid(self.decoder(z))


def build(config: VAEConfig) -> VAE:
    return VAE(config)


def elbo_terms(model: VAE, x, generator=None):
    """Per-image reconstruction BCE and KL, both summed over pixels / latent dims, in nats."""
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps  # reparameterisation trick
    logits = model.decode_logits(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return recon, kl


def train_step(model: VAE, batch, config: VAEConfig) -> dict:
    x, _ = batch
    recon, kl = elbo_terms(model, x)
    recon, kl = recon.mean(), kl.mean()
    return {"loss": recon + config.beta * kl, "reconstruction": recon, "kl": kl}


@torch.no_grad()
def evaluate(model: VAE, x, y, batch_size: int = 1000) -> dict:
    """Held-out negative ELBO (β = 1) and reconstruction BCE, mean nats per image.

    The encoder noise is seeded so the figure is the same on every run.
    """
    model.eval()
    device = device_of(model)
    g = torch.Generator(device=device).manual_seed(0)
    recon_sum = kl_sum = 0.0
    for i in range(0, len(x), batch_size):
        recon, kl = elbo_terms(model, x[i:i + batch_size].to(device), generator=g)
        recon_sum += recon.sum().item()
        kl_sum += kl.sum().item()
    n = len(x)
    return {"neg_elbo_nats": (recon_sum + kl_sum) / n, "reconstruction_bce": recon_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def sample(model: VAE, n: int, generator: torch.Generator | None = None, scale: float = 1.0, z=None,
           mixture=None):
    """Decode ``n`` codes drawn from the prior N(0, scale² I), from a fitted ``mixture`` (each draw's
    offset from its component mean scaled by ``scale``), or the given ``z``, in one step.

    ``scale`` below 1 (a "temperature") trades variety for cleaner, more typical images.
    """
    check_range("number of samples", n, 1, 10_000)
    check_range("prior scale", scale, 0.0, 10.0)
    model.eval()
    if z is None and mixture is not None:
        draws, comp = gmm.sample(mixture, n, generator)
        centre = mixture.means[comp]
        z = (centre + scale * (draws - centre)).float()
    elif z is None:
        z = scale * torch.randn(n, model.latent_dim, generator=generator, device=generator.device if generator else "cpu")
    yield decode(model, z)  # checks the shape of a given z


def aggregate_posterior(model: VAE, x, k: int = 10, generator: torch.Generator | None = None, max_iter: int = 100):
    """A k-component Gaussian mixture fitted by EM (:mod:`models.density.gmm`) to one draw
    z ~ q(z|xₙ) per image of ``x``: an estimate of the aggregate posterior q(z) to sample from."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    mu, sigma = encode(model, x)
    z = mu + sigma * torch.randn(mu.shape, generator=g)
    return gmm.fit(z.double(), k, generator=g, max_iter=max_iter)


Q_IMAGES, Q_COMPONENTS = 5000, 10  # training images encoded for q(z), and the mixture's components
Q_SETTING = (f"aggregate posterior q(z), a {Q_COMPONENTS}-component GMM fitted by EM to {Q_IMAGES} encoded "
             "training images")


def fit_q_z(model: VAE, dataset: str):
    """The aggregate posterior of a checkpoint as the page and its card use it: a fixed draw of
    ``Q_IMAGES`` training images, encoded and fitted with ``Q_COMPONENTS`` Gaussians."""
    from models.core import data

    x, _ = data.images(dataset, "train")
    pick = torch.randperm(len(x), generator=seeded(0))[:Q_IMAGES]
    return aggregate_posterior(model, x[pick], Q_COMPONENTS, seeded(0))


def opening(model: VAE, config: VAEConfig) -> tuple[str, dict]:
    """The page opens on samples from q(z); the card scores them beside the prior's."""
    return Q_SETTING, {"mixture": fit_q_z(model, config.dataset)}


@torch.no_grad()
def encode(model: VAE, x) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu`` and ``sigma`` of q(z|x) for images (B, 1, 28, 28) in [0, 1]."""
    model.eval()
    mu, logvar = model.encode(torch.as_tensor(x, dtype=torch.float32).to(device_of(model)))
    return mu.cpu(), torch.exp(0.5 * logvar).cpu()


@torch.inference_mode()
def decode(model: VAE, z) -> torch.Tensor:
    """Decode latent codes (B, latent_dim) to images (B, 1, 28, 28) in [0, 1]."""
    model.eval()
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"Latent codes must have shape (N, {model.latent_dim}); got {tuple(z.shape)}.")
    # Chunks of 128 keep each layer's activations in cache: a 30×30 grid decodes faster on CPU
    # than in one batch of 900, with identical output.
    z = z.to(device_of(model))
    return torch.cat([model.decode(chunk) for chunk in z.split(128)]).cpu()


def latent_grid(n: int, extent: float, latent_dim: int, dims=(0, 1)) -> torch.Tensor:
    """Codes for an n×n grid over [-extent, extent]² on two latent dims (others 0), row-major with
    z₂ decreasing down the rows so the picture reads like a plot."""
    check_range("grid size", n, 1, 64)
    check_range("grid range", extent, 0.01, 20.0)
    axis = torch.linspace(-extent, extent, n)
    z = torch.zeros(n * n, latent_dim)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    z[:, dims[0]] = z1.reshape(-1)
    if latent_dim > 1:
        z[:, dims[1]] = z2.reshape(-1)
    return z


def interpolate(z_a, z_b, steps: int, method: str = "linear") -> torch.Tensor:
    """Codes from ``z_a`` to ``z_b`` inclusive: straight line, or spherical (slerp, Shoemake 1985),
    which keeps the norm typical of the Gaussian prior instead of cutting through its low-norm
    centre."""
    check_range("interpolation steps", steps, 2, 64)
    z_a, z_b = torch.as_tensor(z_a, dtype=torch.float32), torch.as_tensor(z_b, dtype=torch.float32)
    if z_a.ndim != 1 or z_a.shape != z_b.shape:
        raise ValueError(f"Interpolate between two codes of the same size, each 1-D; got {tuple(z_a.shape)} "
                         f"and {tuple(z_b.shape)}.")
    t = torch.linspace(0, 1, steps)[:, None]
    if method == "linear":
        return (1 - t) * z_a + t * z_b
    if method != "spherical":
        raise ValueError(f"Interpolation must be 'linear' or 'spherical'; got {method!r}.")
    cos = torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm()).clamp_min(1e-8)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4:  # (nearly) parallel: slerp degenerates to lerp
        return (1 - t) * z_a + t * z_b
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / math.sin(omega.item())



@torch.no_grad()
def class_means(model: VAE, x, y, n_classes: int) -> torch.Tensor:
    """Mean code μ of each class's images: (n_classes, latent_dim). Their differences are the
    "attribute vectors" of Foster ch. 3 (smile vectors on faces; 1 → 7 on digits)."""
    mu, _ = encode(model, x)
    return torch.stack([mu[y == k].mean(0) for k in range(n_classes)])


def attribute_path(z, means: torch.Tensor, from_class: int, to_class: int, strength: float, steps: int = 8):
    """z + s·(mean_to − mean_from) for s from 0 to ``strength``: (steps, latent_dim)."""
    direction = means[to_class] - means[from_class]
    s = torch.linspace(0, float(strength), steps)[:, None]
    return z + s * direction


def describe(cfg: dict) -> str:
    return ", ".join([f"latent {cfg['latent_dim']}"] + ([f"β {cfg['beta']}"] if cfg.get("beta", 1.0) != 1.0 else []))


def card_lines(m: dict) -> list[str]:
    return [f"Test set: −ELBO **{m['neg_elbo_nats']:.1f} nats**, reconstruction BCE {m['reconstruction_bce']:.1f}, "
            f"KL {m['kl']:.1f}"] if "neg_elbo_nats" in m else []


FAMILY = Family(
    name="vae",
    title="Variational autoencoder",
    config_cls=VAEConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    describe=describe,
    card_lines=card_lines,
    presets=PRESETS,
    opening=opening,
)
