"""The normal distribution and the multivariate normal (Deep Learning from Scratch 5, ch. 1–3).

One dimension::

    N(x; μ, σ) = exp(-(x - μ)² / 2σ²) / √(2π σ²)

D dimensions, with a mean vector μ and a covariance matrix Σ that must be symmetric positive
definite (every eigenvalue > 0; in 2-D: σ₁² > 0, σ₂² > 0 and σ₁₂² < σ₁² σ₂²)::

    N(x; μ, Σ) = exp(-½ (x - μ)ᵀ Σ⁻¹ (x - μ)) / √((2π)ᴰ |Σ|)

Maximum likelihood: the μ and Σ that make a data set x₁ … x_N most probable are its sample mean
and its sample covariance divided by N (not N - 1)::

    μ̂ = (1/N) Σₙ xₙ,      Σ̂ = (1/N) Σₙ (xₙ - μ̂)(xₙ - μ̂)ᵀ

and the log-likelihood there is  -N/2 (D log 2π + log|Σ̂| + D). Densities are computed through
the Cholesky factor Σ = L Lᵀ (``torch.linalg.cholesky``), which also is the positive-definiteness
check: it fails exactly when Σ is not.

The data sets are real tables shipped in ``assets/data`` (Galton's 1886 family heights, Old Faithful)
plus seeded toy shapes; :func:`read_csv` reads a user's two-column CSV. The book's own height and
height/weight tables (25,000 Hong Kong children) ship in no package, so Galton's heights stand in.
"""
from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.core import ASSETS

DATA = ASSETS / "data"
INCH = 2.54  # Galton measured in inches; the book works in cm
MAX_ROWS = 200_000  # an uploaded CSV longer than this is refused
MAX_ABS = 1e12  # coordinates beyond this are refused (their squares would overflow a density)


# --- checks ---------------------------------------------------------------------------------------

def as_points(points, name: str = "Data", dim: int | None = 2, min_points: int = 1) -> torch.Tensor:
    """``points`` as a float64 (N, D) tensor, refused clearly when it is not finite numbers of that shape."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu()
    try:
        x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers in an (N, {dim or 'D'}) array.") from None
    if x.ndim == 1 and dim == 1:
        x = x[:, None]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{name} must be an (N, {dim or 'D'}) array of points; got shape {tuple(x.shape)}.")
    if len(x) < min_points:
        raise ValueError(f"{name} needs at least {min_points} points; got {len(x)}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has a missing, NaN or infinite value.")
    if x.abs().max() > MAX_ABS:
        raise ValueError(f"{name} has values beyond ±{MAX_ABS:g}; rescale it first.")
    return x


def check_covariance(cov, name: str = "Σ") -> torch.Tensor:
    """Σ as a float64 (D, D) tensor if it is a valid covariance (symmetric, positive definite), else a
    ValueError that says which condition fails and by how much."""
    try:
        s = torch.as_tensor(np.asarray(cov, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a square matrix of numbers.") from None
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"{name} must be a square matrix; got shape {tuple(s.shape)}.")
    if not torch.isfinite(s).all():
        raise ValueError(f"{name} has a NaN or infinite entry.")
    if not torch.allclose(s, s.T, rtol=1e-9, atol=1e-12):
        raise ValueError(f"{name} must be symmetric (Σ = Σᵀ).")
    eig = torch.linalg.eigvalsh(s)
    scale = float(s.abs().max()) or 1.0
    if eig.min() <= 1e-12 * scale:
        if s.shape[0] == 2:
            a, b, c = float(s[0, 0]), float(s[1, 1]), float(s[0, 1])
            why = (f"a variance is {min(a, b):g} (it must be > 0)" if min(a, b) <= 0 else
                   f"the covariance² {c * c:.4g} is not below σ₁²·σ₂² = {a * b:.4g} (|correlation| "
                   f"{abs(c) / math.sqrt(a * b):.3f} must be < 1)")
        else:
            why = f"its smallest eigenvalue is {float(eig.min()):.3g}"
        raise ValueError(f"{name} is not positive definite: {why}. A covariance must have every "
                         "eigenvalue > 0, or the density has no volume in some direction.")
    return s


def is_positive_definite(cov) -> bool:
    try:
        check_covariance(cov)
        return True
    except ValueError:
        return False


# --- densities ------------------------------------------------------------------------------------

def normal_pdf(x, mu: float, sigma: float) -> torch.Tensor:
    """N(x; μ, σ) for a 1-D normal (σ > 0)."""
    if not sigma > 0 or not math.isfinite(sigma) or not math.isfinite(mu):
        raise ValueError(f"σ must be a finite number > 0 and μ finite; got μ={mu}, σ={sigma}.")
    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.exp(-((x - mu) ** 2) / (2 * sigma ** 2)) / math.sqrt(2 * math.pi * sigma ** 2)


def mvn_log_pdf(x, mu, cov) -> torch.Tensor:
    """log N(x; μ, Σ) for each row of ``x`` (N, D), through Σ's Cholesky factor."""
    mu = torch.as_tensor(np.asarray(mu, dtype=np.float64))
    cov = check_covariance(cov)
    x = torch.as_tensor(x, dtype=torch.float64)
    return cholesky_log_pdf(x, mu, torch.linalg.cholesky(cov))


def cholesky_log_pdf(x, mu, L) -> torch.Tensor:
    """log N for x (N, D), μ (..., D), L lower Cholesky (..., D, D) (a batch of components gives
    (..., N)): with y = L⁻¹(x - μ), |y|² is the squared Mahalanobis distance and log|Σ| = 2 Σ log Lᵢᵢ.
    L⁻¹ is a tiny D×D triangular solve; applying it as a matrix product is far faster than a solve
    against all N points."""
    d = x.shape[-1]
    eye = torch.eye(d, dtype=L.dtype).expand_as(L)
    L_inv = torch.linalg.solve_triangular(L, eye, upper=False)  # (..., D, D)
    y = (x - mu[..., None, :]) @ L_inv.transpose(-1, -2)  # (..., N, D)
    maha = (y ** 2).sum(-1)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (d * math.log(2 * math.pi) + logdet[..., None] + maha)


def mvn_pdf(x, mu, cov) -> torch.Tensor:
    return mvn_log_pdf(x, mu, cov).exp()


def density_grid(mu, cov, xlim, ylim, n: int = 120):
    """The 2-D density on an n×n grid: (X, Y, Z) numpy arrays for contour and surface plots."""
    xs = np.linspace(*xlim, n)
    ys = np.linspace(*ylim, n)
    X, Y = np.meshgrid(xs, ys)
    pts = np.stack([X.ravel(), Y.ravel()], 1)
    Z = mvn_pdf(pts, mu, cov).numpy().reshape(n, n)
    return X, Y, Z


def sample(mu, cov, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points (n, D) from N(μ, Σ): x = μ + L ε with ε ~ N(0, I) drawn from ``generator``."""
    if not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"Number of samples must be a whole number from 1 to 100000; got {n!r}.")
    mu = torch.as_tensor(np.asarray(mu, dtype=np.float64))
    L = torch.linalg.cholesky(check_covariance(cov))
    eps = torch.randn(n, len(mu), generator=generator, dtype=torch.float64)
    return mu + eps @ L.T


# --- maximum likelihood ---------------------------------------------------------------------------

@dataclass
class Fit:
    """A maximum-likelihood Gaussian: its parameters and the data's log-likelihood under them."""

    mu: torch.Tensor  # (D,)
    cov: torch.Tensor  # (D, D), divided by N
    log_likelihood: float  # Σₙ log N(xₙ; μ̂, Σ̂), nats
    n: int

    @property
    def per_point(self) -> float:
        return self.log_likelihood / self.n


def fit(points) -> Fit:
    """The maximum-likelihood normal of ``points`` (N, D); a data set whose covariance is singular
    (all points on a line, or repeated) has no such normal, and is refused saying so."""
    x = as_points(points, dim=None, min_points=2)
    mu = x.mean(0)
    centred = x - mu
    cov = centred.T @ centred / len(x)
    try:
        check_covariance(cov, "The data's covariance")
    except ValueError as e:
        raise ValueError(f"{e} Here the points lie on a line (or on one point), so no normal fits them: "
                         "its likelihood grows without bound as Σ shrinks onto that line.") from None
    ll = float(cholesky_log_pdf(x, mu, torch.linalg.cholesky(cov)).sum())
    return Fit(mu, cov, ll, len(x))


def log_likelihood(points, mu, cov) -> float:
    """Σₙ log N(xₙ; μ, Σ) of a data set under given parameters."""
    x = as_points(points, dim=len(np.atleast_1d(mu)))
    return float(mvn_log_pdf(x, mu, cov).sum())


# --- data sets ------------------------------------------------------------------------------------

@dataclass
class Table:
    """A 2-D data set: points (N, 2) and what its axes are."""

    points: torch.Tensor
    xlabel: str
    ylabel: str
    title: str
    source: str = ""


@functools.lru_cache(maxsize=None)
def _galton() -> tuple[dict, ...]:
    with open(DATA / "galton-families.csv", newline="") as f:
        return tuple(csv.DictReader(f))


def heights(who: str = "sons") -> torch.Tensor:
    """Galton's adult children's heights in cm (1886; 934 children of 205 families): 'sons',
    'daughters' or 'all' (then two normals overlap: a job for a mixture)."""
    pick = {"sons": ("male",), "daughters": ("female",), "all": ("male", "female")}
    if who not in pick:
        raise ValueError(f"Heights of {who!r}: choose from {sorted(pick)}.")
    return torch.tensor([float(r["child"]) * INCH for r in _galton() if r["gender"] in pick[who]],
                        dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def _faithful() -> torch.Tensor:
    with open(DATA / "faithful.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return torch.tensor([[float(a), float(b)] for a, b in rows], dtype=torch.float64)


def _toy(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    if name == "tilted blob":  # one known normal: the fit should recover it
        return sample(TOY_MU, TOY_COV, n, g)
    if name == "three blobs":  # a known mixture of three (see TOY_MIXTURE)
        w, means, covs = TOY_MIXTURE
        z = torch.multinomial(torch.tensor(w, dtype=torch.float64), n, replacement=True, generator=g)
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        L = torch.linalg.cholesky(torch.tensor(covs, dtype=torch.float64))
        return torch.tensor(means, dtype=torch.float64)[z] + torch.einsum("nij,nj->ni", L[z], eps)
    if name == "banana":  # not normal at all: a normal's fit is the best ellipse, and poor
        t = torch.randn(n, generator=g, dtype=torch.float64)
        return torch.stack([1.5 * t, 0.6 * t ** 2 - 1 + 0.25 * torch.randn(n, generator=g, dtype=torch.float64)], 1)
    if name == "ring":
        a = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        r = 2 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
        return torch.stack([r * a.cos(), r * a.sin()], 1)
    raise ValueError(f"Unknown data set {name!r}; choose from {DATASETS}.")


TOY_MU = (1.0, -0.5)
TOY_COV = ((2.0, 1.2), (1.2, 1.5))
TOY_MIXTURE = ((0.5, 0.3, 0.2),  # weights π
               ((-3.0, -1.0), (2.5, 2.5), (3.0, -2.5)),  # means μ_k
               (((1.0, 0.5), (0.5, 0.8)), ((0.6, -0.3), (-0.3, 1.2)), ((0.3, 0.0), (0.0, 0.3))))  # Σ_k
TOY_POINTS = 500
REAL = ("Old Faithful (eruption, waiting)", "Galton (mid-parent, child height)")
DATASETS = REAL + ("tilted blob", "three blobs", "banana", "ring")


def dataset(name: str, generator: torch.Generator | None = None, n: int = TOY_POINTS) -> Table:
    """A named 2-D data set: the shipped real tables, or a toy shape drawn from ``generator``."""
    if name == REAL[0]:
        return Table(_faithful(), "eruption time (min)", "waiting time to the next eruption (min)",
                     "Old Faithful geyser, 272 eruptions", "R's datasets::faithful (Härdle 1991), via plotnine")
    if name == REAL[1]:
        rows = _galton()
        pts = torch.tensor([[float(r["midparent"]) * INCH, float(r["child"]) * INCH] for r in rows],
                           dtype=torch.float64)
        return Table(pts, "mid-parent height (cm)", "adult child's height (cm)",
                     f"Galton 1886, {len(rows)} children", "Galton's notebook via R's HistData::GaltonFamilies")
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose from {', '.join(DATASETS)}.")
    if generator is None:
        raise ValueError("A toy data set needs a generator (a seed).")
    return Table(_toy(name, n, generator), "x₁", "x₂", f"{name}, {n} points (seeded)")


def read_csv(path_or_text, name: str | None = None) -> Table:
    """A user's CSV of exactly two numeric columns (an optional header row names the axes). Text in
    a data row, a single column, too few rows or too many are refused with the line that is wrong."""
    if isinstance(path_or_text, (str, Path)) and is_file(path_or_text):
        path = Path(path_or_text)
        name = name or path.name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{name} is not a UTF-8 text file: upload a CSV of two numeric columns.") from None
    elif isinstance(path_or_text, str):
        text, name = path_or_text, name or "The CSV"
    else:
        raise ValueError("Upload a CSV file of two numeric columns.")
    if len(text) > 50_000_000:
        raise ValueError(f"{name} is too large (more than 50 MB).")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t ")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    rows = [[c.strip() for c in r if c.strip() != ""] for r in rows]
    if not rows:
        raise ValueError(f"{name} is empty: it needs two numeric columns, one point per line.")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = rows[0], rows[1:]
    if header is not None and len(header) != 2:
        raise ValueError(f"{name} has {len(header)} column{'s' if len(header) != 1 else ''} "
                         f"({', '.join(header)[:80]}); it needs exactly two numeric columns (x, y).")
    points = []
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) != 2:
            raise ValueError(f"{name}, line {line}: {len(row)} column{'s' if len(row) != 1 else ''}; "
                             "every line needs exactly two numbers (x, y).")
        bad = [c for c in row if not _is_number(c)]
        if bad:
            raise ValueError(f"{name}, line {line}: {bad[0][:40]!r} is not a number; every value must be numeric.")
        points.append([float(c) for c in row])
        if len(points) > MAX_ROWS:
            raise ValueError(f"{name} has more than {MAX_ROWS:,} rows.")
    x = as_points(points, name, dim=2, min_points=3)
    xl, yl = header if header else ("x₁ (column 1)", "x₂ (column 2)")
    return Table(x, xl[:40], yl[:40], f"{name[:60]}, {len(x)} points", "your upload")


def is_file(path) -> bool:
    """Whether ``path`` names an existing file; False (not an error) for names no file can have
    (too long, a NUL byte)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError, TypeError):
        return False


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False
