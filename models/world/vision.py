"""V, the vision model: a convolutional VAE that squeezes each 64×64 frame into a 32-d code z.

World Models (Ha & Schmidhuber 2018) train V on frames from random rollouts, alone, before anything
else: it learns what the road, the grass and the car look like, not what is good to do. The
encoder is four 4×4 convolutions of stride 2 (64 → 31 → 14 → 6 → 2) and a dense layer to ``mu``
and ``logvar``; the decoder turns z into a 1×1 map and grows it with four transposed convolutions
(1 → 5 → 13 → 30 → 64). The loss is the VAE's negative ELBO (:func:`models.image.vae.elbo_terms`),

    −ELBO = Σ_pixels BCE(x, x̂) + KL(q(z|x) ‖ N(0, I)),

with Bernoulli-style cross-entropy on pixel intensities in [0, 1] (the paper uses squared error;
cross-entropy needs no weight between the two terms). The controller and the memory only ever see
``mu`` (or one draw of z), never pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import check_range, device_of
from models.image.vae import elbo_terms


@dataclass
class VisionConfig:
    latent_dim: int = 32  # the paper's z size
    channels: tuple = (32, 64, 128, 256)  # the paper's encoder widths; the decoder mirrors them
    lr: float = 1e-3  # Adam
    batch_size: int = 64
    epochs: int = 10

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def validate(self):
        check_range("latent size", self.latent_dim, 1, 256)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("epochs", self.epochs, 1, 10_000)
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError("channels must be four positive conv widths, e.g. (32, 64, 128, 256).")


PRESETS = {
    "book": {},
    "cpu": {"channels": (16, 32, 64, 128), "epochs": 3},  # a quarter of the paper's compute, ~5 MB
    "tiny": {"latent_dim": 4, "channels": (4, 4, 8, 8), "batch_size": 8, "epochs": 1},
}


class Vision(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        c1, c2, c3, c4 = c.channels
        self.latent_dim = c.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 4, stride=2), nn.ReLU(),  # (B, c1, 31, 31)
            nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),  # (B, c2, 14, 14)
            nn.Conv2d(c2, c3, 4, stride=2), nn.ReLU(),  # (B, c3, 6, 6)
            nn.Conv2d(c3, c4, 4, stride=2), nn.ReLU(),  # (B, c4, 2, 2)
            nn.Flatten(),
        )
        self.to_mu = nn.Linear(4 * c4, c.latent_dim)
        self.to_logvar = nn.Linear(4 * c4, c.latent_dim)
        self.decoder = nn.Sequential(  # outputs logits
            nn.Linear(c.latent_dim, 4 * c4), nn.Unflatten(1, (4 * c4, 1, 1)),
            nn.ConvTranspose2d(4 * c4, c3, 5, stride=2), nn.ReLU(),  # (B, c3, 5, 5)
            nn.ConvTranspose2d(c3, c2, 5, stride=2), nn.ReLU(),  # (B, c2, 13, 13)
            nn.ConvTranspose2d(c2, c1, 6, stride=2), nn.ReLU(),  # (B, c1, 30, 30)
            nn.ConvTranspose2d(c1, 3, 6, stride=2),  # (B, 3, 64, 64)
        )

    def encode(self, x):
        """Frames (B, 3, 64, 64) in [0, 1] -> ``mu, logvar`` (B, latent_dim)."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z):
        return self.decoder(z)


def build(config: VisionConfig) -> Vision:
    return Vision(config)


def loss(model: Vision, x, generator=None) -> dict:
    """Mean per-frame negative ELBO and its two terms, in nats."""
    recon, kl = elbo_terms(model, x, generator=generator)
    recon, kl = recon.mean(), kl.mean()
    return {"loss": recon + kl, "reconstruction": recon, "kl": kl}


@torch.no_grad()
def evaluate(model: Vision, x, batch_size: int = 256) -> dict:
    """Held-out −ELBO, reconstruction cross-entropy and KL (nats per frame), and the mean squared
    error of the reconstruction from ``mu`` (per pixel, intensities in [0, 1]); seeded, so the
    figure is the same on every run."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    total = {"neg_elbo_nats": 0.0, "reconstruction_bce": 0.0, "kl": 0.0, "mse": 0.0}
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        recon, kl = elbo_terms(model, xb, generator=g)
        total["neg_elbo_nats"] += (recon + kl).sum().item()
        total["reconstruction_bce"] += recon.sum().item()
        total["kl"] += kl.sum().item()
        total["mse"] += (decode(model, encode(model, xb)[0]) - xb).pow(2).mean((1, 2, 3)).sum().item()
    return {k: v / len(x) for k, v in total.items()}


@torch.no_grad()
def encode(model: Vision, x) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu`` and ``sigma`` of q(z|x) for frames (B, 3, 64, 64) in [0, 1]."""
    model.eval()
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, 64, 64):
        raise ValueError(f"Frames must have shape (N, 3, 64, 64); got {tuple(x.shape)}.")
    mu, logvar = model.encode(x.to(device_of(model)))
    return mu.cpu(), torch.exp(0.5 * logvar).cpu()


@torch.no_grad()
def decode(model: Vision, z) -> torch.Tensor:
    """Codes (B, latent_dim) -> frames (B, 3, 64, 64) in [0, 1]."""
    model.eval()
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"Latent codes must have shape (N, {model.latent_dim}); got {tuple(z.shape)}.")
    return torch.sigmoid(model.decode_logits(z.to(device_of(model)))).cpu()


def traverse(z, dim: int, extent: float = 3.0, steps: int = 9) -> torch.Tensor:
    """Copies of code ``z`` with dimension ``dim`` swept over [-extent, extent]: (steps, latent_dim)."""
    z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
    check_range("dimension", dim, 0, len(z) - 1)
    check_range("traversal range", extent, 0.1, 10.0)
    check_range("traversal steps", steps, 2, 32)
    out = z.repeat(steps, 1)
    out[:, dim] = torch.linspace(-extent, extent, steps)
    return out


def train(model: Vision, frames: torch.Tensor, config: VisionConfig, generator: torch.Generator,
          on_step=None, should_stop=lambda: False) -> list[float]:
    """Adam on shuffled minibatches of ``frames`` (N, 3, 64, 64) for ``config.epochs`` epochs.
    ``on_step(step, total, metrics)`` is called after each step; returns the loss curve."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(frames)
    per_epoch = max(1, n // config.batch_size)
    total, curve = per_epoch * config.epochs, []
    model.train()
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for b in range(per_epoch):
            if should_stop():
                return curve
            x = frames[order[b * config.batch_size:(b + 1) * config.batch_size]].float() / 255.0
            m = loss(model, x, generator=generator)
            opt.zero_grad()
            m["loss"].backward()
            opt.step()
            step += 1
            curve.append(m["loss"].item())
            if on_step:
                on_step(step, total, {k: v.item() for k, v in m.items()})
    model.eval()
    return curve
