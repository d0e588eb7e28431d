"""The RealNVP tab: a small flow trained here on 2-D data (moons, rings or points you click), seen layer
by layer in both directions, with the exact log p of any clicked point split into the prior term and
each layer's log|det J|; then the shipped MNIST flow: bits/dim on its card, samples at a temperature,
and any test digit's log-likelihood taken apart.

The 2-D lab lives in the visitor's gr.State and draws its randomness from its own torch.Generator.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import data, evaluate
from models.core.family import check_range, last, seeded
from models.density import flow2d, realnvp
from studio import parts, widgets
from studio.tabs.gan_lab import canvas, pixel_to_plane
from studio.widgets import friendly, number, whole

TITLE = "RealNVP"
FAMILY = "realnvp"
PLANE_PX = 420  # the density map is PLANE_PX square and maps linearly onto [-EXTENT, EXTENT]²
VIEW = 4.0  # the layer view shows [-VIEW, VIEW]²: the prior's samples reach about ±3
FRAME_S = 0.5  # at most this often a frame while training
DIRECTIONS = {"data → prior (f)": "forward", "prior → data (f⁻¹)": "inverse"}
N_SHOWN = 800  # points drawn in the layer view
SHOWN_NATS = 8.0  # the density map's colours span the top 8 nats of log p


@dataclass
class Session:
    """One visitor's 2-D flow, and a lock so one training chunk or drawing runs at a time."""

    lab: flow2d.Lab
    lock: threading.Lock = field(default_factory=threading.Lock)


def new_session(dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty, learning_rate, seed,
                points) -> Session:
    config = flow2d.FlowConfig(dataset=str(dataset), couplings=whole(coupling_layers, "Coupling layers"),
                               hidden=whole(neurons_per_layer, "Neurons per layer"),
                               depth=whole(hidden_layers, "Hidden layers"), l2=number(l2_penalty, "L2 penalty"),
                               lr=number(learning_rate, "Learning rate"), seed=widgets.seed_of(seed))
    return Session(flow2d.make_lab(config, points=points))


def _session(session, settings) -> Session:
    return session if isinstance(session, Session) else new_session(*settings)


# --- drawing ---

def layer_view(lab: flow2d.Lab, direction: str, layer: int) -> np.ndarray:
    """The points and a grid after ``layer`` layers of f (data → prior) or of f⁻¹ (prior → data)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"Direction must be one of {list(DIRECTIONS)}; got {direction!r}.")
    k = whole(layer, "Layer")
    n_layers = len(lab.flow.layers)
    check_range("Layer", k, 0, n_layers)
    grid = flow2d.grid_lines(13, 60)
    fig = Figure(figsize=(5.4, 4.6), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    if DIRECTIONS[direction] == "forward":
        xs, lds = flow2d.stages(lab, lab.data[:N_SHOWN])
        lines = flow2d.stages(lab, grid.reshape(-1, 2))[0][k].reshape(grid.shape)
        pts, colour, label = xs[k], lds[k], "Σ log|det J| so far (nats)"
        title = f"data after {k} of {n_layers} layers of f" + (" = z" if k == n_layers else "")
    else:
        z = flow2d.prior_samples(lab, N_SHOWN, seed=0)
        zs = flow2d.generative_stages(lab, z)
        lines = flow2d.generative_stages(lab, grid.reshape(-1, 2) * 0.75)[k].reshape(grid.shape)
        pts, colour, label = zs[k], realnvp.standard_normal_logpdf(z), "log N(z) where the point started"
        title = f"prior samples after {k} of {n_layers} layers of f⁻¹" + (" = model samples" if k == n_layers else "")
    for line in lines.numpy():
        ax.plot(line[:, 0], line[:, 1], color="0.6", lw=0.5, alpha=0.7)
    lim = float(colour.abs().max()) or 1.0
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=colour.numpy(), s=5, cmap="coolwarm" if DIRECTIONS[direction] == "forward"
                    else "viridis", vmin=-lim if DIRECTIONS[direction] == "forward" else None,
                    vmax=lim if DIRECTIONS[direction] == "forward" else None)
    fig.colorbar(sc, ax=ax, shrink=0.8, label=label)
    ax.set_xlim(-VIEW, VIEW)
    ax.set_ylim(-VIEW, VIEW)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(title, fontsize=10)
    return widgets.figure_to_array(fig)


def density_map(lab: flow2d.Lab, marked=None) -> np.ndarray:
    """log p(x) over the plane (the axes fill the picture, so a click maps straight to a point), the data,
    and the clicked point with its path through the layers."""
    e = flow2d.EXTENT
    fig = Figure(figsize=(PLANE_PX / 100, PLANE_PX / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    logp = flow2d.density(lab, 90).numpy()
    low = logp.max() - SHOWN_NATS  # far below the peak is all the same black: the data's shape stays visible
    ax.imshow(logp.clip(low, None), extent=(-e, e, -e, e), cmap="magma", interpolation="bilinear")
    ax.scatter(lab.data[:300, 0], lab.data[:300, 1], s=2, color="#7fd4ff", alpha=0.6)
    if marked is not None:
        path = np.asarray(marked["path"])
        ax.plot(path[:, 0], path[:, 1], "-o", color="white", ms=3, lw=1)
        ax.plot(*path[0], "o", ms=8, mfc="none", mec="#00ff88", mew=2)
    ax.text(-e + 0.1, e - 0.35, f"log p(x): {low:.1f} nats or less (black) to {logp.max():.1f} (light)", fontsize=8,
            color="white")
    ax.set_xlim(-e, e)
    ax.set_ylim(-e, e)
    ax.set_xticks([])
    ax.set_yticks([])
    return widgets.figure_to_array(fig)


def curve(lab: flow2d.Lab) -> np.ndarray:
    fig = Figure(figsize=(5.0, 2.6), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    rows = list(lab.history)
    ax.plot([h["step"] for h in rows], [h["nll"] for h in rows], color="C0", label="training batch")
    ax.set_xlabel("step")
    ax.set_ylabel("−log p (nats per point)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return widgets.figure_to_array(fig)


def status(lab: flow2d.Lab, note: str = "") -> str:
    held = flow2d.held_out_nll(lab)
    c = lab.config
    return (f"step **{lab.step}** on {c.dataset}: held-out −log p **{held:.3f} nats per point** (2,000 fresh points); "
            f"{c.couplings} couplings of width {c.hidden} × {c.depth}, lr {c.lr:g}, L2 {c.l2:g}, seed {c.seed}."
            + (f" {note}" if note else ""))


def explanation(result: dict) -> str:
    rows = "\n".join(f"| layer {i + 1} log\\|det J\\| | {v:+.3f} |" for i, v in enumerate(result["log_det"]))
    x1, x2 = result["point"]
    z1, z2 = result["z"]
    return (f"Point ({x1:.2f}, {x2:.2f}) maps to z = ({z1:.2f}, {z2:.2f}).\n\n| term | nats |\n|---|---|\n"
            f"| prior log N(z; 0, I) | {result['prior']:+.3f} |\n{rows}\n"
            f"| Σ log\\|det J\\| | {sum(result['log_det']):+.3f} |\n| **log p(x)** (exact) | **{result['log_p']:+.3f}** |")


def views(session: Session, direction: str, layer: int, marked=None):
    with session.lock:
        lab = session.lab
        return layer_view(lab, direction, layer), density_map(lab, marked), curve(lab)


# --- handlers ---

@friendly
def lab_reset(session, direction, dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
              learning_rate, seed, points):
    """A fresh, untrained flow with these settings (the prior itself, warped by nothing yet)."""
    session = new_session(dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty, learning_rate,
                          seed, points)
    k = len(session.lab.flow.layers)
    return (session, gr.update(maximum=k, value=k), *views(session, direction, k),
            status(session.lab, "Press Train."))


@friendly
def lab_train(session, steps, direction, dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
              learning_rate, seed, points):
    """Train ``steps`` more steps, streaming the views (a visitor with no lab yet gets one with these settings)."""
    n = whole(steps, "Steps")
    check_range("Steps", n, 1, 20_000)
    session = _session(session, (dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
                                 learning_rate, seed, points))
    k = len(session.lab.flow.layers)
    done, next_frame = 0, time.time() + FRAME_S
    while done < n:
        chunk = min(25, n - done)
        with session.lock:
            flow2d.train(session.lab, chunk)
        done += chunk
        if done == n:
            yield (session, gr.update(maximum=k, value=k), *views(session, direction, k),
                   status(session.lab, f"Trained {n} steps."))
        elif time.time() > next_frame:  # the layer view and curve while training; the density map at the end
            t0 = time.time()
            with session.lock:
                frame = (layer_view(session.lab, direction, k), gr.update(), curve(session.lab))
            yield session, gr.update(maximum=k, value=k), *frame, status(session.lab, "Training…")
            next_frame = time.time() + max(FRAME_S, 3 * (time.time() - t0))  # drawing takes at most a quarter


@friendly
def lab_layers(session, direction, layer, dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
               learning_rate, seed, points):
    """The layer view after ``layer`` layers in the chosen direction."""
    session = _session(session, (dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
                                 learning_rate, seed, points))
    with session.lock:
        return session, layer_view(session.lab, direction, layer)


@friendly
def lab_point(session, x1, x2, dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
              learning_rate, seed, points):
    """The exact log p of the point (x₁, x₂): the prior term plus each layer's log|det J|."""
    session = _session(session, (dataset, coupling_layers, neurons_per_layer, hidden_layers, l2_penalty,
                                 learning_rate, seed, points))
    with session.lock:
        result = flow2d.explain_point(session.lab, number(x1, "x₁"), number(x2, "x₂"))
        return session, density_map(session.lab, result), explanation(result)


def plane_click(evt: gr.SelectData):
    """A click on the density map sets x₁, x₂ (their change then explains the point)."""
    x, y = pixel_to_plane(*evt.index[:2], size=PLANE_PX, extent=flow2d.EXTENT)
    return round(x, 3), round(y, 3)


def add_point(points, evt: gr.SelectData):
    px, py = evt.index
    points = list(points or []) + [list(pixel_to_plane(px, py, extent=flow2d.EXTENT))]
    return points, canvas(points, extent=flow2d.EXTENT, minimum=flow2d.MIN_POINTS)


def clear_points():
    return [], canvas([], extent=flow2d.EXTENT, minimum=flow2d.MIN_POINTS)


# --- MNIST ---

@friendly
def samples(checkpoint: str, seed, n, temperature):
    """Seeded samples z ~ N(0, T²I) run backwards through the flow, scored by the project's classifier."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of samples")
    check_range("Number of samples", n, 1, 100)
    t = number(temperature, "Temperature")
    images = last(realnvp.sample(model, n, generator=seeded(seed), temperature=t))
    picture = widgets.mosaic(images, int(np.ceil(np.sqrt(n))), pad=1, scale=3)
    md = f"seed {seed}, {n} samples at temperature {t:g}, checkpoint {checkpoint}"
    if n >= 2:
        s = evaluate.score(images, config.dataset)
        md += (f"  \nClassifier on these samples: confidence {s['confidence']:.2f}, class coverage "
               f"{s['class_coverage']:.0%}")
    record = parts.provenance(FAMILY, checkpoint, seed, n=n, temperature=t)
    return picture, *parts.publish(picture, record, md, f"{checkpoint}_seed{seed}_T{t:g}.png")


@friendly
def score(checkpoint: str, test_image):
    """One test digit's log-likelihood taken apart: prior term, the couplings' Σ log|det|, the logit
    transform's Jacobian and the −D log 256 of the /256 scaling, with bits/dim."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    x, y = realnvp.data(config, "test")[0]
    i = whole(test_image, "Test image")
    check_range("Test image", i, 0, len(x) - 1)
    with torch.no_grad():
        p = {k: float(v) for k, v in realnvp.log_prob_parts(model.eval(), x[i:i + 1], seeded(0)).items()}
    d = 784
    md = (f"Test image {i} (a {data.class_names(config.dataset)[int(y[i])]}):\n\n| term | nats |\n|---|---|\n"
          f"| prior log N(z) | {p['prior']:+.1f} |\n| couplings Σ log\\|det J\\| | {p['flow']:+.1f} |\n"
          f"| logit transform log\\|dw/dy\\| | {p['logit']:+.1f} |\n| scaling to 8-bit pixels −D log 256 | "
          f"{-d * math.log(256):+.1f} |\n| **log p(x)** | **{p['log_p']:+.1f}** |\n\n"
          f"**{realnvp.bits_per_dim(torch.tensor(p['log_p']), d):.3f} bits/dim** (uniform dequantisation, seed 0).")
    return widgets.mosaic(x[i:i + 1] / 255, 1, pad=0, scale=8), md


def train_config(dataset, width, blocks, *, steps, batch_size, lr):
    return realnvp.FAMILY.config("cpu", dataset=dataset, hidden=whole(width, "Width"),
                                 blocks=whole(blocks, "Residual blocks"), steps=steps, batch_size=batch_size, lr=lr)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A normalising flow is an invertible map f from data to a Gaussian. Each **affine coupling "
                "layer** keeps one part of x and scales and shifts the rest by amounts computed from it, so its "
                "Jacobian is triangular and **log p(x) = log N(f(x)) + Σ log|det J|** is exact. (Foster 2nd ed. "
                "ch. 6; Dinh et al. 2017.)")
    session = parts.visitor_state(None)
    points = parts.visitor_state([])
    with gr.Column():
        with gr.Accordion("2-D flow, trained here", open=True):
            with gr.Row():
                dataset = gr.Radio(list(flow2d.DATASETS), value="moons", label="Data (drawn: click points below)")
                couplings = gr.Slider(1, 16, value=6, step=1, label="Coupling layers")
                hidden = gr.Slider(4, 256, value=64, step=4, label="Neurons per layer")
                depth = gr.Slider(1, 4, value=2, step=1, label="Hidden layers")
            with gr.Row():
                l2 = gr.Number(value=0.0, label="L2 penalty (Foster: 0.01)")
                lr = gr.Number(value=2e-3, label="Learning rate")
                seed = widgets.seed_box()
                reset_btn = gr.Button("Reset", elem_id="realnvp-reset")
                steps = gr.Slider(25, 5000, value=300, step=25, label="Steps per click")
                train_btn = gr.Button("Train", variant="primary", elem_id="realnvp-lab-train")
            status_md = gr.Markdown(label="Lab status", elem_id="realnvp-lab-status")
            with gr.Row():
                with gr.Column():
                    direction = gr.Radio(list(DIRECTIONS), value="data → prior (f)", label="Direction")
                    layer = gr.Slider(0, 6, value=6, step=1, label="Layers applied", elem_id="realnvp-layer")
                    view_img = gr.Image(label="Layer by layer", format="png", interactive=False)
                with gr.Column():
                    plane = gr.Image(label="log p(x) over the plane: click a point", format="png", interactive=False,
                                     elem_id="realnvp-plane", height=PLANE_PX + 20, width=PLANE_PX + 20)
                    with gr.Row():
                        x1 = gr.Number(value=0.5, label="x₁")
                        x2 = gr.Number(value=0.25, label="x₂")
                        point_btn = gr.Button("Explain point")
                    point_md = gr.Markdown(label="log p of the point", elem_id="realnvp-point")
            curve_img = gr.Image(label="Training curve", format="png", interactive=False)
            with gr.Accordion("Draw your own distribution", open=False):
                gr.Markdown(f"Click to add points (at least {flow2d.MIN_POINTS}); each becomes a small blob of data. "
                            "Then choose **drawn** above and press Reset.")
                with gr.Row():
                    draw = gr.Image(value=canvas([], extent=flow2d.EXTENT, minimum=flow2d.MIN_POINTS),
                                    label="Canvas: the plane [-3, 3]²", format="png", interactive=False,
                                    height=340, width=340)
                    clear_btn = gr.Button("Clear points")
        with gr.Accordion("MNIST flow", open=True):
            gr.Markdown("The shipped image flow: checkerboard couplings at 28×28, a squeeze, then alternating "
                        "checkerboard and channel couplings at 14×14 and 7×7. Pixels are dequantised, "
                        "(x + u)/256, and logit-transformed; bits/dim is in the original 8-bit pixel space.")
            header = parts.checkpoint_header(page, FAMILY, "realnvp_mnist", "realnvp")
            ckpt = header.dropdown
            with gr.Row():
                m_seed = widgets.seed_box()
                m_n = gr.Slider(1, 100, value=36, step=1, label="Number of samples")
                temp = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
                sample_btn = gr.Button("Sample", variant="primary")
            sample_img = gr.Image(label="Samples", format="png", interactive=False, buttons=["download"])
            sample_out = parts.output_panel()
            with gr.Row():
                idx = gr.Number(value=0, precision=0, label="Test image (0–9999)")
                score_btn = gr.Button("Score test image")
            with gr.Row():
                digit = gr.Image(label="Test image", format="png", interactive=False, height=240)
                score_md = gr.Markdown(label="Log-likelihood, term by term")
            with parts.TrainPanel(header, "Train an image flow here (the shipped checkpoint's layout; it took about "
                                  "an hour on one CPU thread). Finished runs appear in the Checkpoint list.",
                                  steps_default=200, batches=(32, 64, 128), batch_default=64, run_name="my_realnvp",
                                  elem_id="realnvp-train") as train:
                t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                t_width = gr.Slider(8, 128, value=32, step=8, label="Width")
                t_blocks = gr.Slider(0, 4, value=1, step=1, label="Residual blocks")

    settings = [dataset, couplings, hidden, depth, l2, lr, seed, points]
    outs = [session, layer, view_img, plane, curve_img, status_md]
    page.action(reset_btn.click, lab_reset, [session, direction, *settings], outs, api_name="realnvp_lab_reset")
    page.on_load(lab_reset, [session, direction, *settings], outs)
    page.action(train_btn.click, lab_train, [session, steps, direction, *settings], outs,
                api_name="realnvp_lab_fit", show_progress_on=[status_md])
    for event, api in ((layer.change, "realnvp_lab_layers"), (direction.change, None)):
        if api:
            page.action(event, lab_layers, [session, direction, layer, *settings], [session, view_img],
                        api_name=api, show_progress="hidden")
        else:
            event(lab_layers, [session, direction, layer, *settings], [session, view_img], api_name=False,
                  show_progress="hidden")
    page.action(point_btn.click, lab_point, [session, x1, x2, *settings], [session, plane, point_md],
                api_name="realnvp_lab_point")
    plane.select(plane_click, None, [x1, x2], api_name=False).then(
        lab_point, [session, x1, x2, *settings], [session, plane, point_md], api_name=False)
    draw.select(add_point, points, [points, draw], api_name=False)
    clear_btn.click(clear_points, None, [points, draw], api_name=False)

    header.then(samples, [ckpt, m_seed, m_n, temp], [sample_img, *sample_out.outputs]) \
        .then(score, [ckpt, idx], [digit, score_md])
    page.action(sample_btn.click, samples, [ckpt, m_seed, m_n, temp], [sample_img, *sample_out.outputs],
                api_name="realnvp_samples")
    page.action(score_btn.click, score, [ckpt, idx], [digit, score_md], api_name="realnvp_score")
    train.wire(page, train_config, [t_data, t_width, t_blocks], ["bits_per_dim"], api_prefix="realnvp",
               names=["dataset", "width", "residual_blocks"])
