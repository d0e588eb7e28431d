"""The restricted Boltzmann machine (Smolensky 1986; Hinton 2002; Goodfellow et al. §20.2), a
Bernoulli RBM on binarised MNIST.

Binary visible units v (the 784 pixels) and binary hidden units h, with no connections inside a
layer, share the energy

    E(v, h) = −bᵀv − cᵀh − vᵀW h,        p(v, h) = exp(−E(v, h)) / Z.

Because neither layer talks to itself, each is **conditionally independent** given the other:

    p(h_j = 1 | v) = σ(c_j + vᵀW_{:,j}),        p(v_i = 1 | h) = σ(b_i + W_{i,:} h),

so block Gibbs sampling v → h → v′ costs two matrix products, and the hiddens sum out exactly to the
**free energy** F(v) = −bᵀv − Σ_j softplus(c_j + vᵀW_{:,j}), with p(v) = exp(−F(v)) / Z.

Learning climbs log p(v) = −F(v) − log Z. Its gradient is the data's ∂(−F)/∂θ minus the model's:
the positive phase is exact, the negative phase needs samples from the model. **CD-k** (contrastive
divergence) starts a Gibbs chain at the data and stops after k steps; **PCD** (persistent CD,
Tieleman 2008) keeps a set of chains running across updates, so they approach the model's
distribution as it changes slowly. Both are written as one loss, ``mean F(v_data) − mean F(v_model)``
with v_model held fixed, whose gradient is exactly that estimate.

Z itself is intractable: :mod:`models.energy.ais` estimates it, which gives a test log-likelihood
with an error bar (the card's figure).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of
from models.energy import ais

SIZE = 28
D = SIZE * SIZE
METHODS = {"cd": "contrastive divergence (chains start at the data)",
           "pcd": "persistent contrastive divergence (chains kept across updates)"}


@dataclass
class RBMConfig:
    dataset: str = "mnist"
    binarisation: str = "stochastic"  # models.core.data.BINARISATIONS
    hidden: int = 500  # Salakhutdinov & Murray's 500 hidden units
    method: str = "cd"  # "cd" or "pcd" (METHODS)
    k: int = 25  # Gibbs steps per update: their best RBM is CD-25
    chains: int = 100  # persistent chains (PCD only)
    lr: float = 0.05  # SGD with momentum, decayed linearly to lr_end
    lr_end: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 2e-4  # L2 on W (Hinton's practical guide)
    batch_size: int = 100
    steps: int = 300_000  # their CD-25 RBM: many epochs; far beyond a CPU run
    ais_runs: int = 100  # the card's AIS: runs and temperatures (Salakhutdinov & Murray: 100 and 14,500)
    ais_betas: int = 14_500

    def validate(self):
        check_settings(self)
        check_hidden(self.hidden)
        check_range("AIS runs", self.ais_runs, 2, 100_000)
        check_range("AIS temperatures", self.ais_betas, 3, 1_000_000)


def check_settings(config) -> None:
    """The settings every Boltzmann family shares (data, CD/PCD, optimiser), checked with the range in
    the message."""
    from models.core.data import BINARISATIONS, check_dataset

    check_dataset(config.dataset)
    if config.binarisation not in BINARISATIONS:
        raise ValueError(f"Unknown binarisation {config.binarisation!r}; choose from {sorted(BINARISATIONS)}.")
    if config.method not in METHODS:
        raise ValueError(f"Unknown method {config.method!r}; choose from {', '.join(METHODS)}.")
    check_range("Gibbs steps k", config.k, 1, 1000)
    check_range("persistent chains", config.chains, 1, 10_000)
    check_range("learning rate", config.lr, 1e-6, 10.0)
    check_range("final learning rate", config.lr_end, 0.0, config.lr)
    check_range("momentum", config.momentum, 0.0, 0.99)
    check_range("weight decay", config.weight_decay, 0.0, 1.0)
    check_range("batch size", config.batch_size, 1, 4096)
    check_range("steps", config.steps, 1, 10_000_000)


PRESETS = {
    "book": {},  # Salakhutdinov & Murray 2008's best: 500 hidden, CD-25
    "cpu": {"method": "pcd", "k": 1, "lr": 0.01, "steps": 30_000},  # what ships: PCD-1, 50 epochs, one thread
    "tiny": {"hidden": 8, "k": 1, "chains": 8, "batch_size": 8, "steps": 2, "ais_runs": 4, "ais_betas": 20},
}


def check_hidden(n, name: str = "hidden units") -> None:
    """A layer size must be a whole number of units from 1 to 10,000."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"{name} must be a whole number; got {n!r}.")
    check_range(name, n, 1, 10_000)


class RBM(nn.Module):
    """A Bernoulli–Bernoulli RBM: W (visible, hidden), visible biases b, hidden biases c, plus the
    persistent chains of PCD (a buffer, so a resumed run continues the same chains)."""

    def __init__(self, visible: int, hidden: int, chains: int = 0, up: float = 1.0, down: float = 1.0):
        super().__init__()
        # input scales for a DBM's pre-training (models.energy.deep_boltzmann): p(h|v) uses up·W, p(v|h)
        # down·W; a plain RBM has both 1
        self.up, self.down = up, down
        check_hidden(visible, "visible units")
        check_hidden(hidden)
        self.W = nn.Parameter(torch.randn(visible, hidden) * 0.01)  # Hinton's guide: N(0, 0.01²)
        self.b = nn.Parameter(torch.zeros(visible))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.register_buffer("chains", torch.zeros(chains, visible))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # training steps taken

    @property
    def visible(self) -> int:
        return self.W.shape[0]

    @property
    def hidden(self) -> int:
        return self.W.shape[1]

    def free_energy(self, v) -> torch.Tensor:
        """F(v) = −bᵀv − Σ_j softplus(c_j + vᵀW_j), (B,)."""
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(1)

    def p_h(self, v) -> torch.Tensor:
        return torch.sigmoid(self.up * (v @ self.W) + self.c)

    def p_v(self, h) -> torch.Tensor:
        return torch.sigmoid(self.down * (h @ self.W.T) + self.b)

    def gibbs(self, v, generator=None):
        """One block Gibbs step v → h → v′: returns (p(h|v), h, p(v′|h), v′)."""
        ph = self.p_h(v)
        h = torch.bernoulli(ph, generator=generator)
        pv = self.p_v(h)
        return ph, h, pv, torch.bernoulli(pv, generator=generator)

    def energy(self, v, h) -> torch.Tensor:
        return -(v @ self.b) - (h @ self.c) - ((v @ self.W) * h).sum(1)


def build(config: RBMConfig) -> RBM:
    return RBM(D, config.hidden, config.chains if config.method == "pcd" else 0)


# --- data, training ---------------------------------------------------------------------------------

def data(config, split: str):
    """Binarised images (shared by every Boltzmann family)."""
    from models.core import data as datasets

    x, y = datasets.binary_images(config.dataset, split, config.binarisation)
    title = datasets.DATASETS[config.dataset]["title"]
    return (x, y), {"title": f"{title}, binarised ({config.binarisation})", "dataset": config.dataset,
                    "preprocessing": datasets.BINARISATIONS[config.binarisation]}


def flat(x, visible: int = D) -> torch.Tensor:
    """Binary images (B, 1, 28, 28) or (B, D) -> (B, D) floats, refusing anything that is not 0 or 1."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("Expected a batch of at least one image.")
    x = x.reshape(len(x), -1)
    if x.shape[1] != visible:
        raise ValueError(f"Expected images of {visible} pixels; got {x.shape[1]}.")
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("A Bernoulli RBM models binary pixels: every value must be 0 or 1.")
    return x


def sgd(model: nn.Module, config) -> dict:
    """Plain SGD with momentum, as RBMs were trained; the rate decays linearly in :func:`step`."""
    return {"sgd": torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)}


def decayed(lr: float, lr_end: float, progress: float) -> float:
    """The learning rate ``progress`` (0 → 1) of the way through a linear decay from lr to lr_end."""
    return lr + (lr_end - lr) * min(1.0, max(0.0, progress))


def step(opt, loss, lr: float) -> None:
    """One optimiser step at learning rate ``lr``."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def negative_phase(rbm: RBM, v0, method: str, k: int, generator=None) -> torch.Tensor:
    """The model samples of the negative phase: k Gibbs steps from the data (CD) or from the
    persistent chains (PCD, which are then moved on)."""
    with torch.no_grad():
        v = v0 if method == "cd" else rbm.chains
        for _ in range(k):
            v = rbm.gibbs(v, generator)[3]
        if method == "pcd":
            rbm.chains.copy_(v)
    return v


def contrastive_loss(rbm: RBM, v0, vk, weight_decay: float) -> torch.Tensor:
    """mean F(v_data) − mean F(v_model) + L2: its gradient is the CD/PCD estimate of −∇ log p. With
    scaled inputs (a DBM's pre-training) F is not defined; E(v, p(h|v)) with p(h|v) held fixed has the
    same gradient, ⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model, and is used instead."""
    if rbm.up == rbm.down == 1:
        gap = rbm.free_energy(v0).mean() - rbm.free_energy(vk).mean()
    else:
        gap = rbm.energy(v0, rbm.p_h(v0).detach()).mean() - rbm.energy(vk, rbm.p_h(vk).detach()).mean()
    return gap + 0.5 * weight_decay * (rbm.W ** 2).sum()


def init_from_data(rbm: RBM, v0) -> None:
    """Before the first update: visible biases at the batch's pixel log-odds (Hinton's guide) and the
    persistent chains started from the data."""
    with torch.no_grad():
        rbm.b.copy_(ais.base_bias(v0).float())
        if len(rbm.chains):
            rbm.chains.copy_(v0[torch.arange(len(rbm.chains)) % len(v0)])


def train_metrics(rbm: RBM, v0, loss) -> dict:
    """What training shows: the data's free energy and the one-step mean-field reconstruction error."""
    with torch.no_grad():
        recon = rbm.p_v(rbm.p_h(v0))
        return {"loss": loss.detach(), "free_energy": rbm.free_energy(v0).mean(),
                "recon_error": ((recon - v0) ** 2).sum(1).mean()}


def update(rbm: RBM, v0, opt, lr: float, config, first: bool = False, generator=None) -> dict:
    """One CD-k / PCD-k update of ``rbm`` on the batch ``v0`` (B, visible) with ``config``'s method, k
    and weight decay (shared by the RBM, the DBN's layers and the DBM's pre-training)."""
    if first:
        init_from_data(rbm, v0)
    vk = negative_phase(rbm, v0, config.method, config.k, generator)
    loss = contrastive_loss(rbm, v0, vk, config.weight_decay)
    step(opt, loss, lr)
    return train_metrics(rbm, v0, loss)


def train_step(model: RBM, batch, config: RBMConfig, optimizers: dict) -> dict:
    v0 = flat(batch[0], model.visible)
    lr = decayed(config.lr, config.lr_end, int(model.updates) / config.steps)
    metrics = update(model, v0, optimizers["sgd"], lr, config, first=int(model.updates) == 0)
    model.updates += 1
    return metrics


# --- partition function and likelihood --------------------------------------------------------------

def log_partition(model: RBM, runs: int = 100, betas: int = 14_500, base=None, generator=None) -> ais.AISResult:
    """AIS estimate of log Z, from the base model ``base`` (visible biases; default the RBM's own
    visible biases' sigmoid marginals, which needs no data)."""
    with torch.no_grad():
        b_a = model.b.detach() if base is None else base
        return ais.log_partition(model.W, model.b, model.c, b_a, runs=runs, betas=betas, generator=generator)


def ais_estimate(model: RBM, runs: int, betas: int) -> ais.AISResult:
    """The AIS estimate of log Z used by the card and the likelihood table: seed 0, from the training
    data's pixel marginals when the model knows its config; kept on the model for later calls."""
    cached = getattr(model, "_ais", None)
    if cached is None or cached[0] != (runs, betas):
        images = data_of(model)
        base = ais.base_bias(flat(images, model.visible)) if images is not None else None
        result = log_partition(model, runs, betas, base=base, generator=torch.Generator().manual_seed(0))
        model._ais = ((runs, betas), result)
    return model._ais[1]


def _ais_settings(model) -> tuple[int, int]:
    config = getattr(model, "config", None)
    return (config.ais_runs, config.ais_betas) if config else (100, 14_500)


@torch.no_grad()
def log_likelihood(model: RBM, x, card: dict | None = None) -> torch.Tensor:
    """Estimated log p(x) = −F(x) − log Ẑ in nats for each image (N,), log Ẑ by AIS with the config's
    runs and temperatures (an estimate, not exact: see :mod:`models.energy.ais`). log Ẑ does not
    depend on x: a checkpoint's ``card`` metrics that hold the same seed-0 estimate are used as they
    are instead of running AIS again (ten minutes at the paper's settings)."""
    model.eval()
    x = flat(x, model.visible).to(device_of(model))
    settings = _ais_settings(model)
    if card and "log_z" in card and (card.get("ais_runs"), card.get("ais_betas")) == settings:
        log_z = float(card["log_z"])
    else:
        log_z = ais_estimate(model, *settings).log_z
    return (-model.free_energy(x).double() - log_z).cpu()


def evaluate(model: RBM, x, y, runs: int | None = None, betas: int | None = None) -> dict:
    """The card's figures: AIS log Z with its interval and the test log-likelihood it gives."""
    default_runs, default_betas = _ais_settings(model)
    model.eval()
    v = flat(x, model.visible).to(device_of(model))
    result = ais_estimate(model, runs or default_runs, betas or default_betas)
    with torch.no_grad():
        minus_f = -model.free_energy(v).double().mean().item()
    return {"test_log_likelihood": minus_f - result.log_z,
            "test_ll_low": minus_f - result.high, "test_ll_high": minus_f - result.low,
            "test_free_energy": -minus_f, **result.as_dict(), "test_images": len(v),
            "bits_per_dim": -(minus_f - result.log_z) / (model.visible * math.log(2))}


def data_of(model) -> torch.Tensor | None:
    """Training images for the AIS base model when the model knows its config (else None)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    return data(config, "train")[0][0]


# --- sampling ---------------------------------------------------------------------------------------

@dataclass
class GibbsStep:
    """One step of a block Gibbs chain: sweep t, the hidden probabilities p(h|v) (B, H) that drove it,
    and the new visibles: p(v′|h) (B, visible) and the sampled v′ (see :func:`images`)."""

    t: int
    p_h: torch.Tensor
    p_v: torch.Tensor
    v: torch.Tensor


def _check_chain(sweeps: int, every: int) -> None:
    check_range("Gibbs sweeps", sweeps, 1, 100_000)
    check_range("sweeps between frames", every, 1, max(1, sweeps))


@torch.no_grad()
def chain(model: RBM, v, sweeps: int, generator=None, every: int = 1, known=None):
    """Run block Gibbs v → h → v′ from ``v`` (B, D) for ``sweeps`` sweeps, yielding a :class:`GibbsStep`
    every ``every`` sweeps and at the end. Where ``known`` (B, D) is True the visibles are clamped to
    ``v``: the chain then samples the rest from p(v_missing | v_known)."""
    _check_chain(sweeps, every)
    v = v.clone()
    clamp = None if known is None else (known.bool(), v.clone())
    for t in range(1, sweeps + 1):
        ph, _, pv, v = model.gibbs(v, generator)
        if clamp is not None:
            v = torch.where(clamp[0], clamp[1], v)
            pv = torch.where(clamp[0], clamp[1], pv)
        if t % every == 0 or t == sweeps:
            yield GibbsStep(t, ph.cpu(), pv.cpu(), v.cpu())


def images(v) -> torch.Tensor:
    """(B, 784) visibles -> (B, 1, 28, 28) images."""
    return v.reshape(-1, 1, SIZE, SIZE)


def start_noise(model: RBM, n: int, generator=None) -> torch.Tensor:
    """Chains start from independent pixels drawn at the visible biases' marginals σ(b)."""
    return torch.bernoulli(torch.sigmoid(model.b.detach()).expand(n, -1).contiguous(), generator=generator)


@torch.no_grad()
def sample(model: RBM, n: int, generator: torch.Generator | None = None, sweeps: int = 1000, every: int = 100):
    """``n`` images from Gibbs chains started at independent pixels: yields p(v|h), (n, 1, 28, 28),
    every ``every`` sweeps, the last after ``sweeps``."""
    check_range("number of samples", n, 1, 10_000)
    model.eval()
    for s in chain(model, start_noise(model, n, generator), sweeps, generator, every):
        yield images(s.p_v)


@torch.no_grad()
def fill_in(model: RBM, x, known, sweeps: int = 200, generator=None, every: int | None = None):
    """Clamp the pixels where ``known`` is True and let the chain fill in the rest (the unknown
    pixels start as noise). Yields :class:`GibbsStep`s every ``every`` sweeps (default: 20 in all)."""
    v = flat(x, model.visible).to(device_of(model))
    known = torch.as_tensor(known, dtype=torch.bool).reshape(len(v), -1).to(v.device)
    if known.shape != v.shape:
        raise ValueError(f"The mask must have one value per pixel; got {tuple(known.shape)}.")
    model.eval()
    v = torch.where(known, v, start_noise(model, len(v), generator).to(v.device))
    yield from chain(model, v, sweeps, generator, every or max(1, sweeps // 20), known=known)


def filters(model: RBM, n: int = 64) -> torch.Tensor:
    """The first ``n`` hidden units' weights W_{:,j} as (n, 1, 28, 28) images, each scaled to [0, 1]."""
    check_range("filters", n, 1, model.hidden)
    w = model.W.detach().cpu().T[:n]
    w = (w - w.amin(1, keepdim=True)) / (w.amax(1, keepdim=True) - w.amin(1, keepdim=True) + 1e-8)
    return w.reshape(n, 1, SIZE, SIZE)


def describe(cfg: dict) -> str:
    return f"{cfg['hidden']} hidden, {cfg['method'].upper()}-{cfg['k']}"


def card_lines(m: dict) -> list[str]:
    if "test_log_likelihood" not in m:
        return []
    return [f"Test set ({m.get('test_images', 10000):,} images): log-likelihood **{m['test_log_likelihood']:.2f} nats** "
            f"per image (AIS estimate, ±3σ interval {m['test_ll_low']:.2f} … {m['test_ll_high']:.2f}), "
            f"{m['bits_per_dim']:.4f} bits/dim",
            f"log Z ≈ {m['log_z']:.2f} from {m['ais_runs']} AIS runs × {m['ais_betas']:,} temperatures "
            f"({m['ais_seconds']:.0f} s)"]


def _build_with_config(config: RBMConfig) -> RBM:
    model = build(config)
    model.config = config  # so evaluate() can read its AIS settings and training data
    return model


FAMILY = Family(
    name="rbm",
    title="Restricted Boltzmann machine",
    config_cls=RBMConfig,
    build=_build_with_config,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    score_kwargs={"sweeps": 1000, "every": 1000},
    data=data,
    optimizers=sgd,
    describe=describe,
    card_lines=card_lines,
    log_likelihood=log_likelihood,
    likelihood="estimate",
)
