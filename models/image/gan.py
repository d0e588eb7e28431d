"""Generative adversarial networks (Goodfellow et al. 2014): DCGAN (Radford et al. 2016) as in
Chollet ch. 12 and Foster ch. 4, with WGAN-GP (Gulrajani et al. 2017) and a class-conditional variant.

Two networks play a game. The generator ``G`` maps noise ``z ~ N(0, I)`` to an image; the
discriminator ``D`` scores how real an image looks. ``D`` learns to tell real from generated,
``G`` learns to fool ``D``. With the "bce" loss (D outputs a logit, σ is the sigmoid):

    L_D = -log σ(D(x)) - log(1 - σ(D(G(z))))        (real → 1, fake → 0)
    L_G = -log σ(D(G(z)))                             (the non-saturating trick: fakes → "real")

Nothing ties G to the data except D's gradients, so training can fail in recognisable ways: D wins
(its loss → 0, G's gradients vanish), G finds one output that fools D and sends every z there (mode
collapse), or the two oscillate. The book's remedies: noisy or smoothed labels, dropout in D, lower
learning rate for D.

"wgan-gp" swaps the classifier for a critic that estimates the Wasserstein-1 distance,

    L_D = D(G(z)) - D(x) + λ (‖∇_x̂ D(x̂)‖ - 1)²,   x̂ on lines between real and fake
    L_G = -D(G(z))

with the gradient penalty keeping D 1-Lipschitz; its loss is a distance, so it falls as G improves.
The critic takes ``critic_steps`` steps per generator step (on the same real batch, fresh noise).

``conditional=True`` gives G a learned class embedding next to z and makes D a projection
discriminator (Miyato & Koyama 2018): ``D(x, y) = ψ(φ(x)) + embed(y)·φ(x)``, so one picks the class.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_lr_decay, check_range, device_of, seeded
from models.image import vae

CLASSES = 10
LOSSES = ("bce", "wgan-gp")


@dataclass
class GANConfig:
    dataset: str = "mnist"
    latent_dim: int = 128  # size of z
    g_channels: tuple = (128, 256)  # generator widths at 7 and 14 pixels (upsampled twice to 28)
    d_channels: tuple = (64, 128, 128)  # discriminator convs, kernel 4 stride 2: 28 -> 14 -> 7 -> 3
    batchnorm: bool = False  # batch norm in G (Radford et al.); the book's Keras GAN has none
    dropout: float = 0.2  # before D's last layer; more dropout weakens D
    loss: str = "bce"  # "bce" (non-saturating GAN) or "wgan-gp"
    critic_steps: int = 1  # D updates per G update (5 is usual for WGAN-GP)
    gp_weight: float = 10.0  # λ of the gradient penalty (wgan-gp only)
    label_smoothing: float = 0.0  # real targets become 1 - smoothing (one-sided, Salimans et al. 2016)
    label_noise: float = 0.05  # uniform noise of this size added to D's targets (the book's 0.05)
    conditional: bool = False  # learn p(x | class): pick the class when sampling
    minibatch_std: bool = False  # D sees the batch's spread as one more channel (Karras et al. 2018; not in the book)
    lr_d: float = 1e-4  # Adam, both networks (the book's 1e-4)
    lr_g: float = 1e-4
    beta1: float = 0.5  # Adam's β₁, lowered for GANs as in DCGAN
    batch_size: int = 64
    steps: int = 9400  # about 10 epochs of 60k at batch 64
    ema_decay: float = 0.0  # EMA of the generator's weights, sampled from (0 = off; checkpoints written before EMA)
    lr_decay: str = "none"  # "none" or "cosine": both learning rates fall to 0 at the last step

    def __post_init__(self):
        self.g_channels = tuple(int(c) for c in self.g_channels)
        self.d_channels = tuple(int(c) for c in self.d_channels)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        check_range("latent size", self.latent_dim, 1, 1024)
        if len(self.g_channels) != 2 or min(self.g_channels) < 1:
            raise ValueError("g_channels must be two positive widths, e.g. (128, 256).")
        if len(self.d_channels) != 3 or min(self.d_channels) < 1:
            raise ValueError("d_channels must be three positive widths, e.g. (64, 128, 128).")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        check_range("dropout", self.dropout, 0.0, 0.9)
        check_range("critic steps", self.critic_steps, 1, 20)
        check_lr_decay(self.lr_decay)
        check_range("gradient-penalty weight", self.gp_weight, 0.0, 1000.0)
        check_range("label smoothing", self.label_smoothing, 0.0, 0.5)
        check_range("label noise", self.label_noise, 0.0, 0.5)
        check_range("learning rate", self.lr_d, 1e-7, 1.0)
        check_range("learning rate", self.lr_g, 1e-7, 1.0)
        check_range("Adam β₁", self.beta1, 0.0, 0.999)
        check_range("batch size", self.batch_size, 2, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("EMA decay", self.ema_decay, 0.0, 0.9999)


PRESETS = {
    "book": {},
    # Narrower nets, batch norm in G and Adam 2e-4 (DCGAN's values): 0.16 s per step at batch 64 on one
    # idle CPU thread, so 3,000 steps take about 8 minutes (an hour on a machine busy with other work).
    # Digits are recognisable from about 1,000 steps.
    "cpu": {"latent_dim": 64, "g_channels": (64, 32), "d_channels": (32, 64, 64), "batchnorm": True,
            "lr_d": 2e-4, "lr_g": 2e-4, "steps": 3000,
            "ema_decay": 0.999},  # the book has no EMA; averaging G helps GANs (Yazıcı et al. 2019)
    "tiny": {"latent_dim": 8, "g_channels": (8, 4), "d_channels": (4, 8, 8), "batch_size": 8, "steps": 2},
}


class Generator(nn.Module):
    """z (B, latent) [+ class] -> dense 7·7·c1 -> transposed conv to 14 -> to 28 -> conv -> tanh."""

    def __init__(self, c: GANConfig):
        super().__init__()
        c1, c2 = c.g_channels
        self.label_emb = nn.Embedding(CLASSES, c.latent_dim) if c.conditional else None
        norm = nn.BatchNorm2d if c.batchnorm else (lambda ch: nn.Identity())
        self.net = nn.Sequential(
            nn.Linear(c.latent_dim * (2 if c.conditional else 1), c1 * 7 * 7), nn.LeakyReLU(0.2),
            nn.Unflatten(1, (c1, 7, 7)),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), norm(c2), nn.LeakyReLU(0.2),  # (B, c2, 14, 14)
            nn.ConvTranspose2d(c2, c2, 4, stride=2, padding=1), norm(c2), nn.LeakyReLU(0.2),  # (B, c2, 28, 28)
            nn.Conv2d(c2, 1, 5, padding=2), nn.Tanh(),  # pixels in [-1, 1]
        )

    def forward(self, z, y=None):
        if self.label_emb is not None:
            z = torch.cat([z, self.label_emb(y)], 1)
        return self.net(z)


class MinibatchStd(nn.Module):
    """Append the batch's mean feature standard deviation as a constant channel. A generator that
    gives every z the same image makes this 0 on fakes while real batches keep it high, so D can
    punish the collapse that a per-image D cannot see."""

    def forward(self, h):
        spread = h.std(0, correction=0).mean() if len(h) > 1 else h.new_zeros(())
        return torch.cat([h, spread.expand(len(h), 1, *h.shape[2:])], 1)


class Discriminator(nn.Module):
    """Image (B, 1, 28, 28) -> convs k4 s2 with LeakyReLU 0.2 -> dropout -> one logit (or critic score)."""

    def __init__(self, c: GANConfig):
        super().__init__()
        d1, d2, d3 = c.d_channels
        spread = [MinibatchStd()] if c.minibatch_std else []
        self.features = nn.Sequential(
            nn.Conv2d(1, d1, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, d1, 14, 14)
            nn.Conv2d(d1, d2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, d2, 7, 7)
            *spread,  # (B, d2 + 1, 7, 7)
            nn.Conv2d(d2 + len(spread), d3, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, d3, 3, 3)
            nn.Flatten(), nn.Dropout(c.dropout),
        )
        self.head = nn.Linear(d3 * 9, 1)
        self.label_emb = nn.Embedding(CLASSES, d3 * 9) if c.conditional else None  # projection

    def forward(self, x, y=None):
        h = self.features(x)
        out = self.head(h)[:, 0]
        if self.label_emb is not None:
            out = out + (self.label_emb(y) * h).sum(1)
        return out  # (B,)


class GAN(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.latent_dim = c.latent_dim
        self.conditional = c.conditional
        self.G = Generator(c)
        self.D = Discriminator(c)


def build(config: GANConfig) -> GAN:
    return GAN(config)


def optimizers(model: GAN, config: GANConfig) -> dict:
    betas = (config.beta1, 0.999)
    return {"d": torch.optim.Adam(model.D.parameters(), lr=config.lr_d, betas=betas),
            "g": torch.optim.Adam(model.G.parameters(), lr=config.lr_g, betas=betas)}


def grad_norm(module: nn.Module) -> torch.Tensor:
    """Total L2 norm of a network's gradients: near 0 means it has stopped learning."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return torch.cat(grads).norm() if grads else torch.zeros(())


def gradient_penalty(D: Discriminator, real, fake, y):
    """WGAN-GP: (‖∇ D(x̂)‖ - 1)² at random points x̂ between real and fake images."""
    eps = torch.rand(len(real), 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat, y).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def d_loss(model: GAN, real, fake, y, config: GANConfig) -> tuple[torch.Tensor, dict]:
    d_real, d_fake = model.D(real, y), model.D(fake, y)
    if config.loss == "wgan-gp":
        gp = gradient_penalty(model.D, real, fake, y)
        loss = d_fake.mean() - d_real.mean() + config.gp_weight * gp
        return loss, {"wasserstein": (d_real.mean() - d_fake.mean()).detach(), "gp": gp.detach()}
    b = len(real)
    real_t = torch.full((b,), 1.0 - config.label_smoothing, device=real.device)
    fake_t = torch.zeros(b, device=real.device)
    if config.label_noise:  # the book's trick: noisy targets keep D from becoming too sure
        real_t = real_t - config.label_noise * torch.rand(b, device=real.device)
        fake_t = fake_t + config.label_noise * torch.rand(b, device=real.device)
    loss = (F.binary_cross_entropy_with_logits(d_real, real_t)
            + F.binary_cross_entropy_with_logits(d_fake, fake_t))
    return loss, {"d_real": torch.sigmoid(d_real).mean().detach(), "d_fake": torch.sigmoid(d_fake).mean().detach()}


def g_loss(model: GAN, fake, y, config: GANConfig) -> torch.Tensor:
    score = model.D(fake, y)
    if config.loss == "wgan-gp":
        return -score.mean()
    return F.binary_cross_entropy_with_logits(score, torch.ones_like(score))  # non-saturating


def train_step(model: GAN, batch, config: GANConfig, opts: dict) -> dict:
    """``critic_steps`` D updates then one G update; returns detached losses, gradient norms and D's
    opinion of real and fake images. ``loss`` is L_D + L_G (a NaN in either stops training).

    Every setting is read from ``config`` at each step, so a run can switch loss, critic steps, label
    smoothing/noise or learning rates while it trains (see :func:`switch`)."""
    for name, lr in (("d", config.lr_d), ("g", config.lr_g)):  # settings changed mid-run apply at once
        for group in opts[name].param_groups:
            group["lr"] = lr
    x, y = batch
    real = x * 2 - 1  # [0, 1] -> [-1, 1], G's tanh range
    b = len(real)
    y = y if model.conditional else None
    z_shape = (b, model.latent_dim)
    for _ in range(config.critic_steps):
        with torch.no_grad():
            fake = model.G(torch.randn(z_shape, device=real.device), y)
        ld, extra = d_loss(model, real, fake, y, config)
        opts["d"].zero_grad(set_to_none=True)
        ld.backward()
        d_norm = grad_norm(model.D)
        opts["d"].step()
    fake = model.G(torch.randn(z_shape, device=real.device), y)
    lg = g_loss(model, fake, y, config)
    opts["g"].zero_grad(set_to_none=True)
    model.D.requires_grad_(False)  # G's step needs gradients through D, not for D
    lg.backward()
    model.D.requires_grad_(True)
    g_norm = grad_norm(model.G)
    opts["g"].step()
    ld, lg = ld.detach(), lg.detach()
    return {"loss": ld + lg, "d_loss": ld, "g_loss": lg, "d_grad_norm": d_norm, "g_grad_norm": g_norm, **extra}


LIVE = ("loss", "critic_steps", "gp_weight", "label_smoothing", "label_noise", "lr_d", "lr_g")


def check_switch(config: GANConfig, changes: dict) -> list[str]:
    """Validate live setting ``changes`` against ``config`` without touching it; returns what would
    change, e.g. ``["loss bce → wgan-gp"]``. Only the settings in ``LIVE`` may change mid-run."""
    from models.core.family import make_config

    bad = sorted(set(changes) - set(LIVE))
    if bad:
        raise ValueError(f"Only {LIVE} can change while training; not {bad}.")
    make_config(GANConfig, {**config.__dict__, **changes})  # validates the combination
    return [f"{k} {getattr(config, k)} → {v}" for k, v in changes.items() if getattr(config, k) != v]


def switch(config: GANConfig, changes: dict) -> list[str]:
    """Apply live setting ``changes`` to the config a running training reads at every step, all or
    nothing, after validating them; returns what changed. This is the ``apply`` a training run calls
    between two steps (``studio.jobs.Job.between_steps``), so a step never sees half of a change."""
    done = check_switch(config, changes)
    for k, v in changes.items():
        setattr(config, k, v)
    return done


def check_labels(model: GAN, labels, n: int) -> torch.Tensor | None:
    if labels is None:
        return None
    if not model.conditional:
        raise ValueError("Class labels need a class-conditional checkpoint.")
    y = torch.as_tensor(labels, dtype=torch.long).flatten()
    if len(y) != n or y.min() < 0 or y.max() >= CLASSES:
        raise ValueError(f"Give one class label from 0 to {CLASSES - 1} per sample ({n}); got {labels!r}.")
    return y


@torch.inference_mode()
def generate(model: GAN, z, labels=None) -> torch.Tensor:
    """Images (B, 1, 28, 28) in [0, 1] from latent codes (B, latent_dim) (and class labels)."""
    model.eval()
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"Latent codes must have shape (N, {model.latent_dim}); got {tuple(z.shape)}.")
    y = check_labels(model, labels, len(z))
    device = device_of(model)
    if model.conditional and y is None:
        raise ValueError("A class-conditional generator needs one class label per code.")
    chunks = [model.G(z[i:i + 256].to(device), None if y is None else y[i:i + 256].to(device))
              for i in range(0, len(z), 256)]
    return ((torch.cat(chunks).clamp(-1, 1) + 1) / 2).cpu()


def noise(n: int, latent_dim: int, generator: torch.Generator | None = None, temperature: float = 1.0):
    """z ~ N(0, temperature² I), (n, latent_dim), on the CPU."""
    g_device = generator.device if generator else "cpu"
    return temperature * torch.randn(n, latent_dim, generator=generator, device=g_device).cpu()


@torch.no_grad()
def sample(model: GAN, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, labels=None):
    """``n`` images in one pass of G. ``temperature`` scales z (below 1: the "truncation trick",
    more typical and less varied images). A conditional model draws random classes unless
    ``labels`` are given (after z, from the same generator)."""
    check_range("number of samples", n, 1, 10_000)
    check_range("temperature", temperature, 0.0, 3.0)
    y = check_labels(model, labels, n)
    z = noise(n, model.latent_dim, generator, temperature)
    if model.conditional and y is None:
        g_device = generator.device if generator else "cpu"
        y = torch.randint(0, CLASSES, (n,), generator=generator, device=g_device).cpu()
    yield generate(model, z, y)


def preview(model: GAN, generator: torch.Generator) -> torch.Tensor:
    """The fixed-noise grid shown while training: 16 images, classes 0-9 then 0-5 when conditional."""
    labels = torch.arange(16) % CLASSES if model.conditional else None
    return next(sample(model, 16, generator=generator, labels=labels))


MAX_GRID_SEEDS = 12  # columns of the class × seed grid


def class_grid(model: GAN, first_seed: int, seeds: int, temperature: float = 1.0) -> torch.Tensor:
    """Rows: the classes 0-9; columns: seeds ``first_seed`` … ``first_seed + seeds - 1``. One z per
    column (drawn from that seed), so a column shows one "style" across every class. Returns
    (10 · seeds, 1, 28, 28), row by row."""
    if not model.conditional:
        raise ValueError("The class × seed grid needs a class-conditional checkpoint (gan_mnist or gan_fashion).")
    check_range("Seeds per class", seeds, 1, MAX_GRID_SEEDS)
    check_range("temperature", temperature, 0.0, 3.0)
    z = torch.cat([noise(1, model.latent_dim, seeded(first_seed + j), temperature) for j in range(seeds)])
    labels = torch.arange(CLASSES).repeat_interleave(seeds)
    return generate(model, z.repeat(CLASSES, 1), labels)


def latent_path(latent_dim: int, seed_a: int, seed_b: int, steps: int, method: str = "spherical") -> torch.Tensor:
    """(steps, latent_dim) codes from z_a to z_b, each z ~ N(0, I) drawn from its seed: any model with
    this prior (this GAN, the VAE) walks between the same two end points for the same two seeds."""
    return vae.interpolate(noise(1, latent_dim, seeded(seed_a))[0], noise(1, latent_dim, seeded(seed_b))[0], steps,
                       method)


def interpolation(model: GAN, seed_a: int, seed_b: int, steps: int, method: str = "spherical",
                  label: int | None = None) -> tuple[torch.Tensor, int | None]:
    """Images (steps, 1, 28, 28) along :func:`latent_path`, and the class they keep: ``label``, or for a
    conditional model without one, a class drawn from ``seed_a`` (the same seed, the same walk)."""
    z = latent_path(model.latent_dim, seed_a, seed_b, steps, method)
    if model.conditional and label is None:
        label = int(torch.randint(0, CLASSES, (1,), generator=seeded(seed_a)))
    return generate(model, z, None if label is None else [label] * steps), label


def path_smoothness(images) -> dict:
    """How evenly a sequence of images changes (an interpolation): ``mean_step`` is the mean L2 pixel
    distance between neighbours, ``largest_over_mean`` the largest step over that mean (1 = every step
    changes as much; large = the picture jumps somewhere, as when a walk crosses between modes)."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if len(x) < 2:
        raise ValueError(f"Smoothness needs at least 2 images; got {len(x)}.")
    d = (x[1:] - x[:-1]).flatten(1).norm(dim=1)
    mean = d.mean()
    return {"mean_step": float(mean), "largest_over_mean": float(d.max() / mean.clamp_min(1e-9))}


@torch.no_grad()
def evaluate(model: GAN, x, y, n: int = 1000) -> dict:
    """D's mean belief (σ of its logit; the raw critic score for WGAN) on held-out real images and
    on as many fresh fakes: close to each other means D can no longer tell them apart."""
    model.eval()
    device = device_of(model)
    g = torch.Generator().manual_seed(0)
    real = x[:n].to(device) * 2 - 1
    yy = y[:n].to(device) if model.conditional else None
    fake = model.G(noise(len(real), model.latent_dim, g).to(device), yy)
    d_real, d_fake = model.D(real, yy), model.D(fake, yy)
    return {"d_on_real_test": float(torch.sigmoid(d_real).mean()), "d_on_fake": float(torch.sigmoid(d_fake).mean())}


def diversity(images, dataset: str) -> dict:
    """How varied a batch of samples is, next to real data, in the project classifier's feature space:
    ``diversity`` is the mean pairwise feature distance of the samples divided by that of as many
    real test images (about 1 is healthy; near 0 is mode collapse); ``classes_seen`` counts the
    classes the classifier finds among the samples."""
    from models.core import data, evaluate as ev

    images = torch.as_tensor(images, dtype=torch.float32)
    if len(images) < 8:
        raise ValueError("Diversity needs at least 8 samples.")
    clf = ev.load_classifier(dataset)
    real = data.images(dataset, "test")[0][:len(images)]
    f_fake, probs = ev.features_and_probs(clf, images)
    f_real, _ = ev.features_and_probs(clf, real)
    ratio = (torch.pdist(f_fake).mean() / torch.pdist(f_real).mean().clamp_min(1e-9)).item()
    classes = torch.bincount(probs.argmax(1), minlength=CLASSES)
    return {"diversity": ratio, "classes_seen": int((classes > 0).sum()),
            "collapse": ratio < 0.6 or int((classes > 0).sum()) <= 3}


HINTS = ("The book's remedies: lower D's learning rate, raise D's dropout, smooth or add noise to D's "
         "labels; or switch to the WGAN-GP loss, whose critic keeps giving G useful gradients.")


def diagnose(metrics: dict, diversity_score: dict | None = None, loss: str = "bce") -> list[str]:
    """Plain-words warnings from the latest training metrics and a diversity score (empty when all is well)."""
    notes = []
    if diversity_score and diversity_score["collapse"]:
        notes.append(f"**Mode collapse?** The fixed-noise samples look alike (diversity "
                     f"{diversity_score['diversity']:.2f} of real data's, {diversity_score['classes_seen']} "
                     f"classes seen). {HINTS}")
    if loss == "bce" and metrics.get("d_loss", 1.0) < 0.1:
        notes.append("**D is winning**: its loss is near 0, so G's gradients vanish. " + HINTS)
    if metrics.get("g_grad_norm", 1.0) < 1e-3:
        notes.append("**G has stopped learning**: its gradient norm is almost 0.")
    return notes


def upsample(x: torch.Tensor, how: str) -> torch.Tensor:
    """Double the size of (B, 1, H, W) with unit weights, to show how each way spreads a constant input:
    ``"transposed k3 s2"`` and ``"transposed k4 s2"`` (as a GAN generator), or ``"resize + conv k3"``
    (nearest-neighbour upsampling then a 3×3 convolution, Odena et al. 2016)."""
    if how == "resize + conv k3":
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), torch.ones(1, 1, 3, 3), padding=1)
    kernel = {"transposed k3 s2": 3, "transposed k4 s2": 4}.get(how)
    if kernel is None:
        raise ValueError(f"Upsampling must be one of {UPSAMPLINGS}; got {how!r}.")
    return F.conv_transpose2d(x, torch.ones(1, 1, kernel, kernel), stride=2, padding=1,
                              output_padding=1 if kernel == 3 else 0)


UPSAMPLINGS = ("transposed k3 s2", "transposed k4 s2", "resize + conv k3")


def checkerboard(how: str, layers: int = 1, size: int = 6) -> torch.Tensor:
    """What ``layers`` upsamplings with all-ones kernels make of a constant image (size×size): with
    kernel 3 and stride 2 the kernels overlap unevenly and every other pixel gets more (the
    checkerboard of Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"); kernel 4 with
    stride 2 overlaps evenly inside the image, resize + conv does too. Returns the (H, W) output
    divided by its median, so 1 means "as expected" and anything else is an artefact."""
    check_range("layers", layers, 1, 4)
    check_range("input size", size, 2, 32)
    x = torch.ones(1, 1, size, size)
    for _ in range(layers):
        x = upsample(x, how)
    x = x[0, 0]
    return x / x.median()


def checkerboards(layers: int = 1, size: int = 6) -> dict:
    """Every upsampling's :func:`checkerboard`, with the range inside the border: ``how -> (output,
    inside min, inside max)``. Border pixels see fewer patches whatever the method, so an even method
    is 1 everywhere inside and an uneven one is not."""
    m = 2 ** int(layers)
    out = {}
    for how in UPSAMPLINGS:
        x = checkerboard(how, layers, size)
        inner = x[m:-m, m:-m]
        out[how] = (x, float(inner.min()), float(inner.max()))
    return out



def card_lines(metrics: dict) -> list[str]:
    """The card's line about the held-out check in :func:`evaluate`."""
    if "d_on_real_test" not in metrics:
        return []
    return [f"D's belief that an image is real: {metrics['d_on_real_test']:.2f} on held-out real images, "
            f"{metrics['d_on_fake']:.2f} on fakes (both near 0.5 would mean it can no longer tell them apart)"]


def describe(cfg: dict) -> str:
    return ", ".join([f"{cfg.get('loss', 'bce')} loss"] + (["class-conditional"] if cfg.get("conditional") else []))


FAMILY = Family(
    name="gan",
    title="GAN (DCGAN / WGAN-GP)",
    config_cls=GANConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    describe=describe,
    card_lines=card_lines,
    presets=PRESETS,
    optimizers=optimizers,
    preview=preview,
    ema_parts=("G",),  # the averaged generator is sampled; D keeps its raw weights
)
