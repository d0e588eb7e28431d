"""A deep energy-based model trained by contrastive divergence with Langevin sampling (Foster 2nd ed.
ch. 7, after Du & Mordatch 2019, "Implicit Generation and Generalization in Energy-Based Models").

A small convolutional network gives every image ``x`` an energy ``E(x)`` (a single number); the model
is the Boltzmann distribution ``p(x) = exp(−E(x)) / Z``. ``Z`` sums over every possible image and is
never computed: training and sampling only need ``∇ₓE`` and ``∇_θE``.

**Sampling: Langevin dynamics.** Start from noise and walk downhill in energy with a little noise,

    x ← clip(x + σ·ε),   ε ~ N(0, I)                        (noise scale σ)
    x ← clip(x − η · clip(∇ₓE(x), ±c))                      (step size η, gradient clip c)

with images clipped to [−1, 1]. With σ² = 2η this is the Langevin sampler of p(x) as η → 0; the book
(and Du & Mordatch) decouple them — η = 10, σ = 0.005, c = 0.03 — so the chain is mostly a fast
descent that ends in a low-energy image.

**Training: contrastive divergence.** The gradient of the log-likelihood is
``∇_θ log p(x) = −∇_θE(x) + E_{x'~p}[∇_θE(x')]``: push the energy of real images down and the energy
of the model's own samples up. With Langevin samples ``x'`` standing in for draws from p,

    L = mean E(x_real) − mean E(x') + α · mean(E(x_real)² + E(x')²)

where the α = 0.1 term keeps the energies near 0 (without it both can drift off together).

**Replay buffer.** Running 60 steps from noise every batch gives poor negatives; instead each batch
continues chains kept in a buffer of 8,192 earlier samples, with 5 % of the batch restarted from
uniform noise; the results go back in (oldest out). Over training each buffered chain accumulates
hundreds of steps, so the buffer holds the model's best samples; fresh-noise chains show what 60
steps alone reach. Here the buffer is part of the checkpoint (as 8-bit pixels, to keep files small).

Where the book's network outputs a "score" ``−E(x)`` and ascends it, this file writes the energy
itself and descends; the two are the same model. The book's code has two bugs this file does not
copy: its sampler returns inside the step loop (so it takes one step, not 60), and its training step
passes an argument its sampler does not take.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of

STARTS = ("noise", "buffer", "image")  # where a chain starts: uniform noise, the replay buffer, given images
BLOW_UP = 100.0  # |x| beyond this (images live in [−1, 1]) means the chain diverged


@dataclass
class EBMConfig:
    dataset: str = "mnist"
    channels: tuple = (16, 32, 64, 64)  # swish convolutions, stride 2: 32 -> 16 -> 8 -> 4 -> 2
    dense: int = 64  # the dense layer before the energy
    langevin_steps: int = 60  # Langevin steps per training batch
    step_size: float = 10.0  # η
    noise: float = 0.005  # σ of the noise added before each step
    grad_clip: float = 0.03  # each pixel's gradient clipped to ±grad_clip (0 = off)
    buffer_size: int = 8192  # replay buffer of earlier samples
    fresh: float = 0.05  # share of each batch restarted from uniform noise
    alpha: float = 0.1  # weight of the energy-magnitude regulariser
    real_noise: float = 0.005  # σ of the noise added to real images (the book's, so they are not exact points)
    lr: float = 1e-4  # Adam
    batch_size: int = 128
    steps: int = 28_000  # about 60 epochs of 60k at batch 128 (the book's 60 epochs)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def validate(self):
        from models.core.data import check_dataset

        check_dataset(self.dataset)
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError("channels must be four positive widths, e.g. (16, 32, 64, 64).")
        check_range("dense width", self.dense, 1, 4096)
        check_range("Langevin steps", self.langevin_steps, 1, 1000)
        check_range("step size", self.step_size, 0.0, 1000.0)
        check_range("noise scale", self.noise, 0.0, 1.0)
        check_range("gradient clip", self.grad_clip, 0.0, 10.0)
        check_range("buffer size", self.buffer_size, 1, 100_000)
        check_range("fresh share", self.fresh, 0.0, 1.0)
        check_range("α", self.alpha, 0.0, 100.0)
        check_range("real-image noise", self.real_noise, 0.0, 1.0)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 2, 4096)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    "book": {},
    # The book's network and sampler; batch 64, a 2,048-image buffer (each buffered chain is revisited about
    # every 34 batches, so buffer samples mature within the first thousand steps) and Adam 2e-4 to learn in
    # the hour one CPU thread has: 1.5 s per step on a busy 2-core machine.
    "cpu": {"batch_size": 64, "buffer_size": 2048, "lr": 2e-4, "steps": 3000},
    "tiny": {"channels": (4, 4, 8, 8), "dense": 8, "langevin_steps": 3, "buffer_size": 16, "batch_size": 8,
             "steps": 2},
}


class Swish(nn.Module):
    """x · sigmoid(x), the book's activation: smooth, so ∇ₓE is smooth too (ReLU's would be piecewise constant)."""

    def forward(self, x):
        return F.silu(x)


class EnergyNet(nn.Module):
    """(B, 1, 32, 32) in [−1, 1] -> (B,) energies; also holds the replay buffer (uint8 pixels)."""

    def __init__(self, c: EBMConfig):
        super().__init__()
        c1, c2, c3, c4 = c.channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 5, stride=2, padding=2), Swish(),  # 16×16
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), Swish(),  # 8×8
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), Swish(),  # 4×4
            nn.Conv2d(c3, c4, 3, stride=2, padding=1), Swish(),  # 2×2
            nn.Flatten(), nn.Linear(c4 * 4, c.dense), Swish(), nn.Linear(c.dense, 1))
        # chains kept between batches; uniform noise to start (drawn from the global generator, which the
        # training loop seeds), stored as 8-bit pixels so a checkpoint stays small
        self.register_buffer("replay", to_pixels(torch.rand(c.buffer_size, 1, 32, 32) * 2 - 1))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))  # pushes so far (FIFO position)

    def forward(self, x):
        return self.net(x).squeeze(1)


def build(config: EBMConfig) -> EnergyNet:
    return EnergyNet(config)


# --- images: the dataset's [0, 1] 28×28 <-> the model's [−1, 1] 32×32 ---------------------------------

def to_model(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) in [0, 1] -> (B, 1, 32, 32) in [−1, 1], padded with background (the book's padding)."""
    return F.pad(x * 2 - 1, (2, 2, 2, 2), value=-1.0)


def to_images(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 32, 32) in [−1, 1] -> (B, 1, 28, 28) in [0, 1], the centre crop the scorer reads."""
    return ((x[..., 2:30, 2:30] + 1) / 2).clamp(0, 1)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_pixels(p: torch.Tensor) -> torch.Tensor:
    return p.float() / 127.5 - 1


# --- Langevin dynamics -----------------------------------------------------------------------------

@dataclass
class Snapshot:
    """One state of a batch of chains: after ``step`` steps, the points ``x`` and their energies."""

    step: int
    x: torch.Tensor  # (B, ...) chain states
    energy: torch.Tensor  # (B,) E(x)


def check_chain(steps: int, step_size: float, noise: float, grad_clip: float) -> None:
    for name, value in (("Langevin steps", steps), ("step size", step_size), ("noise scale", noise),
                        ("gradient clip", grad_clip)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number; got {value!r}.")
    check_range("Langevin steps", steps, 0, 5000)
    check_range("step size", step_size, 0.0, 1e4)
    check_range("noise scale", noise, 0.0, 10.0)
    check_range("gradient clip", grad_clip, 0.0, 1e4)


def langevin(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, step_size: float,
             noise: float, grad_clip: float = 0.0, *, bounds: tuple | None = (-1.0, 1.0),
             generator: torch.Generator | None = None, every: int = 1,
             blow_up: float = BLOW_UP) -> Iterator[Snapshot]:
    """Langevin chains on ``energy`` from ``x``: yields the start and every ``every`` steps (and the
    last). ``bounds`` clips the states (images to [−1, 1]; None for 2-D points); ``grad_clip`` 0 is off.

    A chain whose states leave ``±blow_up`` or turn non-finite stops with a ValueError: the step size
    is too large for this energy's curvature (plain gradient descent diverges past η = 2 / curvature)."""
    check_chain(steps, step_size, noise, grad_clip)
    every = max(1, int(every))
    x = x.detach().clone()
    with torch.no_grad():
        yield Snapshot(0, x.clone(), energy(x).detach())
    for t in range(1, steps + 1):
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if bounds is not None:
                x = x.clamp(*bounds)
        x.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
        if grad_clip > 0:
            grad = grad.clamp(-grad_clip, grad_clip)
        x = x.detach() - step_size * grad
        if bounds is not None:
            x = x.clamp(*bounds)
        if not torch.isfinite(x).all() or x.abs().max() > blow_up:
            raise ValueError(f"The chain blew up at step {t} (states reached {float(x.abs().max()):.3g}): "
                             f"step size {step_size:g} is too large for this energy; lower it.")
        if t % every == 0 or t == steps:
            with torch.no_grad():
                e = energy(x).detach()
            if not torch.isfinite(e).all():
                raise ValueError(f"The energy became non-finite at step {t}: lower the step size.")
            yield Snapshot(t, x.clone(), e)


def uniform(n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """(n, 1, 32, 32) uniform noise in [−1, 1], where fresh chains start."""
    g_device = generator.device if generator else "cpu"
    return (torch.rand(n, 1, 32, 32, generator=generator, device=g_device) * 2 - 1).to(device)


def buffer_images(model: EnergyNet, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` chain states drawn from the replay buffer (without replacement while it has enough)."""
    size = len(model.replay)
    g_device = generator.device if generator else "cpu"
    if n <= size:
        idx = torch.randperm(size, generator=generator, device=g_device)[:n]
    else:
        idx = torch.randint(size, (n,), generator=generator, device=g_device)
    return from_pixels(model.replay[idx.to(model.replay.device)])


def starts(model: EnergyNet, n: int, start: str, generator=None, init: torch.Tensor | None = None) -> torch.Tensor:
    """Where ``n`` chains begin: ``"noise"``, ``"buffer"``, or ``"image"`` (``init``, (n or 1, 1, 28, 28) in [0, 1])."""
    device = device_of(model)
    if start == "noise":
        return uniform(n, generator, device)
    if start == "buffer":
        return buffer_images(model, n, generator).to(device)
    if start == "image":
        if init is None:
            raise ValueError("Starting from an image needs an image.")
        init = torch.as_tensor(init, dtype=torch.float32)
        if init.ndim != 4 or init.shape[1:] != (1, 28, 28):
            raise ValueError(f"Start images must be (N, 1, 28, 28); got {tuple(init.shape)}.")
        return to_model(init.expand(n, -1, -1, -1) if len(init) == 1 else init[:n]).to(device)
    raise ValueError(f"Unknown start {start!r}; choose from {list(STARTS)}.")


def chain(model: EnergyNet, n: int, generator: torch.Generator | None = None, start: str = "noise",
          steps: int = 60, step_size: float = 10.0, noise: float = 0.005, grad_clip: float = 0.03,
          clip: bool = True, every: int = 1, init: torch.Tensor | None = None) -> Iterator[Snapshot]:
    """Langevin chains of ``model`` in its own space ((n, 1, 32, 32) in [−1, 1]), every ``every`` steps."""
    check_range("number of samples", n, 1, 10_000)
    x = starts(model, n, start, generator, init)
    yield from langevin(model, x, steps, step_size, noise, grad_clip, bounds=(-1.0, 1.0) if clip else None,
                        generator=generator, every=every)


def sample(model: EnergyNet, n: int, generator: torch.Generator | None = None, start: str = "noise",
           steps: int = 60, step_size: float = 10.0, noise: float = 0.005, grad_clip: float = 0.03,
           every: int | None = None, init=None) -> Iterator[torch.Tensor]:
    """(n, 1, 28, 28) images in [0, 1] as the chains descend, every ``every`` steps (default: about 6 frames)."""
    every = every or max(1, steps // 6)
    for snap in chain(model, n, generator, start, steps, step_size, noise, grad_clip, every=every, init=init):
        yield to_images(snap.x)


def preview(model: EnergyNet, generator: torch.Generator) -> torch.Tensor:
    """What training shows: 8 chains from the buffer, then 8 from fresh noise (the book's 60 steps)."""
    buf = to_images(buffer_images(model, 8, generator))
    fresh = to_images(_last(chain(model, 8, generator, "noise", every=10_000)).x)
    return torch.cat([buf, fresh.cpu()])


def _last(snaps):
    snap = None
    for snap in snaps:
        pass
    return snap


# --- training --------------------------------------------------------------------------------------

def negatives(model: EnergyNet, n: int, config: EBMConfig) -> torch.Tensor:
    """The batch's negative samples: buffered chains (fresh noise with probability ``fresh``) run for
    ``langevin_steps`` more steps, then pushed back into the buffer in place of the oldest."""
    device = device_of(model)
    n_fresh = int(torch.binomial(torch.tensor(float(n)), torch.tensor(config.fresh)).item())
    x = torch.cat([uniform(n_fresh, device=device), buffer_images(model, n - n_fresh).to(device)])
    was = model.training
    model.eval()
    x = _last(langevin(model, x, config.langevin_steps, config.step_size, config.noise, config.grad_clip,
                       every=config.langevin_steps)).x
    model.train(was)
    size = len(model.replay)
    slots = (int(model.filled) + torch.arange(min(n, size), device=model.replay.device)) % size
    model.replay[slots] = to_pixels(x[:len(slots)]).to(model.replay.device)
    model.filled += len(slots)
    return x


def train_step(model: EnergyNet, batch, config: EBMConfig) -> dict:
    """Contrastive divergence plus α·(E_real² + E_fake²) on one batch of real images."""
    x, _ = batch
    real = to_model(x)
    real = (real + config.real_noise * torch.randn_like(real)).clamp(-1, 1)
    fake = negatives(model, len(x), config)
    e_real, e_fake = model(real), model(fake)
    cd = e_real.mean() - e_fake.mean()
    reg = config.alpha * (e_real.pow(2).mean() + e_fake.pow(2).mean())
    with torch.no_grad():  # the book's check against noise, on a fixed noise batch (no global random draws)
        e_noise = model(uniform(len(x), torch.Generator().manual_seed(0), device_of(model))).mean()
    return {"loss": cd + reg, "cd": cd.detach(), "reg": reg.detach(),
            "energy_real": e_real.mean().detach(), "energy_fake": e_fake.mean().detach(),
            "contrast_vs_noise": e_noise - e_real.mean().detach()}


@torch.no_grad()
def energies(model: EnergyNet, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """E of (N, 1, 28, 28) images in [0, 1]."""
    device = device_of(model)
    return torch.cat([model(to_model(x[i:i + batch]).to(device)).cpu() for i in range(0, len(x), batch)])


@torch.no_grad()
def evaluate(model: EnergyNet, x, y, n: int = 1000) -> dict:
    """The book's validation check: held-out real images should have much lower energy than uniform
    noise (the contrast E(noise) − E(real) > 0 and large)."""
    real = energies(model, x[:n]).mean()
    noise = model(uniform(n, torch.Generator().manual_seed(0), device_of(model))).mean().cpu()
    buffered = model(from_pixels(model.replay[:n])).mean().cpu()
    return {"energy_real_test": float(real), "energy_noise": float(noise), "energy_buffer": float(buffered),
            "contrast_vs_noise": float(noise - real)}


def card_lines(metrics: dict) -> list[str]:
    if "contrast_vs_noise" not in metrics:
        return []
    return [f"Energy of held-out real images **{metrics['energy_real_test']:.3g}**, of replay-buffer samples "
            f"{metrics['energy_buffer']:.3g}, of uniform noise {metrics['energy_noise']:.3g}: contrast vs noise "
            f"**{metrics['contrast_vs_noise']:.3g}** (lower energy = more probable)"]


def describe(cfg: dict) -> str:
    return f"{cfg['langevin_steps']} Langevin steps, step {cfg['step_size']:g}, buffer {cfg['buffer_size']:,}"


FAMILY = Family(
    name="ebm",
    title="Deep energy-based model (Langevin)",
    config_cls=EBMConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    score_kwargs={"start": "buffer", "steps": 60},  # the page opens with buffered chains run 60 more steps
    preview=preview,
    describe=describe,
    card_lines=card_lines,
)
