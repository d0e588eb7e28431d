"""NADE, the neural autoregressive distribution estimator (Larochelle & Murray 2011; Goodfellow et al.
ch. 20.10.10), on binarised MNIST.

Pick an order of the D = 784 pixels, o_1 … o_D. By the chain rule
``p(x) = Π_d p(x_{o_d} | x_{o_<d})``, and NADE makes each conditional a one-hidden-layer network
whose input weights are **shared** across d:

    h_d = σ(c + W[:, <d] x_<d)          (H hidden units; W is H × D)
    p(x_{o_d} = 1 | x_<d) = σ(b_d + V_d · h_d)

Sharing W means ``a_d = c + W[:, <d] x_<d`` grows by one column per pixel, ``a_{d+1} = a_d + W[:, d] x_d``,
so all D conditionals of an image cost O(DH) — one cumulative sum — instead of O(D²H), and the
log-likelihood is **exact**: the sum of D Bernoulli log-probabilities, no bound, no sampling.

Sampling walks the order: draw pixel o_1, add its column of W to ``a``, draw o_2, … In-painting
uses the same chain rule with the observed pixels held at their values (:func:`complete`).

The order is part of the model (a buffer saved in the checkpoint): ``raster`` (rows, left to right),
``columns`` (top to bottom, column by column), ``centre`` (nearest the centre first) or ``random``
(a permutation from ``order_seed``). The paper trains 500 hidden units with SGD; here Adam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of

SIZE = 28
D = SIZE * SIZE
ORDERS = ("raster", "columns", "centre", "random")
UNKNOWN = 0.5  # shown where a streamed image has no pixel yet


@dataclass
class NADEConfig:
    dataset: str = "mnist"
    binarisation: str = "stochastic"  # models.core.data.BINARISATIONS
    hidden: int = 500  # the paper's H
    order: str = "raster"  # one of ORDERS: the order of the chain rule, fixed at training
    order_seed: int = 0  # for order "random"
    lr: float = 1e-3  # Adam (departure: the paper used SGD with early stopping)
    batch_size: int = 100
    steps: int = 30_000  # 50 epochs of 60k at batch 100

    def validate(self):
        from models.core.data import BINARISATIONS, check_dataset

        check_dataset(self.dataset)
        if self.binarisation not in BINARISATIONS:
            raise ValueError(f"Unknown binarisation {self.binarisation!r}; choose from {sorted(BINARISATIONS)}.")
        if self.order not in ORDERS:
            raise ValueError(f"Unknown order {self.order!r}; choose from {', '.join(ORDERS)}.")
        check_range("hidden units", self.hidden, 1, 10_000)
        check_range("order seed", self.order_seed, 0, 2**31 - 1)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)


PRESETS = {
    "book": {},  # Larochelle & Murray's size: 500 hidden units
    "cpu": {"batch_size": 20, "lr": 5e-3, "steps": 2500},  # what ships (test NLL 92.9 nats): 50k images in small batches, Adam 5e-3; 31 min on one thread
    "tiny": {"hidden": 8, "batch_size": 8, "steps": 2},
}


def pixel_order(name: str, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """The order as a permutation of the raster indices 0 … size²-1: ``order[d]`` is the d-th pixel drawn."""
    if name not in ORDERS:
        raise ValueError(f"Unknown order {name!r}; choose from {', '.join(ORDERS)}.")
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    if name == "raster":
        return torch.arange(size * size)
    if name == "columns":
        return (rows.T * size + cols.T).reshape(-1)
    if name == "centre":
        centre = (size - 1) / 2
        dist = ((rows - centre) ** 2 + (cols - centre) ** 2).reshape(-1).double()
        return torch.argsort(dist * (size * size) + torch.arange(size * size), stable=True)  # ties: raster
    return torch.randperm(size * size, generator=torch.Generator().manual_seed(seed))


class _Logits(torch.autograd.Function):
    """All D logits of NADE for a batch in drawing order, forward and backward by hand, a few images at
    a time: the (images, D, H) pre-activations are recomputed in the backward pass instead of stored, so
    each chunk's work stays in the CPU cache (about 4× faster than autograd's version on 2 cores)."""

    @staticmethod
    def hidden(xs, W, c):
        """h_d = σ(c + Σ_{k<d} W_k x_k) for every d: (chunk, D, H)."""
        a = torch.cumsum(xs[:, :-1, None] * W[None, :-1], 1)
        return torch.cat([a.new_zeros(len(xs), 1, W.shape[1]), a], 1).add_(c).sigmoid_()

    @staticmethod
    def forward(ctx, xo, W, c, V, b, chunk: int):
        ctx.save_for_backward(xo, W, c, V)
        ctx.chunk = chunk
        return torch.cat([torch.einsum("bdh,dh->bd", _Logits.hidden(xs, W, c), V) for xs in xo.split(chunk)]) + b

    @staticmethod
    def backward(ctx, g):
        xo, W, c, V = ctx.saved_tensors
        dW, dc, dV = torch.zeros_like(W), torch.zeros_like(c), torch.zeros_like(V)
        for xs, gs in zip(xo.split(ctx.chunk), g.split(ctx.chunk)):
            h = _Logits.hidden(xs, W, c)
            dV += torch.einsum("bd,bdh->dh", gs, h)
            da = h.mul_(1 - h).mul_(V).mul_(gs[:, :, None])  # ∂loss/∂a_d, (chunk, D, H)
            dc += da.sum((0, 1))
            after = da.flip(1).cumsum(1).flip(1)[:, 1:]  # Σ_{d>k} ∂loss/∂a_d: W_k feeds every later a_d
            dW[:-1] += torch.einsum("bk,bkh->kh", xs[:, :-1], after)
        return None, dW, dc, dV, g.sum(0), None


class NADE(nn.Module):
    """NADE over ``n`` binary variables taken in ``order`` (a permutation of 0 … n-1)."""

    def __init__(self, n: int, hidden: int, order: torch.Tensor):
        super().__init__()
        if sorted(order.tolist()) != list(range(n)):
            raise ValueError(f"order must be a permutation of 0 … {n - 1}.")
        self.n = n
        # row d of W, V, b belongs to the d-th pixel of the order (W[d] is the paper's column W[:, o_d])
        self.W = nn.Parameter(torch.randn(n, hidden) * 0.01)
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(n, hidden) * 0.01)
        self.b = nn.Parameter(torch.zeros(n))
        self.register_buffer("order", order.clone(), persistent=False)  # rebuilt from the config

    def logits(self, x) -> torch.Tensor:
        """Every conditional's logit at once, in the model's order: x (B, n) in raster -> (B, n) where
        column d is the logit of p(x_{o_d} = 1 | x_{o_<d}); the cumulative sum of W's rows gives all a_d."""
        chunk = max(1, 2_000_000 // self.W.numel())  # images per chunk: about 8 MB of pre-activations (5 for MNIST)
        return _Logits.apply(x[:, self.order], self.W, self.c, self.V, self.b, chunk)

    def log_prob_pixels(self, x) -> torch.Tensor:
        """log p(x_{o_d} | x_{o_<d}) for each d, (B, n) in drawing order."""
        return -F.binary_cross_entropy_with_logits(self.logits(x), x[:, self.order], reduction="none")

    def forward(self, x):
        return self.log_prob_pixels(x).sum(1)


def build(config: NADEConfig) -> NADE:
    return NADE(D, config.hidden, pixel_order(config.order, config.order_seed))


# --- data, loss, likelihood -------------------------------------------------------------------------

def data(config: NADEConfig, split: str):
    from models.core import data as datasets

    x, y = datasets.binary_images(config.dataset, split, config.binarisation)
    title = datasets.DATASETS[config.dataset]["title"]
    return (x, y), {"title": f"{title}, binarised ({config.binarisation})", "dataset": config.dataset,
                    "preprocessing": datasets.BINARISATIONS[config.binarisation]}


def flat(model: NADE, x) -> torch.Tensor:
    """Binary images (B, 1, 28, 28) (or (B, n)) -> (B, n) floats, refusing anything not 0 or 1."""
    x = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), -1)
    if x.shape[1] != model.n:
        raise ValueError(f"Expected images of {model.n} pixels; got {x.shape[1]}.")
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("NADE models binary pixels: every value must be 0 or 1.")
    return x


def train_step(model: NADE, batch, config: NADEConfig) -> dict:
    x, _ = batch
    nll = -model(flat(model, x)).mean()
    return {"loss": nll, "bits_per_dim": nll / (model.n * math.log(2))}


@torch.no_grad()
def pixel_log_probs(model: NADE, x) -> torch.Tensor:
    """log p(x_i | pixels before i in the order) of every pixel, back in raster order: (B, 28, 28)."""
    model.eval()
    x = flat(model, x).to(device_of(model))
    out = torch.empty_like(x)
    out[:, model.order] = model.log_prob_pixels(x)
    return out.cpu().reshape(len(x), SIZE, SIZE)


@torch.no_grad()
def log_likelihood(model: NADE, x, batch_size: int = 500) -> torch.Tensor:
    """Exact log p(x) in nats for each image (N,)."""
    model.eval()
    device = device_of(model)
    x = flat(model, x)
    return torch.cat([model(chunk.to(device)).cpu() for chunk in x.split(batch_size)])


def evaluate(model: NADE, x, y) -> dict:
    nll = -log_likelihood(model, x).double().mean().item()
    return {"test_nll_nats": nll, "bits_per_dim": nll / (model.n * math.log(2)), "test_images": len(x)}


# --- sampling and in-painting -------------------------------------------------------------------------

def _check_controls(n: int, temperature: float, every: int, total: int) -> None:
    check_range("number of samples", n, 1, 10_000)
    check_range("temperature", temperature, 0.05, 5.0)
    check_range("pixels between previews", every, 1, total)


def _walk(model: NADE, x, known, generator, temperature: float, every: int):
    """Go through the order: a known pixel keeps its value, an unknown one is drawn from
    σ(logit / temperature); either way its column of W joins ``a``. Yields (B, n) images in raster
    order every ``every`` drawn pixels (pixels still to draw at UNKNOWN), the complete ones last."""
    x, known = x.clone(), known.clone()
    a = model.c.expand(len(x), -1).clone()  # (B, H)
    drawn = 0
    for d, i in enumerate(model.order.tolist()):
        todo = ~known[:, i]
        if todo.any():
            logit = torch.sigmoid(a) @ model.V[d] + model.b[d]  # (B,); parameters are indexed by position d
            p = torch.sigmoid(logit.double() / temperature)
            value = torch.bernoulli(p, generator=generator).to(x.dtype)
            x[:, i] = torch.where(todo, value, x[:, i])
            known[:, i] = True
            drawn += 1
            if drawn % every == 0:
                yield torch.where(known, x, torch.full_like(x, UNKNOWN)).cpu()
        a = a + x[:, i:i + 1] * model.W[d]
    yield x.cpu()


def _images(flat_images) -> torch.Tensor:
    return flat_images.reshape(-1, 1, SIZE, SIZE)


@torch.no_grad()
def sample(model: NADE, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
           every: int = SIZE):
    """``n`` images drawn pixel by pixel in the model's order; yields (n, 1, 28, 28) every ``every``
    pixels (grey where not drawn yet), the complete images last. ``temperature`` divides the logits."""
    _check_controls(n, temperature, every, model.n)
    model.eval()
    x = torch.zeros(n, model.n, device=device_of(model))
    for frame in _walk(model, x, torch.zeros_like(x, dtype=torch.bool), generator, float(temperature), int(every)):
        yield _images(frame) if model.n == D else frame


@torch.no_grad()
def complete(model: NADE, x, known, generator: torch.Generator | None = None, temperature: float = 1.0,
             every: int = SIZE, particles: int = 1):
    """In-paint the pixels where ``known`` is False by the chain rule in the model's order.

    With ``particles`` 1 each missing pixel is drawn from p(x_{o_d} | x_{o_<d}): the observed pixels
    **before** it in the order and the pixels drawn so far. That is exactly p(x_missing | x_observed)
    when every observed pixel precedes every missing one; otherwise the observed pixels after a
    missing one are ignored by it. With ``particles`` K > 1, K completions are drawn that way and one
    is kept with probability ∝ p(observed pixels after the first missing one | the rest): importance
    resampling, which tends to the exact conditional as K grows."""
    images = flat(model, x)
    known = torch.as_tensor(known, dtype=torch.bool).reshape(len(images), -1)
    if known.shape != images.shape:
        raise ValueError(f"The mask must have one value per pixel; got {tuple(known.shape)}.")
    check_range("particles", particles, 1, 256)
    _check_controls(len(images), temperature, every, model.n)
    check_range("images × particles", len(images) * particles, 1, 100_000)
    model.eval()
    device = device_of(model)
    B, K = len(images), int(particles)
    xs = images.to(device).repeat_interleave(K, 0)
    ks = known.to(device).repeat_interleave(K, 0)
    frame = None
    for frame in _walk(model, xs, ks, generator, float(temperature), int(every)):
        if K == 1:
            yield _images(frame) if model.n == D else frame
    if K > 1:
        weights = (model.log_prob_pixels(frame.to(device)) * ks[:, model.order]).sum(1).view(B, K)
        pick = torch.multinomial(torch.softmax(weights.double(), 1), 1, generator=generator)[:, 0]
        best = frame.view(B, K, -1)[torch.arange(B), pick.cpu()]
        yield _images(best) if model.n == D else best


def exact_conditional(order: torch.Tensor, known) -> bool:
    """Whether :func:`complete` with one particle draws from the exact p(x_missing | x_observed): every
    observed pixel comes before every missing one in ``order``."""
    k = torch.as_tensor(known, dtype=torch.bool).reshape(-1)[order]
    return bool(not k.any() or k.all() or (~k).nonzero()[0, 0] >= k.nonzero()[-1, 0])


def describe(cfg: dict) -> str:
    order = cfg.get("order", "raster")
    return f"H {cfg['hidden']}, {order} order" + (f" (seed {cfg.get('order_seed', 0)})" if order == "random" else "") \
        + f", {cfg.get('binarisation', 'stochastic')} binarisation"


def card_lines(m: dict) -> list[str]:
    if "test_nll_nats" not in m:
        return []
    return [f"Test set ({m.get('test_images', 10000):,} images): NLL **{m['test_nll_nats']:.2f} nats** per image, "
            f"{m['bits_per_dim']:.4f} bits/dim (exact)"]


FAMILY = Family(
    name="nade",
    title="NADE",
    config_cls=NADEConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    data=data,
    describe=describe,
    card_lines=card_lines,
    log_likelihood=log_likelihood,
    likelihood="exact",
)
