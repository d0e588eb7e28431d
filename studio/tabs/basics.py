"""The Gaussians & EM tab (Deep Learning from Scratch 5, ch. 1–6): the normal distribution and its
maximum-likelihood fit, the multivariate normal with Σ on sliders, gradient descent on the
Rosenbrock function with autograd, and a Gaussian mixture fitted by EM one step at a time.

Nothing here is trained or checkpointed: the maths is in ``models/density/gaussian.py``, ``gmm.py``
and ``descent.py``; each visitor's mixture and last descent live in their own gr.State.
"""
from __future__ import annotations

import csv
import json
import math
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from models.core.family import seeded
from models.density import descent, gaussian, gmm
from studio import parts, widgets
from studio.widgets import friendly, number, whole

TITLE = "Gaussians & EM"
FAMILY = "gaussians"  # the name in provenance records (not a registry family: nothing is trained)
YOUR_CSV = "your CSV"
DATA_CHOICES = [*gaussian.DATASETS, YOUR_CSV]
HEIGHTS = ("sons", "daughters", "all")
MVN_RANGE = 6.0  # the explorer's plane is [-MVN_RANGE, MVN_RANGE]²
MU_MAX, VAR_MAX, COV_MAX = 4.0, 6.0, 6.0  # slider ranges of the explorer
COLOURS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]]) / 255
FRAME_S = 0.5  # "Run to convergence" streams a frame at most this often
NO_CSV = {"csv_file": None}  # the API's value for "no upload" (the page's default)
DATA_NOTE = ("**Data.** The book's own height tables (25,000 Hong Kong children) ship in no installable package, "
              "so Galton's 1886 family heights stand in for them; Old Faithful is the book's GMM data.")


# --- checked inputs (every handler validates what the page or a script sends) --------------------

def choice(value, name: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got {value!r}.")
    return value


def table_of(data: str, csv_file, seed) -> gaussian.Table:
    """The chosen data set: a shipped table, a seeded toy shape, or the visitor's CSV."""
    data = choice(data, "Data", DATA_CHOICES)
    if data == YOUR_CSV:
        if not csv_file:
            raise ValueError("Upload a CSV of two numeric columns first (the box at the top of this tab).")
        path = csv_file.get("path") if isinstance(csv_file, dict) else csv_file
        if not isinstance(path, str) or not gaussian.is_file(path):
            raise ValueError("The CSV upload is missing or not a file: upload it again.")
        return gaussian.read_csv(path)
    return gaussian.dataset(data, seeded(widgets.seed_of(seed)))


def canvas(figsize=(6.0, 4.8)) -> Figure:
    return Figure(figsize=figsize, dpi=100, layout="constrained")


# --- 1-D normal -----------------------------------------------------------------------------------

@friendly
def normal(mu, sigma, heights: str):
    """N(μ, σ) from the sliders over a histogram of Galton's heights, with the maximum-likelihood
    normal and both log-likelihoods (the fit's is always the larger)."""
    mu, sigma = number(mu, "μ", 100, 250), number(sigma, "σ", 0.5, 50)
    who = choice(heights, "Heights", HEIGHTS)
    h = gaussian.heights(who)
    fit = gaussian.fit(h[:, None])
    mu_hat, sigma_hat = float(fit.mu[0]), math.sqrt(float(fit.cov[0, 0]))
    ll_yours = gaussian.log_likelihood(h[:, None], [mu], [[sigma ** 2]])
    fig = canvas((7.0, 3.8))
    ax = fig.add_subplot()
    edges = np.arange(float(h.min()) - gaussian.INCH / 2, float(h.max()) + gaussian.INCH, gaussian.INCH)  # Galton's inches
    ax.hist(h.numpy(), bins=edges, density=True, color="0.8", label=f"Galton: {who} ({len(h)})")
    xs = np.linspace(130, 215, 500)
    ax.plot(xs, gaussian.normal_pdf(xs, mu, sigma).numpy(), color="C3", lw=2, label=f"yours N({mu:.1f}, {sigma:.1f}²)")
    ax.plot(xs, gaussian.normal_pdf(xs, mu_hat, sigma_hat).numpy(), color="C0", lw=2, ls="--",
            label=f"ML fit N({mu_hat:.1f}, {sigma_hat:.1f}²)")
    ax.set_xlabel("height (cm)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    text = (f"Maximum likelihood: μ̂ = mean = **{mu_hat:.2f} cm**, σ̂ = √(mean squared deviation) = "
            f"**{sigma_hat:.2f} cm**. Log-likelihood of the {len(h)} heights: fit **{fit.log_likelihood:,.1f}** "
            f"nats, yours **{ll_yours:,.1f}** nats (no μ, σ does better than the fit).")
    if who == "all":
        text += " Sons and daughters together are two overlapping normals: see the mixture below."
    return widgets.figure_to_array(fig), text


@friendly
def normal_fit(heights: str):
    """Set the sliders to the maximum-likelihood μ̂, σ̂ of the chosen heights."""
    h = gaussian.heights(choice(heights, "Heights", HEIGHTS))
    return round(float(h.mean()), 2), round(float(h.std(correction=0)), 2)


# --- multivariate normal explorer -----------------------------------------------------------------

def _sigma(var1, var2, cov12):
    var1 = number(var1, "σ₁²", 0, VAR_MAX)
    var2 = number(var2, "σ₂²", 0, VAR_MAX)
    cov12 = number(cov12, "σ₁₂", -COV_MAX, COV_MAX)
    return [[var1, cov12], [cov12, var2]]


def surface(ax, X, Y, Z, title: str, xlabel: str = "x₁", ylabel: str = "x₂"):
    ax.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=False, rcount=60, ccount=60)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_zlabel("p(x)")
    ax.set_title(title, fontsize=9)


@friendly
def mvn(mu1, mu2, var1, var2, cov12, samples, seed):
    """Contours and a 3-D surface of N(μ, Σ) with seeded samples. A Σ that is not positive definite
    is not drawn: the status says which condition it breaks and the last views stay."""
    mu = [number(mu1, "μ₁", -MU_MAX, MU_MAX), number(mu2, "μ₂", -MU_MAX, MU_MAX)]
    cov = _sigma(var1, var2, cov12)
    n = whole(samples, "Samples", 0, 5000)
    seed = widgets.seed_of(seed)
    try:
        cov_t = gaussian.check_covariance(cov)
    except ValueError as e:
        a, b = cov[0][0], cov[1][1]
        limit = math.sqrt(max(a * b, 0.0))
        return (gr.update(), gr.update(),
                f"⚠ {e} With σ₁² = {a:g} and σ₂² = {b:g}, σ₁₂ must stay inside ±{limit * 0.999:.3g}. "
                "The plots show the last valid Σ.")
    e = MVN_RANGE
    X, Y, Z = gaussian.density_grid(mu, cov_t, (-e, e), (-e, e), 100)
    fig = canvas((5.2, 4.6))
    ax = fig.add_subplot()
    cs = ax.contourf(X, Y, Z, levels=14, cmap="viridis")
    fig.colorbar(cs, ax=ax, shrink=0.8, label="p(x)")
    if n:
        pts = gaussian.sample(mu, cov_t, n, seeded(seed)).numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color="white", alpha=0.6, label=f"{n} samples (seed {seed})")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlim(-e, e)
    ax.set_ylim(-e, e)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title("N(μ, Σ): contours", fontsize=10)
    fig3 = canvas((5.2, 4.6))
    surface(fig3.add_subplot(projection="3d"), X, Y, Z, "N(μ, Σ) as a surface")
    vals, _ = np.linalg.eigh(cov_t.numpy())
    rho = cov[0][1] / math.sqrt(cov[0][0] * cov[1][1])
    text = (f"Σ = [[{cov[0][0]:g}, {cov[0][1]:g}], [{cov[0][1]:g}, {cov[1][1]:g}]] is positive definite: "
            f"eigenvalues {vals[0]:.3g} and {vals[1]:.3g}, correlation ρ = {rho:.2f}, |Σ| = {np.prod(vals):.3g}. "
            f"Samples are μ + Lε with Σ = LLᵀ (Cholesky) and ε ~ N(0, I), seed {seed}.")
    return widgets.figure_to_array(fig), widgets.figure_to_array(fig3), text


# --- maximum-likelihood fit of a data set ---------------------------------------------------------

@friendly
def fit_data(data: str, csv_file, seed):
    """The maximum-likelihood normal of a data set: its contours over the points, its surface, μ̂, Σ̂
    and the log-likelihood."""
    table = table_of(data, csv_file, seed)
    x = table.points
    fit = gaussian.fit(x)
    lo, hi = x.min(0).values.numpy(), x.max(0).values.numpy()
    pad = (hi - lo) * 0.15 + 1e-9
    xlim, ylim = (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])
    X, Y, Z = gaussian.density_grid(fit.mu, fit.cov, xlim, ylim, 100)
    fig = canvas((5.4, 4.6))
    ax = fig.add_subplot()
    ax.contour(X, Y, Z, levels=8, cmap="viridis", alpha=0.5, linewidths=0.8)
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=5, color="0.25", alpha=0.6)
    for r in (1, 2):
        centre, w, h, angle = gmm.ellipse(fit.mu.numpy(), fit.cov.numpy(), r)
        ax.add_patch(Ellipse(centre, w, h, angle=angle, fill=False, color="C3", lw=2, ls="-" if r == 1 else "--"))
    ax.plot(*fit.mu.numpy(), "x", color="C3", ms=10, mew=2)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(table.xlabel)
    ax.set_ylabel(table.ylabel)
    ax.set_title(f"{table.title}: ML normal (1σ, 2σ)", fontsize=9)
    fig3 = canvas((5.2, 4.6))
    short = lambda label: label.split(" (")[0][:24]
    surface(fig3.add_subplot(projection="3d"), X, Y, Z, "the fitted density", short(table.xlabel), short(table.ylabel))
    m, c = fit.mu.numpy(), fit.cov.numpy()
    text = (f"**{table.title}**{' (' + table.source + ')' if table.source else ''}  \n"
            f"μ̂ = ({m[0]:.4g}, {m[1]:.4g}),  Σ̂ = [[{c[0, 0]:.4g}, {c[0, 1]:.4g}], [{c[1, 0]:.4g}, {c[1, 1]:.4g}]] "
            f"(the sample covariance divided by N)  \n"
            f"Log-likelihood **{fit.log_likelihood:,.2f} nats** ({fit.per_point:.4f} per point); no other normal "
            "gives these points a higher one.")
    return widgets.figure_to_array(fig), widgets.figure_to_array(fig3), text


def uploaded(csv_file):
    """An upload switches both data choices to the visitor's CSV (and says whether it reads)."""
    if not csv_file:
        return gr.update(), gr.update(), ""
    try:
        if not gaussian.is_file(csv_file):
            raise ValueError("The upload is missing: upload it again.")
        table = gaussian.read_csv(csv_file)
    except ValueError as e:
        return gr.update(), gr.update(), f"⚠ {e}"
    return YOUR_CSV, YOUR_CSV, f"Read **{table.title}** ({table.xlabel}, {table.ylabel})."


# --- gradient descent playground ------------------------------------------------------------------

GD_SIZE = (6.4, 5.0)  # inches at 100 dpi: the picture is 640×500 pixels
GD_AXES = (0.1, 0.1, 0.72, 0.82)  # left, bottom, width, height of the plot, as fractions: clicks map linearly


def to_plane(px: float, py: float) -> tuple[float, float]:
    """A pixel of the descent picture -> (x₀, x₁)."""
    (a0, a1), (b0, b1) = descent.EXTENT
    left, bottom, w, h = GD_AXES
    W, H = GD_SIZE[0] * 100, GD_SIZE[1] * 100
    return a0 + (px / W - left) / w * (a1 - a0), b0 + ((1 - py / H) - bottom) / h * (b1 - b0)


def to_pixel(x0: float, x1: float) -> tuple[float, float]:
    (a0, a1), (b0, b1) = descent.EXTENT
    left, bottom, w, h = GD_AXES
    W, H = GD_SIZE[0] * 100, GD_SIZE[1] * 100
    return (left + (x0 - a0) / (a1 - a0) * w) * W, (1 - (bottom + (x1 - b0) / (b1 - b0) * h)) * H


def plane(path: dict | None = None, arrow: tuple | None = None) -> np.ndarray:
    """The Rosenbrock function's contours (log-spaced), the last path if any, and a gradient arrow."""
    (a0, a1), (b0, b1) = descent.EXTENT
    xs, ys = np.linspace(a0, a1, 300), np.linspace(b0, b1, 300)
    X, Y = np.meshgrid(xs, ys)
    Z = descent.rosenbrock(X, Y)
    fig = Figure(figsize=GD_SIZE, dpi=100)
    ax = fig.add_axes(GD_AXES)
    cax = fig.add_axes((0.86, 0.1, 0.03, 0.82))
    cs = ax.contourf(X, Y, np.log10(Z + 1e-3), levels=30, cmap="viridis")
    ax.contour(X, Y, Z, levels=np.logspace(-1, 3.5, 10), colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(cs, cax=cax, label="log₁₀ f(x₀, x₁)")
    ax.plot(1, 1, "*", color="gold", ms=14, mec="k", label="minimum (1, 1)")
    if path:
        p = np.asarray(path["points"])
        ax.plot(p[:, 0], p[:, 1], "-", color="C3", lw=1.2, label=f"{path['optimizer']}, {path['steps']:,} steps")
        ax.plot(p[0, 0], p[0, 1], "o", color="white", mec="k", ms=6)
        ax.plot(p[-1, 0], p[-1, 1], "o", color="C3", mec="k", ms=6)
    if arrow:
        (x0, x1), (g0, g1) = arrow
        norm = math.hypot(g0, g1)
        if norm > 0:
            ax.annotate("", xy=(x0 - 0.5 * g0 / norm, x1 - 0.5 * g1 / norm), xytext=(x0, x1),
                        arrowprops=dict(arrowstyle="->", color="orange", lw=2.5))
        ax.plot(x0, x1, "o", color="orange", mec="k", ms=6, label="−∇f direction (autograd)")
    ax.set_xlim(a0, a1)
    ax.set_ylim(b0, b1)
    ax.set_xlabel("x₀")
    ax.set_ylabel("x₁")
    ax.set_title("Rosenbrock f = 100(x₁ − x₀²)² + (1 − x₀)²: click for the gradient", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return widgets.figure_to_array(fig)


@friendly
def descend(x0, x1, lr, iterations, optimizer):
    """Minimise the Rosenbrock function from (x0, x1): the path over the contours, f per step and the
    end point; the path is kept so a click can draw the gradient beside it."""
    x0, x1 = number(x0, "Start x₀", -10, 10), number(x1, "Start x₁", -10, 10)
    lr = number(lr, "Learning rate", 1e-7, 1)
    n = whole(iterations, "Iterations", 1, descent.MAX_ITERATIONS)
    optimizer = choice(optimizer, "Optimizer", descent.OPTIMIZERS)
    t = time.perf_counter()
    path = descent.descend(x0, x1, lr, n, optimizer)
    wall = time.perf_counter() - t
    keep = np.unique(np.linspace(0, len(path.points) - 1, min(len(path.points), 2000)).round().astype(int))
    kept = {"points": path.points[keep].tolist(), "optimizer": optimizer, "steps": len(path.points) - 1}
    fig = canvas((5.0, 3.2))
    ax = fig.add_subplot()
    ax.semilogy(np.arange(len(path.values)), path.values.clamp_min(1e-300).numpy(), color="C3")
    ax.set_xlabel("iteration")
    ax.set_ylabel("f (log scale)")
    ax.set_title("f along the path", fontsize=9)
    ax.grid(alpha=0.3)
    e0, e1 = path.end
    if path.diverged_at is not None:
        text = (f"⚠ **Diverged at iteration {path.diverged_at}**: with learning rate {lr:g} each step overshoots "
                f"the steep walls of the valley and x flies off (|x| > {descent.LIMIT:g} or f not finite). "
                "Try a smaller learning rate, e.g. the book's 0.001.")
    else:
        text = (f"After **{n:,}** steps of {optimizer} (lr {lr:g}): x = ({e0:.4f}, {e1:.4f}), f = "
                f"{float(path.values[-1]):.3g} (the minimum is f(1, 1) = 0); {wall:.2f} s on this machine.")
    return kept, plane(kept), widgets.figure_to_array(fig), text


@friendly
def gradient(x0, x1, path=None):
    """f and ∇f at (x0, x1) from autograd, as an arrow on the plane (over the last path, if any)."""
    x0, x1 = number(x0, "x₀", -10, 10), number(x1, "x₁", -10, 10)
    f, g = descent.gradient_at(x0, x1)
    if path is not None and not (isinstance(path, dict) and {"points", "optimizer", "steps"} <= set(path)):
        path = None
    text = (f"At (x₀, x₁) = ({x0:.3f}, {x1:.3f}): f = **{f:.4g}**, ∇f = (**{g[0]:.4g}**, **{g[1]:.4g}**) from "
            f"`y.backward()`, |∇f| = {math.hypot(*g):.4g}. The arrow points downhill (−∇f), drawn at a fixed length.")
    return plane(path, ((x0, x1), g)), text


def click_gradient(path, evt: gr.SelectData):
    """A click on the plane sets the gradient point to the clicked place."""
    x0, x1 = to_plane(*evt.index[:2])
    (a0, a1), (b0, b1) = descent.EXTENT
    return round(float(np.clip(x0, a0, a1)), 3), round(float(np.clip(x1, b0, b1)), 3)


# --- Gaussian mixture by EM -----------------------------------------------------------------------

@dataclass
class Session:
    """One visitor's mixture being stepped, with the settings it was started from."""

    em: gmm.EM
    table: gaussian.Table
    settings: tuple
    lock: threading.Lock = field(default_factory=threading.Lock)


def settings_of(data, csv_file, seed, k, init) -> tuple:
    path = csv_file.get("path") if isinstance(csv_file, dict) else csv_file
    return (data, path if data == YOUR_CSV else None, widgets.seed_of(seed), int(k), init)


def new_session(data, csv_file, seed, k, init) -> Session:
    k = whole(k, "k", 1, gmm.MAX_K)
    init = choice(init, "Start", gmm.INITS)
    table = table_of(data, csv_file, seed)
    em = gmm.EM(table.points, k, init, seeded(widgets.seed_of(seed)))
    return Session(em, table, settings_of(data, csv_file, seed, k, init))


def current(session, data, csv_file, seed, k, init) -> tuple[Session, str]:
    """The visitor's mixture if it was started from these settings; else a fresh start (said so)."""
    want = settings_of(choice(data, "Data", DATA_CHOICES), csv_file, seed, whole(k, "k", 1, gmm.MAX_K),
                       choice(init, "Start", gmm.INITS))
    if isinstance(session, Session) and session.settings == want:
        return session, ""
    note = "" if session is None else "The settings changed, so EM started afresh. "
    return new_session(data, csv_file, seed, k, init), note


def em_plane(session: Session, samples=None) -> np.ndarray:
    """The data coloured by responsibility (each point mixes its components' colours by γ), the
    components' 1σ and 2σ ellipses and means; ``samples`` (x, z) drawn over the data in grey."""
    em, table = session.em, session.table
    x = em.x.numpy()
    fig = canvas((5.8, 4.8))
    ax = fig.add_subplot()
    k = em.k
    if samples is None:
        gamma = (em.gamma if em.gamma is not None else gmm.e_step(em.x, em.weights, em.means, em.covs)[0]).numpy()
        colour = np.clip(gamma @ COLOURS[:k], 0, 1)
        ax.scatter(x[:, 0], x[:, 1], s=8, c=colour, alpha=0.8, linewidths=0)
    else:
        s, z = samples
        ax.scatter(x[:, 0], x[:, 1], s=8, color="0.75", alpha=0.8, linewidths=0, label="data")
        ax.scatter(s[:, 0], s[:, 1], s=9, c=COLOURS[z], marker="^", linewidths=0, alpha=0.85, label="samples")
        ax.legend(fontsize=7, loc="best")
    for j in range(k):
        mean, cov = em.means[j].numpy(), em.covs[j].numpy()
        for r in (1, 2):
            centre, w, h, angle = gmm.ellipse(mean, cov, r)
            ax.add_patch(Ellipse(centre, w, h, angle=angle, fill=False, color=COLOURS[j], lw=2 if r == 1 else 1,
                                 ls="-" if r == 1 else "--"))
        ax.plot(*mean, "X", color=COLOURS[j], mec="k", ms=10)
        ax.annotate(f"{j + 1}: π={float(em.weights[j]):.2f}", mean, xytext=(6, 6), textcoords="offset points",
                    fontsize=7, color="k")
    lo, hi = x.min(0), x.max(0)
    pad = (hi - lo) * 0.12 + 1e-9
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xlabel(table.xlabel)
    ax.set_ylabel(table.ylabel)
    last = em.history[-1]["step"]
    what = f"ancestral samples at iteration {em.iteration}" if samples is not None else f"iteration {em.iteration} (after {last})"
    ax.set_title(f"{table.title}: k={k}, {what}", fontsize=9)
    return widgets.figure_to_array(fig)


def em_curve(em: gmm.EM) -> np.ndarray:
    """The log-likelihood after every half-step (it never goes down) and the bound EM maximises."""
    h = em.history
    fig = canvas((5.2, 3.4))
    ax = fig.add_subplot()
    at = [r["iteration"] + (0.5 if r["step"] == "E" else 0.0) for r in h]  # an E-step sits halfway
    ax.plot(at, [r["log_likelihood"] for r in h], "-o", color="C0", ms=3, label="log-likelihood")
    b = [(t, r["elbo"]) for t, r in zip(at, h) if r["elbo"] is not None]
    if b:
        ax.plot(*zip(*b), "s", color="C1", ms=4, mfc="none", label="bound (ELBO) at (q, θ)")
    ax.set_xlabel("iteration (each E-step sits halfway to its M-step)")
    ax.set_ylabel("nats")
    ax.set_title("EM: log-likelihood never goes down", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return widgets.figure_to_array(fig)


def em_status(session: Session, note: str = "") -> str:
    em = session.em
    lls = em.log_likelihoods
    row = em.history[-1]
    gain = f", Δ {lls[-1] - lls[-2]:+.4g} over the last iteration" if len(lls) > 1 else ""
    weights = ", ".join(f"{float(w):.3f}" for w in em.weights)
    what = {"init": "Started: means from " + session.settings[4] + ", every Σ the data's variances, "
                    "equal weights. Press E-step.",
            "E": "E-step done: colours are the responsibilities γ; the bound now touches the log-likelihood. "
                 "Press M-step.",
            "M": "M-step done: π, μ, Σ re-estimated from γ. Press E-step (or Run)."}[row["step"]]
    return (f"{note}{what}  \nIteration **{em.iteration}**, log-likelihood **{row['log_likelihood']:,.3f}** nats "
            f"({row['log_likelihood'] / len(em.x):.4f} per point){gain}; weights π = ({weights}).")


def em_views(session: Session, note: str = ""):
    return session, em_plane(session), em_curve(session.em), em_status(session, note)


@friendly
def em_start(session, data, csv_file, seed, k, init):
    """A fresh mixture: k means from a random or k-means++ start (seeded)."""
    return em_views(new_session(data, csv_file, seed, k, init))


@friendly
def em_e(session, data, csv_file, seed, k, init):
    session, note = current(session, data, csv_file, seed, k, init)
    with session.lock:
        session.em.e()
    return em_views(session, note)


@friendly
def em_m(session, data, csv_file, seed, k, init):
    session, note = current(session, data, csv_file, seed, k, init)
    with session.lock:
        if session.em.gamma is None:
            note += "The M-step needs responsibilities, so an E-step ran first. "
        session.em.m()
    return em_views(session, note)


@friendly
def em_run(session, data, csv_file, seed, k, init, max_iterations):
    """Iterate E and M until the log-likelihood per point rises by less than 10⁻⁶, streaming frames."""
    n = whole(max_iterations, "Max iterations", 1, 5000)
    session, note = current(session, data, csv_file, seed, k, init)
    em, done = session.em, False
    start = em.iteration
    before = em.log_likelihood()
    while not done and em.iteration - start < n:
        with session.lock:  # held for one chunk of steps, never across a yield (a client may leave mid-run)
            t0 = time.time()
            while em.iteration - start < n and time.time() - t0 < FRAME_S:
                after = em.step()
                done = (after - before) / len(em.x) < gmm.TOL
                before = after
                if done:
                    break
            views = None if done or em.iteration - start >= n else em_views(session, note + "Running… ")
        if views is not None:
            yield views
    said = (f"Converged after {em.iteration - start} more iterations (gain per point below {gmm.TOL:g}). "
            if done else f"Stopped after {n} iterations without converging. ")
    yield em_views(session, note + said)


@friendly
def em_sample(session, data, csv_file, seed, k, init, samples, sample_seed):
    """Ancestral sampling from the visitor's mixture (fitted to convergence first if it has not been
    stepped yet): z ~ Categorical(π), then x ~ N(μ_z, Σ_z), over the data."""
    n = whole(samples, "Samples", 1, 20_000)
    sample_seed = widgets.seed_of(sample_seed)
    session, note = current(session, data, csv_file, seed, k, init)
    with session.lock:
        if session.em.iteration == 0:
            session.em.run()
            note += f"Fitted first: EM ran to convergence ({session.em.iteration} iterations). "
        mix = session.em.mixture()
    x, z = gmm.sample(mix, n, seeded(sample_seed))
    picture = em_plane(session, (x.numpy(), z.numpy()))
    counts = np.bincount(z.numpy(), minlength=mix.k)
    caption = (f"{note}{n} points drawn with seed **{sample_seed}** from the mixture at iteration "
               f"{session.em.iteration}: first a component z ~ Categorical(π), then "
               f"x ~ N(μ_z, Σ_z). Per component: {', '.join(f'{j + 1}: {c}' for j, c in enumerate(counts))}.")
    record = parts.provenance(FAMILY, None, sample_seed, data=session.settings[0], data_seed=session.settings[2],
                              k=mix.k, start=session.settings[4], iterations=session.em.iteration, samples=n,
                              weights=mix.weights.tolist(), means=mix.means.tolist(), covariances=mix.covs.tolist())
    png = parts.save_png(picture, record, f"gmm_k{mix.k}_seed{sample_seed}.png")
    table = widgets.export_path(f"gmm_k{mix.k}_seed{sample_seed}.csv")
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([session.table.xlabel, session.table.ylabel, "component"])
        w.writerows([[f"{a:.6g}", f"{b:.6g}", int(c) + 1] for (a, b), c in zip(x.tolist(), z.tolist())])
    table.with_suffix(".json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return session, picture, caption, record, [png, str(table)]


# --- layout ---------------------------------------------------------------------------------------

def build(page: parts.Page):
    gr.Markdown("The building blocks of the book's generative models (*Deep Learning from Scratch 5*, ch. 1–6): "
                "the normal distribution, the multivariate normal and its maximum-likelihood fit, gradient descent "
                "with autograd, and a Gaussian mixture fitted by EM, step by step.")
    gr.Markdown(DATA_NOTE)
    with gr.Row():
        csv_file = gr.File(label="Your data: a CSV of two numeric columns (optional header row); choose "
                                 f"“{YOUR_CSV}” below", file_types=[".csv", ".txt"], type="filepath", height=90,
                           elem_id="gaussians-csv")
        csv_note = gr.Markdown()
    with gr.Column():
        with gr.Accordion("The normal distribution: Galton's heights", open=True):
            with gr.Row():
                mu = gr.Slider(140, 210, value=170, step=0.1, label="μ (cm)")
                sigma = gr.Slider(1, 20, value=8, step=0.1, label="σ (cm)")
                heights = gr.Radio(list(HEIGHTS), value="sons", label="Heights of")
                fit1_btn = gr.Button("Set μ, σ to the maximum-likelihood fit", variant="primary",
                                     elem_id="gaussians-normal-fit")
            with gr.Row():
                normal_img = gr.Image(label="Heights and two normals", format="png", interactive=False, show_label=False, height=380)
                normal_md = gr.Markdown(label="Maximum likelihood")
        with gr.Accordion("Multivariate normal explorer", open=True):
            gr.Markdown("Σ = [[σ₁², σ₁₂], [σ₁₂, σ₂²]] must be positive definite: σ₁² > 0, σ₂² > 0 and "
                        "σ₁₂² < σ₁²σ₂². A value that breaks it is refused, and the status says why.")
            with gr.Row():
                mu1 = gr.Slider(-MU_MAX, MU_MAX, value=0.0, step=0.1, label="μ₁")
                mu2 = gr.Slider(-MU_MAX, MU_MAX, value=0.0, step=0.1, label="μ₂")
                var1 = gr.Slider(0, VAR_MAX, value=2.0, step=0.05, label="σ₁² (variance of x₁)")
                var2 = gr.Slider(0, VAR_MAX, value=1.0, step=0.05, label="σ₂² (variance of x₂)")
                cov12 = gr.Slider(-COV_MAX, COV_MAX, value=0.8, step=0.05, label="σ₁₂ (covariance)")
            with gr.Row():
                n_samples = gr.Slider(0, 5000, value=300, step=50, label="Samples")
                mvn_seed = widgets.seed_box(label="Sample seed")
                mvn_btn = gr.Button("Draw", variant="primary", elem_id="gaussians-mvn")
            mvn_md = gr.Markdown(label="Σ", elem_id="gaussians-mvn-status")
            with gr.Row():
                contour_img = gr.Image(label="Contours and samples", format="png", interactive=False, show_label=False, height=460)
                surface_img = gr.Image(label="3-D surface", format="png", interactive=False, show_label=False, height=460)
        with gr.Accordion("Maximum-likelihood fit of a data set", open=True):
            with gr.Row():
                fit_data_dd = gr.Dropdown(DATA_CHOICES, value=gaussian.REAL[1], label="Data")
                fit_seed = widgets.seed_box(label="Seed (toy shapes)")
                fit_btn = gr.Button("Fit a normal", variant="primary", elem_id="gaussians-fit")
            fit_md = gr.Markdown(label="Fitted normal")
            with gr.Row():
                fit_img = gr.Image(label="Data and the fitted normal", format="png", interactive=False, show_label=False, height=460)
                fit_surface = gr.Image(label="Fitted density", format="png", interactive=False, show_label=False, height=460)
        with gr.Accordion("Gradient descent playground: the Rosenbrock function", open=True):
            gr.Markdown("The book's loop: `y = rosenbrock(x0, x1); y.backward(); x -= lr * x.grad`, from (0, 2) "
                        "with learning rate 0.001 for 10,000 iterations. Click the plane for autograd's gradient.")
            path_state = parts.visitor_state(None)
            with gr.Row():
                gd_x0 = gr.Number(value=descent.BOOK["x0"], label="Start x₀")
                gd_x1 = gr.Number(value=descent.BOOK["x1"], label="Start x₁")
                gd_lr = gr.Number(value=descent.BOOK["lr"], label="Learning rate")
                gd_iters = gr.Slider(1, descent.MAX_ITERATIONS, value=descent.BOOK["iterations"], step=1,
                                     label="Iterations")
                gd_opt = gr.Radio(list(descent.OPTIMIZERS), value=descent.OPTIMIZERS[0], label="Optimizer")
                gd_btn = gr.Button("Descend", variant="primary", elem_id="gaussians-descend")
            gd_md = gr.Markdown(label="Descent", elem_id="gaussians-descend-status")
            with gr.Row():
                gd_img = gr.Image(label="Path over the contours (click for the gradient)", format="png",
                                  interactive=False, show_label=False, elem_id="gaussians-plane", height=500)
                with gr.Column():
                    gd_curve = gr.Image(label="f per iteration", format="png", interactive=False, show_label=False, height=320)
                    with gr.Row():
                        g_x0 = gr.Number(value=-1.0, label="Gradient at x₀")
                        g_x1 = gr.Number(value=1.0, label="Gradient at x₁")
                        g_btn = gr.Button("Gradient here", elem_id="gaussians-gradient")
                    g_md = gr.Markdown(label="Gradient", elem_id="gaussians-gradient-note")
        with gr.Accordion("Gaussian mixture by EM, step by step", open=True):
            em_state = parts.visitor_state(None)
            with gr.Row():
                em_data = gr.Dropdown(DATA_CHOICES, value=gaussian.REAL[0], label="Data")
                em_seed = widgets.seed_box(label="Seed (start and toy shapes)")
                em_k = gr.Slider(1, gmm.MAX_K, value=2, step=1, label="k (components)")
                em_init = gr.Radio(list(gmm.INITS), value=gmm.INITS[0], label="Start")
            with gr.Row():
                start_btn = gr.Button("New start", variant="primary", elem_id="gaussians-em-start")
                e_btn = gr.Button("E-step", elem_id="gaussians-em-e")
                m_btn = gr.Button("M-step", elem_id="gaussians-em-m")
                run_btn = gr.Button("Run to convergence", elem_id="gaussians-em-run")
                em_max = gr.Number(value=500, precision=0, label="Max iterations")
            em_md = gr.Markdown(label="EM status", elem_id="gaussians-em-status")
            with gr.Row():
                em_img = gr.Image(label="Points coloured by responsibility; 1σ and 2σ ellipses", format="png",
                                  interactive=False, show_label=False, elem_id="gaussians-em-plane", height=480)
                em_curve_img = gr.Image(label="Log-likelihood per step", format="png", interactive=False, show_label=False, height=340)
            gr.Markdown("**Ancestral sampling** from the fitted mixture: z ~ Categorical(π), then x ~ N(μ_z, Σ_z).")
            with gr.Row():
                s_n = gr.Slider(1, 5000, value=500, step=1, label="Samples")
                s_seed = widgets.seed_box(label="Sample seed")
                s_btn = gr.Button("Sample from the mixture", elem_id="gaussians-em-sample")
            s_img = gr.Image(label="Samples over the data", format="png", interactive=False, show_label=False, height=480)
            s_out = parts.output_panel("Download (PNG with provenance, CSV of the samples)", file_count="multiple")

    normal_in = [mu, sigma, heights]
    page.action(fit1_btn.click, normal_fit, [heights], [mu, sigma], api_name="gaussians_normal_fit") \
        .then(normal, normal_in, [normal_img, normal_md], api_name=False)
    on_normal = lambda fn, inputs, outputs, **kw: gr.on([mu.release, sigma.release, heights.change], fn, inputs,
                                                        outputs, **kw)
    page.action(on_normal, normal, normal_in, [normal_img, normal_md], api_name="gaussians_normal")
    mvn_in = [mu1, mu2, var1, var2, cov12, n_samples, mvn_seed]
    mvn_out = [contour_img, surface_img, mvn_md]
    page.action(mvn_btn.click, mvn, mvn_in, mvn_out, api_name="gaussians_mvn")
    gr.on([s.release for s in (mu1, mu2, var1, var2, cov12, n_samples)], mvn, mvn_in, mvn_out, api_name=False,
          show_progress="hidden")
    fit_in = [fit_data_dd, csv_file, fit_seed]
    page.action(fit_btn.click, fit_data, fit_in, [fit_img, fit_surface, fit_md], api_name="gaussians_fit",
                example=NO_CSV)
    fit_data_dd.change(fit_data, fit_in, [fit_img, fit_surface, fit_md], api_name=False)
    csv_file.upload(uploaded, csv_file, [fit_data_dd, em_data, csv_note], api_name=False)

    gd_in = [gd_x0, gd_x1, gd_lr, gd_iters, gd_opt]
    page.action(gd_btn.click, descend, gd_in, [path_state, gd_img, gd_curve, gd_md], api_name="gaussians_descend")
    page.action(g_btn.click, gradient, [g_x0, g_x1, path_state], [gd_img, g_md], api_name="gaussians_gradient")
    gd_img.select(click_gradient, path_state, [g_x0, g_x1], api_name=False) \
        .then(gradient, [g_x0, g_x1, path_state], [gd_img, g_md], api_name=False)

    em_in = [em_state, em_data, csv_file, em_seed, em_k, em_init]
    em_out = [em_state, em_img, em_curve_img, em_md]
    page.action(start_btn.click, em_start, em_in, em_out, api_name="gaussians_em_start", example=NO_CSV)
    page.action(e_btn.click, em_e, em_in, em_out, api_name="gaussians_em_e", example=NO_CSV)
    page.action(m_btn.click, em_m, em_in, em_out, api_name="gaussians_em_m", example=NO_CSV)
    page.action(run_btn.click, em_run, [*em_in, em_max], em_out, api_name="gaussians_em_run",
                show_progress_on=[em_md], example=NO_CSV)
    page.action(s_btn.click, em_sample, [*em_in, s_n, s_seed], [em_state, s_img, *s_out.outputs],
                api_name="gaussians_em_sample", example=NO_CSV)

    page.on_load(normal, normal_in, [normal_img, normal_md])
    page.on_load(mvn, mvn_in, mvn_out)
    page.on_load(fit_data, fit_in, [fit_img, fit_surface, fit_md])
    page.on_load(gradient, [g_x0, g_x1, path_state], [gd_img, g_md])  # the plane; Descend draws a path
    page.on_load(em_start, em_in, em_out)
