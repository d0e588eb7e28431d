"""A Gaussian mixture fitted by expectation–maximisation, one step at a time (Deep Learning from
Scratch 5, ch. 4–5).

The model: pick a component z ~ Categorical(π), then x ~ N(μ_z, Σ_z), so

    p(x) = Σ_k π_k N(x; μ_k, Σ_k).

Maximising Σₙ log p(xₙ) has no closed form, but EM climbs it. For any distribution q(z | xₙ),

    log p(xₙ) = ELBO(q, θ) + KL(q ‖ p(z | xₙ; θ)),   ELBO = Σ_k q_k log(π_k N(xₙ; μ_k, Σ_k) / q_k).

* **E-step**: set q to the posterior, the *responsibilities* γₙₖ = π_k N(xₙ; μ_k, Σ_k) / p(xₙ).
  The KL term becomes 0, so the bound touches the log-likelihood.
* **M-step**: maximise the bound over θ with q held fixed, in closed form:
  N_k = Σₙ γₙₖ,  π_k = N_k / N,  μ_k = Σₙ γₙₖ xₙ / N_k,  Σ_k = Σₙ γₙₖ (xₙ - μ_k)(xₙ - μ_k)ᵀ / N_k.

The bound went up and the log-likelihood is above the bound, so the log-likelihood never goes down.
A component that collapses onto one point would have Σ_k → 0 and an unbounded likelihood; as in
scikit-learn, ``reg_covar`` (1e-6) is added to every Σ_k's diagonal to keep it positive definite.

:func:`fit` runs EM to convergence from a random or k-means++ start (scikit-learn's
``kmeans_plusplus``) and returns a :class:`Mixture`; :class:`EM` is the same algorithm held between
steps for the studio; :func:`sample` draws new points ancestrally (z first, then x given z).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from models.core import lazy
from models.density.gaussian import cholesky_log_pdf, as_points

INITS = ("k-means++", "random")
MAX_K = 10
REG_COVAR = 1e-6  # added to each Σ_k's diagonal (scikit-learn's default), relative to the data's scale
TOL = 1e-6  # convergence: the mean log-likelihood per point rises by less than this
MAX_ITER = 500


@dataclass
class Mixture:
    """A fitted mixture: weights π (K,), means μ (K, D), covariances Σ (K, D, D), float64."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    log_likelihoods: list[float] = field(default_factory=list)  # after each iteration (total, nats)
    converged: bool = False

    @property
    def k(self) -> int:
        return len(self.weights)

    @property
    def n_iter(self) -> int:
        return max(len(self.log_likelihoods) - 1, 0)

    def log_prob(self, points) -> torch.Tensor:
        """log p(x) for each row (N,)."""
        x = as_points(points, dim=self.means.shape[1])
        return torch.logsumexp(component_log_probs(x, self.weights, self.means, self.covs), 1)

    def responsibilities(self, points) -> torch.Tensor:
        """γ (N, K): the posterior over components of each point."""
        x = as_points(points, dim=self.means.shape[1])
        return e_step(x, self.weights, self.means, self.covs)[0]


def component_log_probs(x, weights, means, covs) -> torch.Tensor:
    """log π_k + log N(xₙ; μ_k, Σ_k), (N, K), all components at once."""
    L = torch.linalg.cholesky(covs)  # (K, D, D)
    log_w = torch.log(weights.clamp_min(1e-300))
    return (log_w[:, None] + cholesky_log_pdf(x, means, L)).T


def e_step(x, weights, means, covs) -> tuple[torch.Tensor, float]:
    """Responsibilities γ (N, K) and the log-likelihood Σₙ log p(xₙ) at these parameters."""
    joint = component_log_probs(x, weights, means, covs)
    log_px = torch.logsumexp(joint, 1, keepdim=True)
    return torch.exp(joint - log_px), float(log_px.sum())


def m_step(x, gamma, reg_covar: float):
    """π, μ, Σ maximising the bound for responsibilities γ (closed form)."""
    nk = gamma.sum(0) + 10 * torch.finfo(gamma.dtype).eps  # (K,); an empty component keeps finite maths
    means = gamma.T @ x / nk[:, None]  # (K, D)
    diff = x[None] - means[:, None]  # (K, N, D)
    covs = (gamma.T[:, :, None] * diff).transpose(1, 2) @ diff / nk[:, None, None]  # (K, D, D)
    covs = covs + reg_covar * torch.eye(x.shape[1], dtype=x.dtype)
    return nk / len(x), means, covs


def bound(gamma, joint) -> float:
    """The lower bound Σₙ Σ_k γₙₖ (log π_k N(xₙ; θ_k) - log γₙₖ), from fixed responsibilities γ and
    the joint log-probabilities ``joint`` (N, K) at some θ."""
    return float((gamma * joint).sum() - torch.xlogy(gamma, gamma).sum())


def check_k(k, n_points: int) -> int:
    if (isinstance(k, bool) or not isinstance(k, (int, float, np.integer)) or not math.isfinite(k)
            or k != int(k) or not 1 <= k <= MAX_K):
        raise ValueError(f"k (the number of components) must be a whole number from 1 to {MAX_K}; got {k!r}.")
    k = int(k)
    if k > n_points:
        raise ValueError(f"k = {k} is more components than the {n_points} points: each component needs "
                         "points to fit. Choose a smaller k or more data.")
    return k


def initialise(x, k: int, init: str, generator: torch.Generator, reg_covar: float = REG_COVAR):
    """Starting π, μ, Σ: uniform weights, every Σ_k the data's variances (diagonal), and the means either k
    data points drawn at random or k-means++'s spread-out choice (scikit-learn's ``kmeans_plusplus``)."""
    if init not in INITS:
        raise ValueError(f"Start must be one of {INITS}; got {init!r}.")
    k = check_k(k, len(x))
    if init == "random":
        idx = torch.randperm(len(x), generator=generator)[:k]
        means = x[idx].clone()
    else:
        kmeans_plusplus = lazy.module("sklearn.cluster").kmeans_plusplus

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        centres, _ = kmeans_plusplus(x.numpy(), k, random_state=seed)
        means = torch.as_tensor(centres, dtype=torch.float64)
    # each Σ_k the data's per-axis variances, without correlations: the first E-step then assigns points
    # by a distance scaled per axis; the full data covariance would shrink the very directions in which
    # well-separated clusters lie apart (their spread inflates it there)
    cov = torch.diag(x.var(0, correction=0) + reg_covar)
    return torch.full((k,), 1.0 / k, dtype=torch.float64), means, cov.expand(k, -1, -1).clone()


def _reg(x, reg_covar: float) -> float:
    """``reg_covar`` scaled to the data (so a table in cm and one in km are treated alike)."""
    return reg_covar * max(float(x.var(0).mean()), 1e-300)


class EM:
    """EM held between steps: the data, the current parameters, the responsibilities of the last
    E-step and a history of (step, log-likelihood, bound) for the curve.

    ``history`` rows: ``{"step": "init" | "E" | "M", "iteration": t, "log_likelihood": total nats at
    the current θ, "elbo": the bound at (q, θ) or None before any E-step}``.
    """

    def __init__(self, points, k: int, init: str = "k-means++", generator: torch.Generator | None = None,
                 reg_covar: float = REG_COVAR):
        self.x = as_points(points, dim=None, min_points=1)
        if generator is None:
            raise ValueError("EM needs a generator (a seed) for its start.")
        if not (isinstance(reg_covar, (int, float)) and 0 <= reg_covar <= 1):
            raise ValueError(f"reg_covar must be between 0 and 1; got {reg_covar!r}.")
        self.reg = _reg(self.x, reg_covar)
        self.weights, self.means, self.covs = initialise(self.x, k, init, generator, reg_covar=self.reg)
        self.gamma: torch.Tensor | None = None
        self.iteration = 0
        self.history = [{"step": "init", "iteration": 0, "log_likelihood": self.log_likelihood(), "elbo": None}]

    @property
    def k(self) -> int:
        return len(self.weights)

    def log_likelihood(self) -> float:
        return float(torch.logsumexp(component_log_probs(self.x, self.weights, self.means, self.covs), 1).sum())

    def e(self) -> float:
        """E-step: responsibilities from the current θ; the bound now equals the log-likelihood."""
        self.gamma, ll = e_step(self.x, self.weights, self.means, self.covs)
        self.history.append({"step": "E", "iteration": self.iteration, "log_likelihood": ll, "elbo": ll})
        return ll

    def m(self) -> float:
        """M-step: θ from the last E-step's responsibilities (an E-step first if there was none)."""
        if self.gamma is None:
            self.e()
        self.weights, self.means, self.covs = m_step(self.x, self.gamma, self.reg)
        self.iteration += 1
        joint = component_log_probs(self.x, self.weights, self.means, self.covs)
        ll = float(torch.logsumexp(joint, 1).sum())
        self.history.append({"step": "M", "iteration": self.iteration, "log_likelihood": ll,
                             "elbo": bound(self.gamma, joint)})
        return ll

    def step(self) -> float:
        """One full iteration (E then M); the log-likelihood after it."""
        self.e()
        return self.m()

    def run(self, max_iter: int = MAX_ITER, tol: float = TOL) -> bool:
        """Iterate until the mean log-likelihood per point rises by less than ``tol`` (True), or
        ``max_iter`` iterations (False)."""
        if not isinstance(max_iter, int) or not 1 <= max_iter <= 10_000:
            raise ValueError(f"Iterations must be a whole number from 1 to 10000; got {max_iter!r}.")
        if not (isinstance(tol, (int, float)) and 0 <= tol < 1):
            raise ValueError(f"Tolerance must be from 0 to 1; got {tol!r}.")
        before = self.log_likelihood()
        for _ in range(max_iter):
            after = self.step()
            if (after - before) / len(self.x) < tol:
                return True
            before = after
        return False

    @property
    def log_likelihoods(self) -> list[float]:
        """The log-likelihood at the start and after every M-step (the curve that never goes down)."""
        return [h["log_likelihood"] for h in self.history if h["step"] in ("init", "M")]

    def mixture(self, converged: bool = False) -> Mixture:
        return Mixture(self.weights.clone(), self.means.clone(), self.covs.clone(), self.log_likelihoods, converged)


def fit(points, k: int, init: str = "k-means++", generator: torch.Generator | None = None,
        max_iter: int = MAX_ITER, tol: float = TOL, reg_covar: float = REG_COVAR) -> Mixture:
    """A k-component Gaussian mixture of ``points`` (N, D) by EM, to convergence.

    >>> mix = fit(points, 3, generator=torch.Generator().manual_seed(0))
    >>> new = sample(mix, 100, torch.Generator().manual_seed(1))[0]
    """
    em = EM(points, k, init, torch.Generator().manual_seed(0) if generator is None else generator, reg_covar)
    converged = em.run(max_iter, tol)
    return em.mixture(converged)


def sample(mixture: Mixture, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling: z ~ Categorical(π), then x ~ N(μ_z, Σ_z). Returns (x (n, D), z (n,))."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"Number of samples must be a whole number from 1 to 100000; got {n!r}.")
    z = torch.multinomial(mixture.weights, n, replacement=True, generator=generator)
    eps = torch.randn(n, mixture.means.shape[1], generator=generator, dtype=torch.float64)
    L = torch.linalg.cholesky(mixture.covs)
    return mixture.means[z] + torch.einsum("nij,nj->ni", L[z], eps), z


def ellipse(mean, cov, radius: float = 1.0):
    """Centre, width, height (full axes) and angle in degrees of the Mahalanobis-``radius`` ellipse
    of a 2-D normal: the contour (x - μ)ᵀ Σ⁻¹ (x - μ) = radius²."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    vals = np.clip(vals, 0, None)
    angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))  # direction of the larger axis
    return (float(mean[0]), float(mean[1])), 2 * radius * math.sqrt(vals[1]), 2 * radius * math.sqrt(vals[0]), angle


def match(mixture: Mixture, means) -> list[int]:
    """For each true mean, the fitted component nearest to it (a test's way to line components up)."""
    true = torch.as_tensor(np.asarray(means, dtype=np.float64))
    return torch.cdist(true, mixture.means).argmin(1).tolist()
