"""RealNVP on toy 2-D data, trained in the page in seconds (Foster 2nd ed. ch. 6 trains it on moons).

In two dimensions every piece of the flow can be drawn. Each coupling layer (the
:class:`models.density.realnvp.Coupling` the image flow stacks, with MLPs for ``s`` and ``t``) keeps one
coordinate and rescales and shifts the other by amounts computed from it; the masks alternate, so
layer by layer the data are pushed towards the prior's round Gaussian. Because the flow is
invertible, the same layers run backwards turn Gaussian samples into data, and the change of
variables gives the exact density of every point on the plane:

    log p(x) = log N(f(x); 0, I) + Σ_k log|det J_k|,   log|det J_k| = Σ (1 − m_k) ⊙ s_k(m_k ⊙ x_{k−1})

Not a registry family (nothing is shipped): a :class:`Lab` is one visitor's flow, optimiser, data and
``torch.Generator``, so a lab replays exactly from its seed and never touches the global RNG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.core import lazy
from models.core.family import check_range
from models.density.realnvp import Coupling, Flow, standard_normal_logpdf

DATASETS = ("moons", "rings", "drawn")
EXTENT = 3.0  # the plane drawn: [-EXTENT, EXTENT]²
MIN_POINTS = 6  # a drawn distribution needs at least this many points
DRAWN_STD = 0.12  # each drawn point becomes a small Gaussian blob
N_DATA = 4000  # training points per lab (Foster uses 30,000 moons; 4,000 train as well here)
MAX_HISTORY = 5000


def toy_points(dataset: str, n: int, seed: int, points=None) -> torch.Tensor:
    """``n`` points (n, 2) from scikit-learn's moons or rings, standardised the way Foster normalises
    them (zero mean, unit variance per axis), or blobs around the user's drawn ``points``."""
    datasets = lazy.module("sklearn.datasets")  # safe when two visitors start at once
    make_circles, make_moons = datasets.make_circles, datasets.make_moons

    if dataset == "moons":
        x, _ = make_moons(n, noise=0.05, random_state=seed)
    elif dataset == "rings":
        x, _ = make_circles(n, noise=0.04, factor=0.5, random_state=seed)
    elif dataset == "drawn":
        pts = check_points(points)
        rng = np.random.default_rng(seed)
        return torch.as_tensor(pts.numpy()[rng.integers(len(pts), size=n)] + DRAWN_STD * rng.standard_normal((n, 2)),
                               dtype=torch.float32)
    else:
        raise ValueError(f"Unknown 2-D dataset {dataset!r}; choose from {DATASETS}.")
    x = (x - x.mean(0)) / x.std(0)
    return torch.as_tensor(x, dtype=torch.float32)


def check_points(points) -> torch.Tensor:
    try:
        pts = torch.as_tensor(points if points is not None else [], dtype=torch.float32).reshape(-1, 2)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError("Drawn points must be a list of (x, y) pairs.") from None
    if len(pts) < MIN_POINTS:
        raise ValueError(f"Draw at least {MIN_POINTS} points (click on the plane); you have {len(pts)}.")
    if not torch.isfinite(pts).all() or pts.abs().max() > EXTENT:
        raise ValueError(f"Drawn points must lie inside [-{EXTENT:g}, {EXTENT:g}]².")
    return pts


@dataclass
class FlowConfig:
    dataset: str = "moons"
    couplings: int = 6  # coupling layers, masks alternating [1, 0], [0, 1]
    hidden: int = 64  # width of each s/t network
    depth: int = 2  # hidden layers per s/t network
    l2: float = 0.0  # L2 weight penalty on the s/t networks (Foster: 0.01)
    lr: float = 2e-3  # Adam
    batch_size: int = 256
    seed: int = 0

    def validate(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown 2-D dataset {self.dataset!r}; choose from {DATASETS}.")
        for name, v, lo, hi in (("coupling layers", self.couplings, 1, 16), ("neurons per layer", self.hidden, 2, 512),
                                ("hidden layers", self.depth, 1, 6), ("batch size", self.batch_size, 8, 4096)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{name} must be a whole number; got {v!r}.")
            check_range(name, v, lo, hi)
        for name, v, lo, hi in (("L2 penalty", self.l2, 0.0, 1.0), ("learning rate", self.lr, 1e-6, 0.1)):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a number; got {v!r}.")
            check_range(name, v, lo, hi)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Seed must be a whole number ≥ 0; got {self.seed!r}.")


# Foster's moons notebook (after the Keras RealNVP example): 256 units per dense layer, 4 layers per s and t
# network, L2 0.01, batch 256, Adam 1e-4. We recall it stacks 2 coupling layers with alternating masks
# but are not sure of that count; its s and t are two networks where ours share one (s, t) head.
PRESETS = {
    "book": {"couplings": 2, "hidden": 256, "depth": 4, "l2": 0.01, "lr": 1e-4},
    "fast": {},  # trains in seconds in the page
    "tiny": {"couplings": 2, "hidden": 8, "depth": 1, "batch_size": 16},
}


def mlp(hidden: int, depth: int, generator: torch.Generator) -> nn.Sequential:
    """2 -> hidden (×depth, ReLU) -> 4 (s and t), initialised from ``generator`` with the last layer at
    zero (so every coupling starts as the identity)."""
    mods, width = [], 2
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG: undo it
        for _ in range(depth):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(nn.Linear(width, 4))
    net = nn.Sequential(*mods)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=generator)
                m.bias.uniform_(-bound, bound, generator=generator)
        net[-1].weight.zero_()
        net[-1].bias.zero_()
    return net


class Flow2D(Flow):
    def __init__(self, c: FlowConfig, generator: torch.Generator):
        super().__init__()
        masks = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
        self.layers = nn.ModuleList(Coupling(masks[k % 2], mlp(c.hidden, c.depth, generator))
                                    for k in range(c.couplings))


@dataclass
class Lab:
    config: FlowConfig
    flow: Flow2D
    optimizer: torch.optim.Optimizer
    data: torch.Tensor  # (N_DATA, 2)
    generator: torch.Generator  # batches and prior samples
    points: list | None = None  # the user's clicks, for "drawn"
    step: int = 0
    history: list = field(default_factory=list)  # {"step", "nll"} every 10 steps


def make_lab(config: FlowConfig | None = None, points=None) -> Lab:
    config = config or FlowConfig()
    config.validate()
    g = torch.Generator().manual_seed(config.seed)
    flow = Flow2D(config, g)
    data = toy_points(config.dataset, N_DATA, config.seed, points)
    opt = torch.optim.Adam(flow.parameters(), lr=config.lr)
    return Lab(config, flow, opt, data, g, points=None if points is None else [list(map(float, p)) for p in points])


def log_prob(flow: Flow2D, x) -> torch.Tensor:
    z, logdet = flow(x)
    return standard_normal_logpdf(z) + logdet


def train(lab: Lab, steps: int, cancel=None) -> dict:
    """``steps`` Adam steps on mini-batches of −log p (nats per point), plus the L2 penalty."""
    check_range("steps", steps, 1, 100_000)
    lab.flow.train()
    nll = float("nan")
    for _ in range(steps):
        if cancel is not None and cancel.is_set():
            break
        idx = torch.randint(len(lab.data), (lab.config.batch_size,), generator=lab.generator)
        loss = -log_prob(lab.flow, lab.data[idx]).mean()
        total = loss
        if lab.config.l2:
            total = total + lab.config.l2 * sum(p.pow(2).sum() for n, p in lab.flow.named_parameters()
                                                if n.endswith("weight"))
        lab.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(lab.flow.parameters(), 10.0)  # one bad batch must not blow up a lab
        lab.optimizer.step()
        lab.step += 1
        nll = float(loss.detach())
        if not math.isfinite(nll):
            raise ValueError(f"The loss became {nll} at step {lab.step}: reset with a lower learning rate.")
        if lab.step % 10 == 0:
            lab.history.append({"step": lab.step, "nll": nll})
    if len(lab.history) > MAX_HISTORY:
        lab.history = lab.history[::2]
    return {"step": lab.step, "nll": nll}


@torch.no_grad()
def stages(lab: Lab, x) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``x`` pushed through each layer: the points after 0…K layers, and each point's cumulative
    log|det J| after each (zeros before the first)."""
    lab.flow.eval()
    xs, lds = [x], [torch.zeros(len(x))]
    for layer in lab.flow.layers:
        x, ld = layer(x)
        xs.append(x)
        lds.append(lds[-1] + ld)
    return xs, lds


@torch.no_grad()
def generative_stages(lab: Lab, z) -> list[torch.Tensor]:
    """Prior samples ``z`` run backwards: after 0…K inverse layers (the last is the model's sample)."""
    lab.flow.eval()
    zs = [z]
    for layer in reversed(lab.flow.layers):
        zs.append(layer.inverse(zs[-1]))
    return zs


def prior_samples(lab: Lab, n: int, seed: int) -> torch.Tensor:
    check_range("number of samples", n, 1, 20_000)
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def grid_lines(lines: int = 13, points_per_line: int = 60, extent: float = EXTENT) -> torch.Tensor:
    """A square grid of lines over the plane: (2·lines, points_per_line, 2)."""
    a = torch.linspace(-extent, extent, lines)
    t = torch.linspace(-extent, extent, points_per_line)
    horiz = torch.stack([t.expand(lines, -1), a[:, None].expand(-1, points_per_line)], -1)
    return torch.cat([horiz, horiz.flip(-1)])


@torch.no_grad()
def density(lab: Lab, resolution: int = 80) -> torch.Tensor:
    """log p(x) on a resolution² grid over the plane, rows from top (x₂ = +EXTENT) to bottom."""
    check_range("resolution", resolution, 4, 400)
    lab.flow.eval()
    a = torch.linspace(-EXTENT, EXTENT, resolution)
    x2, x1 = torch.meshgrid(a.flip(0), a, indexing="ij")
    return log_prob(lab.flow, torch.stack([x1.reshape(-1), x2.reshape(-1)], 1)).reshape(resolution, resolution)


@torch.no_grad()
def explain_point(lab: Lab, x1: float, x2: float) -> dict:
    """The exact log p of one point, split into the prior term log N(z) at its image ``z`` and each
    layer's log|det J| (their sum is log p), with the point after every layer."""
    for name, v in (("x₁", x1), ("x₂", x2)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number; got {v!r}.")
        check_range(name, v, -10 * EXTENT, 10 * EXTENT)
    xs, lds = stages(lab, torch.tensor([[float(x1), float(x2)]]))
    per_layer = [float(b - a) for a, b in zip(lds[:-1], lds[1:])]
    prior = float(standard_normal_logpdf(xs[-1]))
    return {"point": (float(x1), float(x2)), "z": tuple(xs[-1][0].tolist()), "prior": prior,
            "log_det": per_layer, "log_p": prior + sum(per_layer), "path": [tuple(p[0].tolist()) for p in xs]}


@torch.no_grad()
def held_out_nll(lab: Lab, n: int = 2000) -> float:
    """Mean −log p (nats per point) of fresh points from the same distribution (another seed)."""
    lab.flow.eval()
    fresh = toy_points(lab.config.dataset, n, lab.config.seed + 1, lab.points)
    return float(-log_prob(lab.flow, fresh).mean())
