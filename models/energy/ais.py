"""Annealed importance sampling (AIS) of an RBM's partition function (Neal 2001; Salakhutdinov &
Murray 2008, "On the quantitative analysis of deep belief networks"; Goodfellow et al. §18.7).

An RBM's likelihood needs ``log Z = log Σ_v exp(−F(v))``, a sum over 2^784 images. AIS estimates it
by walking from a distribution whose Z is known to the RBM through intermediate distributions

    p_β(v) ∝ f_β(v) = exp((1 − β) b_Aᵀv + β bᵀv) · Π_j (1 + exp(β (c_j + W_jᵀ v))),   0 = β_0 < … < β_K = 1

where the base model A (β = 0) is independent pixels with biases ``b_A`` (the data's pixel marginals,
so it already looks like the data) and H hidden units with zero weights, ``Z_A = 2^H Π_i (1 + e^{b_A,i})``.
Each of M runs draws v_0 from A, then for k = 1 … K adds ``log f_{β_k}(v_{k−1}) − log f_{β_{k−1}}(v_{k−1})``
to its log weight and moves v by one block-Gibbs step that leaves p_{β_k} invariant. The mean weight
estimates Z_B / Z_A without bias, so

    log Ẑ = log Z_A + log mean_m w_m,

and the spread of the weights gives the error bar: Salakhutdinov & Murray report
``log(r̂ ± 3 σ̂)`` with σ̂ the standard error of the mean weight. log Ẑ is itself a stochastic lower
bound in expectation (Jensen), so a test log-likelihood built from it tends to be **optimistic**:
that is why the schedule is long (their 14,500 temperatures) and the interval is shown.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.core.family import check_range, last

# Salakhutdinov & Murray's schedule: 500 steps to β = 0.5, 4,000 to 0.9, 10,000 to 1 (14,500 in all)
PAPER_SCHEDULE = ((0.5, 500), (0.9, 4000), (1.0, 10000))


@dataclass
class AISResult:
    """One AIS estimate of log Z, with its ±3 standard-error interval (nats)."""

    log_z: float
    low: float  # log(r̂ − 3σ̂) + log Z_A (−inf when the interval reaches 0)
    high: float  # log(r̂ + 3σ̂) + log Z_A
    log_z_base: float  # log Z_A
    runs: int
    betas: int  # intermediate distributions K
    seconds: float
    log_weights: torch.Tensor  # (runs,) the final log importance weights

    def as_dict(self) -> dict:
        return {"log_z": self.log_z, "log_z_low": self.low, "log_z_high": self.high, "ais_runs": self.runs,
                "ais_betas": self.betas, "ais_seconds": round(self.seconds, 2)}


def schedule(betas: int) -> torch.Tensor:
    """``betas`` + 1 inverse temperatures from 0 to 1, spaced as the paper's (denser near 1)."""
    check_range("AIS temperatures", betas, 3, 1_000_000)
    total = sum(n for _, n in PAPER_SCHEDULE)
    parts, start = [torch.zeros(1, dtype=torch.float64)], 0.0
    counts = [max(1, round(betas * n / total)) for _, n in PAPER_SCHEDULE]
    counts[-1] = betas - sum(counts[:-1])
    for (end, _), n in zip(PAPER_SCHEDULE, counts):
        parts.append(torch.linspace(start, end, n + 1, dtype=torch.float64)[1:])
        start = end
    return torch.cat(parts)


def base_bias(data: torch.Tensor, eps: float = 0.05) -> torch.Tensor:
    """The base model's visible biases: the log-odds of each pixel's mean in ``data`` (N, D), smoothed
    so that no pixel is certain (a pixel that is always 0 would make Z_A's model impossible to leave)."""
    p = (data.double().mean(0) * len(data) + eps) / (len(data) + 2 * eps)
    return torch.log(p) - torch.log1p(-p)


def _log_f(v, vw, beta, b, c, b_a):
    """log f_β(v) (the hiddens summed out): (1 − β) b_Aᵀv + β bᵀv + Σ_j softplus(β (c + vW)_j), given vW."""
    return ((1 - beta) * (v @ b_a) + beta * (v @ b) + F.softplus(beta * (vw + c)).sum(1)).double()


@dataclass
class Progress:
    """Where an AIS run is: temperature k of K, and the runs' log weights so far."""

    k: int
    betas: int
    log_weights: torch.Tensor


@torch.no_grad()
def anneal(W, b, c, b_a=None, *, runs: int = 100, betas: int = 14_500, generator: torch.Generator | None = None,
           every: int = 500):
    """AIS of the RBM E(v, h) = −bᵀv − cᵀh − vᵀWh (W (D, H), b (D,), c (H,)) from the base model with
    visible biases ``b_a``: yields :class:`Progress` every ``every`` temperatures, then the
    :class:`AISResult`."""
    check_range("AIS runs", runs, 2, 100_000)
    beta = schedule(betas).tolist()
    check_range("temperatures between reports", every, 1, betas)
    D, H = W.shape
    W, b, c = W.float(), b.float(), c.float()  # products in float32; the weights add up in float64
    b_a = torch.zeros_like(b) if b_a is None else b_a.float().to(b.device)
    t0 = time.perf_counter()
    log_z_a = F.softplus(b_a.double()).sum().item() + H * math.log(2)
    v = torch.bernoulli(torch.sigmoid(b_a).expand(runs, D), generator=generator)
    log_w = torch.zeros(runs, dtype=torch.float64, device=W.device)
    for k, (prev, now) in enumerate(zip(beta[:-1], beta[1:]), 1):
        vw = v @ W
        log_w += _log_f(v, vw, now, b, c, b_a) - _log_f(v, vw, prev, b, c, b_a)
        h = torch.bernoulli(torch.sigmoid(now * (vw + c)), generator=generator)  # a Gibbs step at β_k
        v = torch.bernoulli(torch.sigmoid((1 - now) * b_a + now * (h @ W.T + b)), generator=generator)
        if k % every == 0 and k < betas:
            yield Progress(k, betas, log_w.cpu().clone())
    # r̂ = mean w and its standard error, computed relative to the largest weight to stay finite
    top = log_w.max()
    w = torch.exp(log_w - top)
    mean, se = w.mean(), w.std() / math.sqrt(runs)
    log_r = (torch.log(mean) + top).item()
    low = (torch.log(mean - 3 * se) + top).item() if mean > 3 * se else -math.inf
    high = (torch.log(mean + 3 * se) + top).item()
    yield AISResult(log_z_a + log_r, log_z_a + low, log_z_a + high, log_z_a, runs, betas,
                    time.perf_counter() - t0, log_w.cpu())


def log_partition(W, b, c, b_a=None, *, runs: int = 100, betas: int = 14_500,
                  generator: torch.Generator | None = None) -> AISResult:
    """:func:`anneal` run to the end: the AIS estimate of log Z."""
    return last(anneal(W, b, c, b_a, runs=runs, betas=betas, generator=generator, every=betas))


def effective_runs(log_w: torch.Tensor) -> float:
    """The effective sample size of the importance weights, (Σw)² / Σw² (M when all are equal)."""
    w = torch.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w ** 2).sum())


def exact_log_partition(W, b, c) -> float:
    """log Z by brute force, summing out the smaller layer analytically and enumerating the other
    (for tiny RBMs in tests: at most 2^20 configurations)."""
    W, b, c = W.double(), b.double(), c.double()
    if W.shape[0] > W.shape[1]:  # enumerate the hiddens instead: the energy is symmetric in v and h
        W, b, c = W.T, c, b
    n = W.shape[0]
    if n > 20:
        raise ValueError(f"Exact log Z enumerates 2^{n} states; at most 2^20 is allowed.")
    states = ((torch.arange(2 ** n)[:, None] >> torch.arange(n)) & 1).double()
    return torch.logsumexp(states @ b + F.softplus(states @ W + c).sum(1), 0).item()
