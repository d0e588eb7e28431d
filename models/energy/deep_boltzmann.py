"""Deep belief networks and deep Boltzmann machines (Goodfellow et al. §20.3–20.4), built from the RBMs
of :mod:`models.energy.rbm` on binarised MNIST.

**DBN** (Hinton, Osindero & Teh 2006). Train an RBM on the pixels; feed the data up through it
(h ~ p(h|v)) and train a second RBM on those hidden samples; and so on — *greedy layer-wise*
training, each new layer improving a variational bound on log p(v) (:func:`add_layer` grows a trained
DBN by one). The result is a hybrid: the top two layers form an undirected RBM, the layers below are
**directed** p(h_{l−1} | h_l) = σ(b + W h_l). Sampling runs Gibbs in the top RBM only, then one
pass down (:func:`dbn_sample`).

**DBM** (Salakhutdinov & Hinton 2009). The same stack, but every connection is undirected:

    E(v, h¹, …, hᴸ) = −Σ_l b_lᵀ x_l − Σ_l x_lᵀ W_l x_{l+1},      x_0 = v, x_l = hˡ.

A layer's units are independent given the layers **above and below**, so the odd layers can be
sampled together given the even ones and vice versa (:func:`gibbs_sweep`). The posterior p(h | v) is
no longer factorial: it is approximated by mean field, Q(h) = Π q_j, updated by the fixed point
μ_l ← σ(b_l + W_{l−1}ᵀ μ_{l−1} + W_l μ_{l+1}) until it stops changing (:func:`mean_field`). Learning
uses Q for the data term and persistent odd/even Gibbs chains for the model term.

Pre-training a DBM from RBMs needs one correction (Goodfellow et al. §20.4.5, after Salakhutdinov &
Hinton 2009): in the DBM a middle layer hears from both neighbours, in its RBM only from one. So the
bottom RBM is trained with its visible units counted twice on the way up (p(h|v) = σ(c + 2Wᵀv)), the
top one with its hiddens counted twice on the way down, and the weights of every RBM **in between are
halved** when the stack becomes a DBM (:func:`compose`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from models.core.family import Family, check_range, device_of
from models.energy import rbm as rbm_module
from models.energy.rbm import D, RBM, check_hidden, data, flat, images

MAX_LAYERS = 6


def check_layers(layers) -> list[int]:
    """Hidden layer sizes: a list of 1 to MAX_LAYERS whole numbers from 1 to 10,000."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)):
        raise ValueError(f"Layers must be a list of hidden layer sizes such as [500, 500]; got {layers!r}.")
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"A deep Boltzmann model needs 1 to {MAX_LAYERS} hidden layers; got {len(layers)}.")
    for i, n in enumerate(layers):
        check_hidden(n, f"hidden layer {i + 1} size")
    return list(layers)


@dataclass
class DBNConfig:
    dataset: str = "mnist"
    binarisation: str = "stochastic"
    layers: list = field(default_factory=lambda: [500, 500, 2000])  # Hinton et al. 2006: 500-500-2000
    method: str = "cd"  # each layer's RBM: "cd" or "pcd"
    k: int = 1
    chains: int = 100
    lr: float = 0.05  # each layer: SGD with momentum, decayed linearly to lr_end over its share of steps
    lr_end: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 2e-4
    batch_size: int = 100
    steps: int = 90_000  # split evenly between the layers, trained bottom first

    def validate(self):
        _validate_common(self)
        if self.steps < len(self.layers):
            raise ValueError(f"steps must be at least the number of layers ({len(self.layers)}); got {self.steps}.")


def _validate_common(config) -> None:
    rbm_module.check_settings(config)
    check_layers(config.layers)


DBN_PRESETS = {
    "book": {},  # Hinton, Osindero & Teh 2006's 500-500-2000 stack (without their up-down fine-tuning)
    "cpu": {"layers": [500, 500], "method": "pcd", "lr": 0.01, "steps": 8000},  # what ships: two PCD-1 layers of 4,000 steps
    "tiny": {"layers": [8, 6], "chains": 8, "batch_size": 8, "steps": 2},
}


class Stack(nn.Module):
    """RBMs stacked bottom to top (``rbms[l]`` joins layer l to layer l+1; layer 0 is the pixels), and
    the count of training steps taken."""

    def __init__(self, sizes: list[int], chains: int, scales=None):
        super().__init__()
        scales = scales or [(1.0, 1.0)] * (len(sizes) - 1)
        self.rbms = nn.ModuleList(RBM(a, b, chains, up, down) for (a, b), (up, down)
                                  in zip(zip(sizes[:-1], sizes[1:]), scales))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @property
    def sizes(self) -> list[int]:
        return [self.rbms[0].visible] + [r.hidden for r in self.rbms]

    def up(self, v, layers: int, generator=None) -> torch.Tensor:
        """Data propagated up through the first ``layers`` RBMs, by sampling h ~ p(h|v) at each."""
        for r in self.rbms[:layers]:
            v = torch.bernoulli(r.p_h(v), generator=generator)
        return v


def greedy_step(stack: Stack, layer: int, local: int, per_layer: int, v0, opt, config, generator=None) -> dict:
    """One update of RBM ``layer`` on the data sent up through the layers below (held fixed)."""
    with torch.no_grad():
        x = stack.up(v0, layer, generator)
    lr = rbm_module.decayed(config.lr, config.lr_end, local / per_layer)
    metrics = rbm_module.update(stack.rbms[layer], x, opt, lr, config, first=local == 0, generator=generator)
    return {**metrics, "layer": torch.tensor(float(layer + 1))}


# --- DBN ----------------------------------------------------------------------------------------------

class DBN(Stack):
    """A deep belief network: a stack of RBMs trained greedily, the top one undirected."""


def build_dbn(config: DBNConfig) -> DBN:
    return DBN([D] + list(config.layers), config.chains if config.method == "pcd" else 0)


def per_layer(config) -> int:
    return max(1, config.steps // len(config.layers))


def dbn_train_step(model: DBN, batch, config: DBNConfig, optimizers: dict) -> dict:
    u, per = int(model.updates), per_layer(config)
    layer = min(u // per, len(model.rbms) - 1)
    metrics = greedy_step(model, layer, u - layer * per, per, flat(batch[0]), optimizers["sgd"], config)
    model.updates += 1
    return metrics


def add_layer(dbn: DBN, hidden: int, chains: int = 100) -> DBN:
    """A copy of ``dbn`` with one more (untrained) RBM of ``hidden`` units on top; train it with
    :func:`train_layer`. The layers below are kept as they are: that is greedy layer-wise training."""
    check_hidden(hidden, "new layer size")
    if len(dbn.rbms) >= MAX_LAYERS:
        raise ValueError(f"This DBN already has {len(dbn.rbms)} hidden layers, the most allowed ({MAX_LAYERS}).")
    grown = DBN(dbn.sizes + [hidden], chains).to(device_of(dbn))
    for old, new in zip(dbn.rbms, grown.rbms):
        new.load_state_dict({k: v for k, v in old.state_dict().items() if k != "chains"}, strict=False)
    return grown


def train_layer(dbn: DBN, x, steps: int, config, generator=None, every: int = 20):
    """Greedy training of the top RBM of ``dbn`` on images ``x`` for ``steps`` updates (the layers below
    fixed), yielding ``(step, metrics)`` every ``every`` steps: the page's "add a layer"."""
    check_range("training steps", steps, 1, 100_000)
    check_range("steps between reports", every, 1, steps)
    x = flat(x).to(device_of(dbn))
    top = len(dbn.rbms) - 1
    opt = torch.optim.SGD(dbn.rbms[top].parameters(), lr=config.lr, momentum=config.momentum)
    for s in range(steps):
        idx = torch.randint(len(x), (min(config.batch_size, len(x)),), generator=generator)
        m = greedy_step(dbn, top, s, steps, x[idx], opt, config, generator)
        if (s + 1) % every == 0 or s + 1 == steps:
            yield s + 1, {k: float(v) for k, v in m.items()}


@torch.no_grad()
def dbn_sample(model: DBN, n: int, generator: torch.Generator | None = None, sweeps: int = 1000,
               every: int = 100):
    """``n`` images: Gibbs in the top RBM from noise for ``sweeps`` sweeps, then one directed pass down
    (sampling each layer, the pixels' probabilities p(v|h¹) shown). Yields (n, 1, 28, 28) every
    ``every`` sweeps."""
    check_range("number of samples", n, 1, 10_000)
    model.eval()
    top = model.rbms[-1]
    for s in rbm_module.chain(top, rbm_module.start_noise(top, n, generator), sweeps, generator, every):
        pixels = s.p_v if len(model.rbms) == 1 else down_pass(model, s.v.to(device_of(model)), generator)
        yield images(pixels.cpu())


def down_pass(model: Stack, h, generator=None) -> torch.Tensor:
    """From the top RBM's visible layer (B, size) down the directed layers to p(v | h¹) (B, 784)."""
    for r in list(model.rbms[:-1])[::-1][:-1]:
        h = torch.bernoulli(r.p_v(h), generator=generator)
    return model.rbms[0].p_v(h)


# --- DBM ----------------------------------------------------------------------------------------------

@dataclass
class DBMConfig:
    dataset: str = "mnist"
    binarisation: str = "stochastic"
    layers: list = field(default_factory=lambda: [500, 1000])  # Salakhutdinov & Hinton 2009's MNIST DBM
    method: str = "cd"  # pre-training of each RBM: "cd" or "pcd"
    k: int = 1  # Gibbs steps per update (pre-training, and the joint training's persistent chains)
    chains: int = 100  # persistent chains (fantasy particles) of the joint training
    lr: float = 0.05  # pre-training: SGD with momentum, decayed linearly per layer
    lr_end: float = 0.0
    joint_lr: float = 0.005  # joint training, decayed linearly to 0
    momentum: float = 0.9
    weight_decay: float = 2e-4
    mean_field: int = 10  # mean-field iterations for Q(h | v) in the joint training
    pretrain_steps: int = 30_000  # per layer
    batch_size: int = 100
    steps: int = 360_000  # pre-training and joint training together

    def validate(self):
        _validate_common(self)
        check_range("joint learning rate", self.joint_lr, 1e-7, 10.0)
        check_range("mean-field iterations", self.mean_field, 1, 1000)
        check_range("pre-training steps per layer", self.pretrain_steps, 1, 10_000_000)
        pre = self.pretrain_steps * len(self.layers)
        if self.steps < pre:
            raise ValueError(f"steps ({self.steps}) must cover the pre-training: {len(self.layers)} layers × "
                             f"{self.pretrain_steps} = {pre}.")


DBM_PRESETS = {
    "book": {},  # Salakhutdinov & Hinton 2009: 500-1000 hidden units, mean field + persistent chains
    "cpu": {"layers": [500, 500], "method": "pcd", "lr": 0.01, "pretrain_steps": 1500, "joint_lr": 0.002,
            "steps": 4500},  # what ships: 2 × 1,500 pre-training + 1,500 joint steps
    "tiny": {"layers": [8, 6], "chains": 8, "batch_size": 8, "pretrain_steps": 1, "steps": 3, "mean_field": 3},
}


def pretrain_scales(layers: int) -> list[tuple[float, float]]:
    """(up, down) input scales of each RBM in a DBM's pre-training: the bottom one counts the pixels
    twice on the way up, the top one its hiddens twice on the way down (one layer: a plain RBM)."""
    scales = [[1.0, 1.0] for _ in range(layers)]
    if layers > 1:
        scales[0][0] = 2.0
        scales[-1][1] = 2.0
    return [tuple(s) for s in scales]


class DBM(Stack):
    """A deep Boltzmann machine kept as its stack of RBMs: layer 0's bias is ``rbms[0].b``, hidden
    layer l's is ``rbms[l−1].c`` (the RBMs' other visible biases are used only in pre-training). The
    persistent chains of every layer are buffers ``fantasy_l``."""

    def __init__(self, sizes: list[int], chains: int):
        super().__init__(sizes, chains, pretrain_scales(len(sizes) - 1))
        for l, n in enumerate(sizes):
            self.register_buffer(f"fantasy_{l}", torch.zeros(chains, n))
        self.register_buffer("composed", torch.zeros((), dtype=torch.bool))

    def bias(self, l: int) -> torch.Tensor:
        return self.rbms[0].b if l == 0 else self.rbms[l - 1].c

    def fantasy(self) -> list[torch.Tensor]:
        return [getattr(self, f"fantasy_{l}") for l in range(len(self.sizes))]

    def conditional(self, x: list, l: int) -> torch.Tensor:
        """p(x_l = 1 | x_{l−1}, x_{l+1}): the input from the layer below and the layer above."""
        a = self.bias(l)
        if l > 0:
            a = a + x[l - 1] @ self.rbms[l - 1].W
        if l < len(self.rbms):
            a = a + x[l + 1] @ self.rbms[l].W.T
        return torch.sigmoid(a)

    def energy(self, x: list) -> torch.Tensor:
        e = -sum(xl @ self.bias(l) for l, xl in enumerate(x))
        return e - sum(((x[l] @ r.W) * x[l + 1]).sum(1) for l, r in enumerate(self.rbms))


def build_dbm(config: DBMConfig) -> DBM:
    return DBM([D] + list(config.layers), config.chains)


@torch.no_grad()
def compose(dbm: DBM, v0=None, generator=None) -> None:
    """Turn the pre-trained RBMs into the DBM: halve the weights of every RBM between the bottom and the
    top one (Goodfellow et al. §20.4.5), and start the persistent chains from the data ``v0``."""
    for r in list(dbm.rbms)[1:-1]:
        r.W.mul_(0.5)
    if v0 is not None:
        mu = mean_field(dbm, v0, 1)[-1]
        for l, (chain, m) in enumerate(zip(dbm.fantasy(), mu)):
            chain.copy_(torch.bernoulli(m[torch.arange(len(chain)) % len(m)], generator=generator))
    dbm.composed.fill_(True)


@torch.no_grad()
def mean_field(dbm: DBM, v, iterations: int) -> list[list[torch.Tensor]]:
    """Q(h | v) by mean field: [μ_0 = v, μ_1, …, μ_L] after each of ``iterations`` sweeps (index 0: the
    bottom-up start, in which each layer but the top counts its input twice, standing in for the input
    from above it does not have yet). A sweep updates each layer in turn from its neighbours."""
    check_range("mean-field iterations", iterations, 0, 1000)
    mu, L = [v], len(dbm.rbms)
    for l, r in enumerate(dbm.rbms):
        double = 2.0 if l < L - 1 else 1.0
        mu.append(torch.sigmoid(double * (mu[-1] @ r.W) + r.c))
    states = [[m.clone() for m in mu]]
    for _ in range(iterations):
        for l in range(1, L + 1):
            mu[l] = dbm.conditional(mu, l)
        states.append([m.clone() for m in mu])
    return states


def gibbs_sweep(dbm: DBM, x: list, generator=None, clamp_visible: bool = False) -> list[torch.Tensor]:
    """One odd/even sweep: every odd layer sampled given the even ones, then every even layer (the
    pixels too, unless clamped) given the odd ones. Returns the new states and p(v | h¹)."""
    x = list(x)
    for parity in (1, 0):
        for l in range(parity, len(x), 2):
            if l == 0 and clamp_visible:
                continue
            x[l] = torch.bernoulli(dbm.conditional(x, l), generator=generator)
    return x


def dbm_train_step(model: DBM, batch, config: DBMConfig, optimizers: dict) -> dict:
    v0, u, per = flat(batch[0]), int(model.updates), config.pretrain_steps
    opt = optimizers["sgd"]
    if u < per * len(config.layers):
        layer = u // per
        metrics = greedy_step(model, layer, u - layer * per, per, v0, opt, config)
    else:
        if not bool(model.composed):
            compose(model, v0)
        with torch.no_grad():
            mu = mean_field(model, v0, config.mean_field)[-1]  # the data term: Q(h | v)
            x = model.fantasy()
            for _ in range(config.k):  # the model term: persistent odd/even Gibbs chains
                x = gibbs_sweep(model, x)
            for chain, xl in zip(model.fantasy(), x):
                chain.copy_(xl)
        weights = sum((r.W ** 2).sum() for r in model.rbms)
        loss = model.energy(mu).mean() - model.energy(x).mean() + 0.5 * config.weight_decay * weights
        joint = u - per * len(config.layers)
        rbm_module.step(opt, loss, rbm_module.decayed(config.joint_lr, 0.0, joint / max(1, config.steps - per * len(config.layers))))
        with torch.no_grad():
            recon = model.rbms[0].p_v(mu[1])
            metrics = {"loss": loss.detach(), "recon_error": ((recon - v0) ** 2).sum(1).mean(),
                       "layer": torch.tensor(0.0)}
    model.updates += 1
    return metrics


def start_states(dbm: DBM, n: int, generator=None) -> list[torch.Tensor]:
    """Every layer's chains start from independent units at its biases' marginals σ(b_l)."""
    return [torch.bernoulli(torch.sigmoid(dbm.bias(l).detach()).expand(n, -1).contiguous(), generator=generator)
            for l in range(len(dbm.sizes))]


@torch.no_grad()
def dbm_sample(model: DBM, n: int, generator: torch.Generator | None = None, sweeps: int = 1000,
               every: int = 100):
    """``n`` images by odd/even Gibbs sampling of every layer from noise; yields p(v | h¹) as
    (n, 1, 28, 28) every ``every`` sweeps and after ``sweeps``."""
    check_range("number of samples", n, 1, 10_000)
    check_range("Gibbs sweeps", sweeps, 1, 100_000)
    check_range("sweeps between frames", every, 1, sweeps)
    model.eval()
    x = start_states(model, n, generator)
    for t in range(1, sweeps + 1):
        x = gibbs_sweep(model, x, generator)
        if t % every == 0 or t == sweeps:
            yield images(model.conditional(x, 0).cpu())


# --- sampling cost ----------------------------------------------------------------------------------

def sweep_cost(model: Stack, kind: str) -> int:
    """Multiply-adds per image of one Gibbs sweep: a DBN samples only its top RBM (both ways), a DBM
    every layer's weights both ways."""
    if kind == "dbn":
        r = model.rbms[-1]
        return 2 * r.visible * r.hidden
    return 2 * sum(r.visible * r.hidden for r in model.rbms)


def timed_samples(family: Family, model, n: int, sweeps: int, generator=None) -> tuple[torch.Tensor, float]:
    """Samples and the seconds they took (for the side-by-side cost)."""
    t0 = time.perf_counter()
    out = None
    for out in family.sample(model, n, generator=generator, sweeps=sweeps, every=sweeps):
        pass
    return out, time.perf_counter() - t0


def describe(cfg: dict) -> str:
    return "784-" + "-".join(str(n) for n in cfg["layers"]) + f", {cfg['method'].upper()}-{cfg['k']} layers"


DBN_FAMILY = Family(
    name="dbn",
    title="Deep belief network",
    config_cls=DBNConfig,
    build=build_dbn,
    train_step=dbn_train_step,
    sample=dbn_sample,
    presets=DBN_PRESETS,
    score_kwargs={"sweeps": 1000, "every": 1000},
    data=data,
    optimizers=rbm_module.sgd,
    describe=describe,
)

DBM_FAMILY = Family(
    name="dbm",
    title="Deep Boltzmann machine",
    config_cls=DBMConfig,
    build=build_dbm,
    train_step=dbm_train_step,
    sample=dbm_sample,
    presets=DBM_PRESETS,
    score_kwargs={"sweeps": 1000, "every": 1000},
    data=data,
    optimizers=rbm_module.sgd,
    describe=describe,
)
