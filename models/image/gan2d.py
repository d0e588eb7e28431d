"""A GAN Lab on toy 2-D data (after Kahng et al.'s GAN Lab, 2018), in plain PyTorch.

With two dimensions every part of the game can be drawn: the real points and the fakes, the
discriminator's opinion of every place on the plane (a heatmap), how the generator bends its square
of noise into the data (a warped grid), and which way each fake is pushed (the gradient of the
generator's loss with respect to the fake point). A tiny MLP generator maps uniform noise
``z ∈ [-1, 1]²`` to a point; a tiny MLP discriminator maps a point to a score.

Three losses, chosen per lab (D's raw output is ``d``):

* ``log``: the original GAN, D by binary cross-entropy, G by the non-saturating ``-log σ(d(G(z)))``;
* ``least-squares`` (LSGAN, Mao et al. 2017): ``(d(x) - 1)² + d(G(z))²`` for D, ``(d(G(z)) - 1)²``
  for G, which keeps pushing fakes that D already calls real but which lie far from the data;
* ``wasserstein`` (WGAN-GP, Gulrajani et al. 2017): a critic with ``d(G(z)) - d(x)`` plus a gradient
  penalty, G by ``-d(G(z))``.

How close the fakes are is measured with histograms on a grid over the plane: KL(real ‖ fake) and
the Jensen-Shannon divergence between the two binned densities (a little smoothing keeps empty bins
finite). Everything is seeded: a lab replays exactly from its seed.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import check_range

DATASETS = ("ring", "grid", "moons", "drawn")
LOSSES = ("log", "least-squares", "wasserstein")
EXTENT = 2.0  # the plane shown and binned: [-EXTENT, EXTENT]²
MIN_POINTS = 8  # a drawn distribution needs at least this many points
DRAWN_STD = 0.06  # each drawn point is a small Gaussian blob
MAX_HISTORY = 10_000  # rows a lab keeps for its curves; beyond this its older half is thinned


def real_points(dataset: str, n: int, generator: torch.Generator, points=None) -> torch.Tensor:
    """``n`` samples (n, 2) from a toy distribution. ``points`` are the user's clicks for "drawn"."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown 2-D dataset {dataset!r}; choose from {DATASETS}.")
    g = generator
    if dataset == "ring":  # a thin circle of radius 1.2
        angle = torch.rand(n, generator=g) * 2 * math.pi
        r = 1.2 + 0.05 * torch.randn(n, generator=g)
        return torch.stack([r * angle.cos(), r * angle.sin()], 1)
    if dataset == "grid":  # 3×3 Gaussians: the classic test of mode collapse
        centres = torch.tensor([(a, b) for a in (-1.2, 0.0, 1.2) for b in (-1.2, 0.0, 1.2)])
        which = torch.randint(0, len(centres), (n,), generator=g)
        return centres[which] + 0.08 * torch.randn(n, 2, generator=g)
    if dataset == "moons":  # two interleaved half circles (as scikit-learn's make_moons), centred
        t = torch.rand(n, generator=g) * math.pi
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.2
        return pts + 0.06 * torch.randn(n, 2, generator=g)
    pts = check_points(points)
    which = torch.randint(0, len(pts), (n,), generator=g)
    return pts[which] + DRAWN_STD * torch.randn(n, 2, generator=g)


def check_points(points) -> torch.Tensor:
    """The user's drawn points as (N, 2), refused clearly when there are too few or they are off the plane."""
    pts = torch.as_tensor(points if points is not None else [], dtype=torch.float32).reshape(-1, 2)
    if len(pts) < MIN_POINTS:
        raise ValueError(f"Draw at least {MIN_POINTS} points (click on the plane); you have {len(pts)}.")
    if not torch.isfinite(pts).all() or pts.abs().max() > EXTENT:
        raise ValueError(f"Drawn points must lie inside [-{EXTENT:g}, {EXTENT:g}]².")
    return pts


def mlp(n_in: int, hidden: int, layers: int, n_out: int, generator: torch.Generator) -> nn.Sequential:
    """An MLP with LeakyReLU(0.2), initialised as PyTorch initialises ``nn.Linear`` (Kaiming-uniform
    weights, uniform biases) but drawing from ``generator``: building a lab never touches the global RNG
    that training elsewhere in the process draws from."""
    mods, width = [], n_in
    with torch.device("meta"):  # no weights (and no random draws) until initialised below
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        net = nn.Sequential(*mods, nn.Linear(width, n_out))
    net = net.to_empty(device="cpu")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return net


@dataclass
class LabConfig:
    dataset: str = "ring"
    loss: str = "log"
    hidden: int = 64  # neurons per hidden layer, both networks
    layers: int = 2  # hidden layers, both networks
    lr_d: float = 5e-3  # Adam
    lr_g: float = 5e-3
    batch_size: int = 256
    gp_weight: float = 1.0  # gradient penalty (wasserstein); lower lets the critic grow steep
    seed: int = 0

    def validate(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown 2-D dataset {self.dataset!r}; choose from {DATASETS}.")
        if self.loss not in LOSSES:
            raise ValueError(f"Loss must be one of {LOSSES}; got {self.loss!r}.")
        check_range("hidden neurons", self.hidden, 2, 512)
        check_range("hidden layers", self.layers, 1, 6)
        check_range("learning rate", self.lr_d, 1e-6, 1.0)
        check_range("learning rate", self.lr_g, 1e-6, 1.0)
        check_range("batch size", self.batch_size, 8, 4096)
        check_range("gradient-penalty weight", self.gp_weight, 0.0, 100.0)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Seed must be a whole number ≥ 0; got {self.seed!r}.")


@dataclass
class Lab:
    """One 2-D GAN and everything needed to step and draw it."""

    config: LabConfig
    G: nn.Module
    D: nn.Module
    opt_d: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    generator: torch.Generator  # all training randomness
    points: torch.Tensor | None = None  # the drawn distribution
    step: int = 0
    history: list = field(default_factory=list)  # one dict per step
    marks: list = field(default_factory=list)  # (step, what changed) for the curves


def make_lab(config: LabConfig | None = None, points=None, generator: torch.Generator | None = None,
             **overrides) -> Lab:
    """A fresh lab. ``generator`` (default: one seeded from the config's seed) initialises both networks
    and then draws all of the lab's training randomness, so a lab replays exactly from its seed and
    never uses or changes the global RNG."""
    config = config or LabConfig()
    if overrides:
        config = LabConfig(**{**config.__dict__, **overrides})
    config.validate()
    if config.dataset == "drawn":
        points = check_points(points)
    g = generator if generator is not None else torch.Generator().manual_seed(config.seed)
    G = mlp(2, config.hidden, config.layers, 2, g)
    D = mlp(2, config.hidden, config.layers, 1, g)
    return Lab(config, G, D,
               torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(0.5, 0.9)),
               torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=(0.5, 0.9)),
               g, points)


def set_loss(lab: Lab, loss: str) -> None:
    """Switch the loss mid-run (both networks keep their weights); marked on the curves."""
    if loss not in LOSSES:
        raise ValueError(f"Loss must be one of {LOSSES}; got {loss!r}.")
    if loss != lab.config.loss:
        lab.config.loss = loss
        lab.marks.append((lab.step, loss))


def set_learning_rates(lab: Lab, lr_d: float, lr_g: float) -> None:
    check_range("learning rate", lr_d, 1e-6, 1.0)
    check_range("learning rate", lr_g, 1e-6, 1.0)
    if (lr_d, lr_g) != (lab.config.lr_d, lab.config.lr_g):
        lab.config.lr_d, lab.config.lr_g = lr_d, lr_g
        for opt, lr in ((lab.opt_d, lr_d), (lab.opt_g, lr_g)):
            for group in opt.param_groups:
                group["lr"] = lr
        lab.marks.append((lab.step, f"lr D {lr_d:g}, G {lr_g:g}"))


def noise(n: int, generator: torch.Generator) -> torch.Tensor:
    """z uniform in [-1, 1]², GAN Lab's choice: a square the generator can visibly bend."""
    return torch.rand(n, 2, generator=generator) * 2 - 1


def d_loss(lab: Lab, real, fake, penalty: bool = True) -> torch.Tensor:
    """D's loss on a real and a fake batch; ``penalty=False`` leaves out WGAN-GP's gradient penalty
    (for reporting without autograd)."""
    d_real, d_fake = lab.D(real)[:, 0], lab.D(fake)[:, 0]
    loss = lab.config.loss
    if loss == "log":
        return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    if loss == "least-squares":
        return ((d_real - 1) ** 2).mean() + (d_fake ** 2).mean()
    if not penalty or not lab.config.gp_weight:
        return d_fake.mean() - d_real.mean()
    eps = torch.rand(len(real), 1, generator=lab.generator)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(lab.D(x_hat).sum(), x_hat, create_graph=True)
    gp = ((grad.norm(dim=1) - 1) ** 2).mean()
    return d_fake.mean() - d_real.mean() + lab.config.gp_weight * gp


def g_loss_per_point(lab: Lab, fake) -> torch.Tensor:
    """G's loss for each fake point (B,): its gradient says where each fake wants to move."""
    d = lab.D(fake)[:, 0]
    if lab.config.loss == "log":
        return F.binary_cross_entropy_with_logits(d, torch.ones_like(d), reduction="none")
    if lab.config.loss == "least-squares":
        return (d - 1) ** 2
    return -d


def train_step(lab: Lab, train_d: bool = True, train_g: bool = True) -> dict:
    """One step: update D on a fresh real batch and fresh fakes, then G (either may be skipped, as GAN
    Lab's "train D only" / "train G only"). Returns the losses and divergences, also kept in history."""
    if not (train_d or train_g):
        raise ValueError("Train D, G or both.")
    b = lab.config.batch_size
    real = real_points(lab.config.dataset, b, lab.generator, lab.points)
    if train_d:
        fake = lab.G(noise(b, lab.generator)).detach()
        ld = d_loss(lab, real, fake)
        lab.opt_d.zero_grad(set_to_none=True)
        ld.backward()
        lab.opt_d.step()
    if train_g:
        lab.D.requires_grad_(False)
        lg = g_loss_per_point(lab, lab.G(noise(b, lab.generator))).mean()
        lab.opt_g.zero_grad(set_to_none=True)
        lg.backward()
        lab.opt_g.step()
        lab.D.requires_grad_(True)
    lab.step += 1
    with torch.no_grad():  # both losses after the update, whichever network was trained (no penalty term)
        fake = lab.G(noise(b, lab.generator))
        row = {"step": lab.step, "d_loss": float(d_loss(lab, real, fake, penalty=False)),
               "g_loss": float(g_loss_per_point(lab, fake).mean()),
               "trained": "D+G" if train_d and train_g else ("D" if train_d else "G")}
    if not (math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])):
        raise ValueError(f"The losses became NaN/inf at step {lab.step}; lower the learning rates and reset.")
    if lab.step % 10 == 0 or lab.step <= 1:
        row.update(divergences(lab))
    lab.history.append(row)
    if len(lab.history) > MAX_HISTORY:  # a long-playing lab keeps bounded memory
        half = len(lab.history) // 2
        lab.history = thin(lab.history[:half]) + lab.history[half:]
    return row


def thin(rows: list[dict]) -> list[dict]:
    """Every other row, and every other one of the rows with divergences: half as many, evenly spread."""
    plain = [h for h in rows if "kl" not in h][::2]
    scored = [h for h in rows if "kl" in h][::2]
    return sorted(plain + scored, key=lambda h: h["step"])


def run(lab: Lab, steps: int, train_d: bool = True, train_g: bool = True,
        cancel: threading.Event | None = None) -> dict:
    """Up to ``steps`` training steps, fewer when ``cancel`` is set meanwhile (a paused Play); returns
    the last step's row. Leaves process settings alone: networks this small run fastest on one CPU
    thread, but ``torch.set_num_threads`` would change it for everyone in the process, so that choice
    belongs to whoever starts the process."""
    check_range("steps", steps, 1, 100_000)
    row = {}
    for _ in range(steps):
        if cancel is not None and cancel.is_set():
            break
        row = train_step(lab, train_d, train_g)
    return row


def histogram(points: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts of points on a bins×bins grid over the plane (points outside are dropped)."""
    idx = ((points + EXTENT) / (2 * EXTENT) * bins).floor().long()
    inside = ((idx >= 0) & (idx < bins)).all(1)
    idx = idx[inside]
    return torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double().reshape(bins, bins)


def kl_js(real: torch.Tensor, fake: torch.Tensor, bins: int = 24, smoothing: float = 1e-3) -> dict:
    """KL(real ‖ fake) and JS(real, fake) in nats between binned densities. Every bin gets a small
    pseudo-count so KL stays finite where the fakes leave a bin empty (it is then large, not ∞)."""
    check_range("histogram bins", bins, 2, 200)
    def density(points):  # bins² cells plus one for everything off the plane, with pseudo-counts
        h = histogram(points, bins).flatten() / len(points)
        h = torch.cat([h, (1 - h.sum()).clamp_min(0)[None]])
        return (h + smoothing / len(h)) / (1 + smoothing)

    p, q = density(real), density(fake)
    m = (p + q) / 2
    kl = (p * (p / q).log()).sum()
    js = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    return {"kl": float(kl), "js": float(js)}


@torch.no_grad()
def divergences(lab: Lab, n: int = 4000, seed: int = 12345) -> dict:
    """KL and JS between fresh real samples and fresh fakes, from a fixed seed (a stable curve)."""
    g = torch.Generator().manual_seed(seed)
    return kl_js(real_points(lab.config.dataset, n, g, lab.points), lab.G(noise(n, g)))


# --- the views ---

@torch.no_grad()
def samples(lab: Lab, n: int = 400, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and fake points (n, 2) each, from a fixed seed so frames are comparable."""
    g = torch.Generator().manual_seed(seed)
    return real_points(lab.config.dataset, n, g, lab.points), lab.G(noise(n, g))


@torch.no_grad()
def d_heatmap(lab: Lab, resolution: int = 64) -> torch.Tensor:
    """D's opinion over the plane, (resolution, resolution) with row 0 at the top (y = +EXTENT):
    P(real) for the log loss, the raw score otherwise."""
    check_range("heatmap resolution", resolution, 4, 400)
    axis = torch.linspace(-EXTENT, EXTENT, resolution)
    yy, xx = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    d = lab.D(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))[:, 0].reshape(resolution, resolution)
    return torch.sigmoid(d) if lab.config.loss == "log" else d


@torch.no_grad()
def noise_grid(lab: Lab, lines: int = 11, points_per_line: int = 40) -> torch.Tensor:
    """The generator's manifold: a lines×lines grid drawn on the noise square, mapped through G.
    Returns (2 · lines, points_per_line, 2): the horizontal then the vertical lines."""
    check_range("grid lines", lines, 2, 50)
    t = torch.linspace(-1, 1, points_per_line)
    levels = torch.linspace(-1, 1, lines)
    horiz = torch.stack([torch.stack([t, torch.full_like(t, v)], 1) for v in levels])
    vert = torch.stack([torch.stack([torch.full_like(t, v), t], 1) for v in levels])
    z = torch.cat([horiz, vert])  # (2·lines, P, 2)
    return lab.G(z.reshape(-1, 2)).reshape(z.shape)


def fake_gradients(lab: Lab, n: int = 60, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Fake points (n, 2) and the direction each is pushed, -∂L_G/∂x (n, 2): where D would call them
    more real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fake = lab.G(noise(n, g))
    fake.requires_grad_(True)
    lab.D.requires_grad_(False)
    g_loss_per_point(lab, fake).sum().backward()
    lab.D.requires_grad_(True)
    return fake.detach(), -fake.grad
