"""The GMMN tab (Goodfellow et al. §20.10.5; Li et al. 2015): samples of the shipped MNIST generator
trained by maximum mean discrepancy; a 2-D lab that trains one here with a single kernel bandwidth or
a mixture of them; a view of how the batch size changes the MMD estimate and its spread; and training
an MNIST GMMN in the page.

The 2-D lab lives in the visitor's gr.State and draws from its own torch.Generator.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import evaluate
from models.core.family import check_range, last, seeded
from models.image import gmmn
from studio import parts, widgets
from studio.widgets import friendly, number, whole

TITLE = "GMMN"
FAMILY = "gmmn"
DATASETS = ["grid", "ring", "moons"]
KERNELS = ["mixture", "single"]
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)
FRAME_S = 0.5
SHOWN = 1000  # points drawn in the lab's scatter


@dataclass
class Session:
    lab: gmmn.Lab2D
    lock: threading.Lock = field(default_factory=threading.Lock)


def bandwidths_of(kernel: str, bandwidth) -> tuple:
    if kernel not in KERNELS:
        raise ValueError(f"Unknown kernel choice {kernel!r}; choose from {KERNELS}.")
    if kernel == "mixture":
        return gmmn.LAB_BANDWIDTHS["mixture"]
    return gmmn.check_bandwidths([number(bandwidth, "Bandwidth σ")])


def new_session(dataset, kernel, bandwidth, batch_size, learning_rate, seed) -> Session:
    b = whole(batch_size, "Batch size")
    return Session(gmmn.make_lab2d(str(dataset), bandwidths_of(kernel, bandwidth), b,
                                   number(learning_rate, "Learning rate"), seed=widgets.seed_of(seed)))


def _session(session, settings) -> Session:
    return session if isinstance(session, Session) else new_session(*settings)


# --- drawing ---

def lab_picture(lab: gmmn.Lab2D) -> np.ndarray:
    g = seeded(7)
    with torch.no_grad():
        real, fake = gmmn.lab_real(lab, SHOWN, g), gmmn.lab_fake(lab, SHOWN, g)
    fig = Figure(figsize=(4.6, 4.6), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(real[:, 0], real[:, 1], s=3, color="C0", alpha=0.5, label="data")
    ax.scatter(fake[:, 0], fake[:, 1], s=3, color="C3", alpha=0.5, label="G(z)")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"step {lab.step}, σ = {', '.join(f'{b:g}' for b in lab.bandwidths)}", fontsize=9)
    return widgets.figure_to_array(fig)


def curve(lab: gmmn.Lab2D) -> np.ndarray:
    fig = Figure(figsize=(4.8, 2.8), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    rows = list(lab.history)
    ax.plot([r["step"] for r in rows], [r["mmd2"] for r in rows], color="C0", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("MMD² of the training batch")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return widgets.figure_to_array(fig)


def status(lab: gmmn.Lab2D, note: str = "") -> str:
    g = seeded(12345)
    with torch.no_grad():
        held = float(gmmn.mmd2(gmmn.lab_real(lab, 1000, g), gmmn.lab_fake(lab, 1000, g), lab.bandwidths, True))
    return (f"step **{lab.step}** on {lab.dataset}, batch {lab.batch_size}: MMD² on 1,000 fresh points **{held:.4f}** "
            f"(unbiased; about 0 when G matches the data)." + (f" {note}" if note else ""))


# --- handlers ---

@friendly
def lab_reset(session, dataset, kernel, bandwidth, batch_size, learning_rate, seed):
    """A fresh, untrained generator with these settings."""
    session = new_session(dataset, kernel, bandwidth, batch_size, learning_rate, seed)
    return session, lab_picture(session.lab), curve(session.lab), status(session.lab, "Press Train.")


@friendly
def lab_train(session, steps, dataset, kernel, bandwidth, batch_size, learning_rate, seed):
    """``steps`` more steps, streaming the scatter and the curve."""
    n = whole(steps, "Steps")
    check_range("Steps", n, 1, 5000)
    session = _session(session, (dataset, kernel, bandwidth, batch_size, learning_rate, seed))
    done, next_frame = 0, time.time() + FRAME_S
    while done < n:
        chunk = min(25, n - done)
        with session.lock:
            gmmn.train2d(session.lab, chunk)
        done += chunk
        if done == n or time.time() > next_frame:
            with session.lock:
                view = lab_picture(session.lab), curve(session.lab)
                note = status(session.lab, f"Trained {n} steps." if done == n else "Training…")
            yield session, *view, note
            next_frame = time.time() + FRAME_S


def spread_plot(rows_same, rows_model) -> np.ndarray:
    fig = Figure(figsize=(6.0, 3.4), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    for rows, colour, label in ((rows_same, "C0", "data vs data (true MMD = 0)"), (rows_model, "C3", "data vs G")):
        b = [r["batch_size"] for r in rows]
        m = np.array([r["mean"] for r in rows])
        s = np.array([r["std"] for r in rows])
        ax.plot(b, m, "o-", color=colour, label=label)
        ax.fill_between(b, m - s, m + s, color=colour, alpha=0.2)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (points on each side)")
    ax.set_ylabel("MMD² estimate (mean ± 1 s.d.)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return widgets.figure_to_array(fig)


@friendly
def mmd_spread(session, repeats, dataset, kernel, bandwidth, batch_size, learning_rate, seed):
    """The unbiased MMD² estimate over many batches of each size: data against data (the truth is 0)
    and data against the lab's generator; the spread shrinks as the batch grows."""
    r = whole(repeats, "Repeats")
    check_range("Repeats", r, 2, 200)
    session = _session(session, (dataset, kernel, bandwidth, batch_size, learning_rate, seed))
    g = seeded(99)
    with session.lock, torch.no_grad():
        lab = session.lab
        real_a, real_b, fake = gmmn.lab_real(lab, 4096, g), gmmn.lab_real(lab, 4096, g), gmmn.lab_fake(lab, 4096, g)
        same = gmmn.estimate_spread(real_a, real_b, lab.bandwidths, BATCH_SIZES, r, g)
        model = gmmn.estimate_spread(real_a, fake, lab.bandwidths, BATCH_SIZES, r, g)
    rows = "\n".join(f"| {a['batch_size']} | {a['mean']:+.4f} ± {a['std']:.4f} | {b['mean']:+.4f} ± {b['std']:.4f} |"
                     for a, b in zip(same, model))
    md = ("| batch | data vs data | data vs G |\n|---|---|---|\n" + rows
          + f"\n\n{r} batches per size. At small batches the estimate of data against G can be as low as data "
            "against itself: the loss cannot tell them apart, which is why GMMNs train on large batches.")
    return spread_plot(same, model), md


@friendly
def samples(checkpoint: str, seed, n):
    """Seeded samples from the MNIST GMMN, scored by the project's classifier."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    seed, k = widgets.seed_of(seed), whole(n, "Number of samples")
    check_range("Number of samples", k, 2, 100)
    x = last(gmmn.sample(model, k, generator=seeded(seed)))
    picture = widgets.mosaic(x, int(np.ceil(np.sqrt(k))), pad=1, scale=3)
    s = evaluate.score(x, config.dataset)
    caption = (f"seed {seed}, {k} samples, checkpoint {checkpoint}  \nClassifier on these samples: confidence "
               f"{s['confidence']:.2f}, class coverage {s['class_coverage']:.0%}")
    record = parts.provenance(FAMILY, checkpoint, seed, n=k)
    return picture, *parts.publish(picture, record, caption, f"{checkpoint}_seed{seed}.png")


def train_config(space, ae_steps, *, steps, batch_size, lr):
    if space not in gmmn.SPACES:
        raise ValueError(f"Unknown space {space!r}; choose from {gmmn.SPACES}.")
    overrides = {} if space == "code" else {"space": "pixels", "bandwidths": gmmn.GMMNConfig.bandwidths,
                                            "noise_dim": 10, "hidden": (64, 256, 256, 1024)}
    return gmmn.FAMILY.config("cpu", **overrides, ae_steps=whole(ae_steps, "Autoencoder steps") if space == "code"
                              else 0, steps=steps, batch_size=batch_size, lr=lr)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A **generative moment-matching network** is a generator trained without a discriminator: its "
                "loss is the **maximum mean discrepancy** between a batch of data and a batch of samples, "
                "MMD² = mean k(x, x′) − 2 mean k(x, y) + mean k(y, y′) with a Gaussian kernel k of bandwidth σ "
                "(zero exactly when the distributions match). (Goodfellow et al. §20.10.5; Li et al. 2015.)")
    session = parts.visitor_state(None)
    with gr.Accordion("2-D lab, trained here", open=True):
        with gr.Row():
            dataset = gr.Radio(DATASETS, value="grid", label="Data")
            kernel = gr.Radio(KERNELS, value="mixture", label="Kernel (mixture: σ = 0.05 … 2)")
            bandwidth = gr.Slider(0.01, 5, value=0.2, step=0.01, label="Bandwidth σ (single)")
            batch = gr.Slider(8, 1024, value=256, step=8, label="Batch size")
            lr = gr.Number(value=5e-3, label="Learning rate")
            seed = widgets.seed_box()
        with gr.Row():
            reset_btn = gr.Button("Reset", elem_id="gmmn-reset")
            steps = gr.Slider(25, 5000, value=500, step=25, label="Steps per click")
            train_btn = gr.Button("Train", variant="primary", elem_id="gmmn-lab-train")
        status_md = gr.Markdown(label="Lab status", elem_id="gmmn-lab-status")
        with gr.Row():
            plane = gr.Image(label="Data and G's points", format="png", interactive=False)
            curve_img = gr.Image(label="Training curve", format="png", interactive=False)
        with gr.Row():
            repeats = gr.Slider(2, 200, value=30, step=1, label="Batches per size")
            spread_btn = gr.Button("Estimate MMD at each batch size", elem_id="gmmn-spread")
        with gr.Row():
            spread_img = gr.Image(label="MMD² estimate vs batch size", format="png", interactive=False)
            spread_md = gr.Markdown(label="Estimates")
    with gr.Accordion("MNIST GMMN", open=True):
        gr.Markdown("The shipped model is Li et al.'s **GMMN+AE**: an autoencoder is trained first, then the "
                    "generator matches the distribution of its 16-number codes, and the decoder turns generated "
                    "codes into digits (matching raw pixels gives blurrier digits).")
        header = parts.checkpoint_header(page, FAMILY, "gmmn_mnist", "gmmn")
        ckpt = header.dropdown
        with gr.Row():
            m_seed = widgets.seed_box()
            m_n = gr.Slider(2, 100, value=64, step=1, label="Number of samples")
            sample_btn = gr.Button("Sample", variant="primary", elem_id="gmmn-sample")
        sample_img = gr.Image(label="Samples", format="png", interactive=False)
        sample_out = parts.output_panel()
        with parts.TrainPanel(header, "Train an MNIST GMMN here (the shipped model's layout by default).",
                              steps_default=500, steps_max=20000, batches=(128, 256, 500, 1000), batch_default=500,
                              lr_default=1e-3, run_name="my_gmmn", elem_id="gmmn-train") as train:
            space = gr.Radio(list(gmmn.SPACES), value="code", label="Match")
            ae_steps = gr.Slider(0, 5000, value=200, step=50, label="Autoencoder steps first (code)")

    settings = [dataset, kernel, bandwidth, batch, lr, seed]
    outs = [session, plane, curve_img, status_md]
    page.action(reset_btn.click, lab_reset, [session, *settings], outs, api_name="gmmn_lab_reset")
    page.on_load(lab_reset, [session, *settings], outs)
    page.action(train_btn.click, lab_train, [session, steps, *settings], outs, api_name="gmmn_lab_fit",
                show_progress_on=[status_md])
    page.action(spread_btn.click, mmd_spread, [session, repeats, *settings], [spread_img, spread_md],
                api_name="gmmn_mmd_spread")
    header.then(samples, [ckpt, m_seed, m_n], [sample_img, *sample_out.outputs])
    page.action(sample_btn.click, samples, [ckpt, m_seed, m_n], [sample_img, *sample_out.outputs],
                api_name="gmmn_samples")
    train.wire(page, train_config, [space, ae_steps], ["reconstruction", "mmd2"], api_prefix="gmmn",
               names=["space", "ae_steps"])
