"""The Energy-based tab (Foster 2nd ed. ch. 7): samples of the shipped deep EBM from its replay buffer and
from fresh noise; a chain viewer that runs Langevin dynamics from noise, the buffer or a test digit with
step size, noise and steps as sliders and scrubs one chain's descent with its energy; Langevin chains
on 2-D energies drawn over a heatmap; and training in the page with the energy of real vs sampled
images (and the contrast against noise) plotted as it trains.

Per-visitor chain runs live in gr.State; every draw comes from a torch.Generator seeded by the page.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import data, evaluate
from models.core.family import check_range, seeded
from models.energy import ebm, toy2d
from studio import parts, widgets
from studio.widgets import friendly, number, whole

TITLE = "Energy-based"
FAMILY = "ebm"
STARTS = {"fresh noise": "noise", "replay buffer": "buffer", "a test digit": "image"}
MAX_SAMPLES = 64
MAX_CHAINS = 16
FRAME_S = 0.4  # at most this often a frame while a chain runs
TOY_PX = 440


def start_of(label: str) -> str:
    if label not in STARTS:
        raise ValueError(f"Unknown start {label!r}; choose from {list(STARTS)}.")
    return STARTS[label]


def test_digit(config, index) -> torch.Tensor:
    x, _ = data.images(config.dataset, "test")
    i = whole(index, "Test image")
    check_range("Test image", i, 0, len(x) - 1)
    return x[i:i + 1]


def scores_text(images, dataset: str) -> str:
    s = evaluate.score(images, dataset)
    return f"confidence {s['confidence']:.2f}, class coverage {s['class_coverage']:.0%}"


# --- samples: buffer and fresh noise ---

@friendly
def samples(checkpoint: str, seed, n, buffer_steps, fresh_steps):
    with torch.random.fork_rng(devices=[]):  # the chains draw from their own generator; the global RNG is left as it was
        return _samples(checkpoint, seed, n, buffer_steps, fresh_steps)


def _samples(checkpoint: str, seed, n, buffer_steps, fresh_steps):
    """Seeded samples two ways: chains drawn from the replay buffer and run ``buffer_steps`` more steps
    (what the card scores), and chains from fresh uniform noise run ``fresh_steps`` steps, both with the
    checkpoint's own step size, noise and clip."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    seed, n = widgets.seed_of(seed), whole(n, "Number of samples")
    check_range("Number of samples", n, 2, MAX_SAMPLES)
    kb, kf = whole(buffer_steps, "Steps after the buffer"), whole(fresh_steps, "Steps from noise")
    check_range("Steps after the buffer", kb, 0, 500)
    check_range("Steps from noise", kf, 0, 500)
    knobs = dict(step_size=config.step_size, noise=config.noise, grad_clip=config.grad_clip)
    buf = ebm.to_images(ebm._last(ebm.chain(model, n, seeded(seed), "buffer", kb, every=10**6, **knobs)).x)
    fresh = ebm.to_images(ebm._last(ebm.chain(model, n, seeded(seed), "noise", kf, every=10**6, **knobs)).x)
    cols = int(np.ceil(np.sqrt(n)))
    pic_b, pic_f = (widgets.mosaic(x, cols, pad=1, scale=3) for x in (buf, fresh))
    caption = (f"seed {seed}, {n} chains, checkpoint {checkpoint} (step size {config.step_size:g}, noise "
               f"{config.noise:g}, gradient clip {config.grad_clip:g}).  \nReplay buffer + {kb} steps: "
               f"{scores_text(buf, config.dataset)}.  \nFresh noise, {kf} steps: {scores_text(fresh, config.dataset)}.")
    record = parts.provenance(FAMILY, checkpoint, seed, n=n, buffer_steps=kb, fresh_steps=kf)
    return pic_b, pic_f, *parts.publish(pic_b, record, caption, f"{checkpoint}_buffer_seed{seed}.png")


# --- the chain viewer ---

@dataclass
class ChainRun:
    """One visitor's last chain run: its kept frames and every chain's energy at every step."""

    frames: parts.Frames
    energies: list = field(default_factory=list)  # per step: list of n energies
    steps: list = field(default_factory=list)  # the step of each energies row
    note: str = ""


def energy_plot(run: ChainRun, which: int | None = None, at_step: int | None = None) -> np.ndarray:
    fig = Figure(figsize=(5.2, 3.0), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    e = np.asarray(run.energies)  # (steps, n)
    if len(e):
        ax.plot(run.steps, e, color="0.7", lw=0.8)
        k = 0 if which is None else which
        ax.plot(run.steps, e[:, k], color="C3", lw=2, label=f"chain {k}")
        if at_step is not None:
            ax.axvline(at_step, color="k", ls=":", lw=1)
        ax.legend(fontsize=8)
    ax.set_xlabel("Langevin step")
    ax.set_ylabel("energy E(x) (lower = more probable)")
    ax.grid(alpha=0.3)
    return widgets.figure_to_array(fig)


def frame_view(run: ChainRun, i: int, which: int):
    step, images = run.frames.frame(i)
    x = images["x"]
    n = len(x)
    check_range("Chain", which, 0, n - 1)
    big = widgets.mosaic(x[which:which + 1], 1, pad=0, scale=8)
    k = run.steps.index(step) if step in run.steps else -1
    md = f"Step **{step}**: chain {which} has energy **{run.energies[k][which]:.4f}**."
    return big, energy_plot(run, which, step), md


@friendly
def chain_run(checkpoint: str, start: str, test_image, seed, chains, steps, step_size, noise):
    """Langevin chains streamed step by step; returns the run (for the scrubber), the chains' current
    states, the energy curves and a status line."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    seed, n = widgets.seed_of(seed), whole(chains, "Chains")
    check_range("Chains", n, 1, MAX_CHAINS)
    k = whole(steps, "Steps")
    check_range("Steps", k, 1, 1000)
    eta, sigma = number(step_size, "Step size"), number(noise, "Noise scale")
    where = start_of(start)
    init = test_digit(config, test_image) if where == "image" else None
    run = ChainRun(parts.Frames(k + 1))
    next_frame = 0.0
    cols = min(n, 8)
    for snap in ebm.chain(model, n, seeded(seed), where, k, eta, sigma, config.grad_clip, init=init):
        run.energies.append(snap.energy.tolist())
        run.steps.append(snap.step)
        images = ebm.to_images(snap.x).numpy()
        run.frames.add(snap.step, x=images)
        if time.time() > next_frame or snap.step == k:
            done = snap.step == k
            slider = gr.update(maximum=max(len(run.frames) - 1, 1), value=len(run.frames) - 1)
            md = (f"step {snap.step} of {k} from {start}, step size {eta:g}, noise {sigma:g}: mean energy "
                  f"**{float(snap.energy.mean()):.4f}**" + (" — done; scrub below." if done else " …"))
            yield run, widgets.mosaic(images, cols, pad=1, scale=3), energy_plot(run), slider, md
            next_frame = time.time() + FRAME_S


@friendly
def chain_scrub(run, frame, which):
    """One chain at one kept frame, large, with its energy marked on the curves."""
    if not isinstance(run, ChainRun):
        raise ValueError("Run a chain first.")
    i, w = whole(frame, "Frame"), whole(which, "Chain")
    return frame_view(run, i, w)


# --- 2-D energies ---

def toy_picture(name: str, snaps) -> np.ndarray:
    e = toy2d.EXTENT
    fig = Figure(figsize=(TOY_PX / 100, TOY_PX / 100), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    heat = toy2d.heatmap(name, 120).numpy()
    im = ax.imshow(heat.clip(None, np.quantile(heat, 0.9)), extent=(-e, e, -e, e), cmap="viridis_r",
                   interpolation="bilinear")
    fig.colorbar(im, ax=ax, shrink=0.75, label="energy E(x)")
    path = torch.stack([s.x for s in snaps]).numpy()  # (T, n, 2)
    for c in range(path.shape[1]):
        ax.plot(path[:, c, 0], path[:, c, 1], color="white", lw=0.7, alpha=0.8)
    ax.scatter(path[0, :, 0], path[0, :, 1], s=10, color="#ff8800", label="start", zorder=3)
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=14, color="#ff2050", label="end", zorder=3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlim(-e, e)
    ax.set_ylim(-e, e)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"{name}: Langevin chains over the energy", fontsize=9)
    return widgets.figure_to_array(fig)


def descent_plot(snaps) -> np.ndarray:
    fig = Figure(figsize=(5.0, 3.0), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    e = torch.stack([s.energy for s in snaps]).numpy()
    steps = [s.step for s in snaps]
    ax.plot(steps, e, color="0.6", lw=0.6)
    ax.plot(steps, e.mean(1), color="C3", lw=2, label="mean over chains")
    ax.set_xlabel("Langevin step")
    ax.set_ylabel("energy E(x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return widgets.figure_to_array(fig)


@friendly
def toy_chains(energy: str, chains, steps, step_size, noise, seed):
    """Chains from random starts on a 2-D energy: the heatmap with their paths, their energies over the
    steps, and how far they ended from the nearest known minimum."""
    n, k = whole(chains, "Chains"), whole(steps, "Steps")
    check_range("Chains", n, 1, 200)
    check_range("Steps", k, 1, 5000)
    eta, sigma = number(step_size, "Step size"), number(noise, "Noise scale")
    snaps = toy2d.chains(energy, n, k, eta, sigma, seeded(widgets.seed_of(seed)))
    dist = toy2d.distance_to_minimum(energy, snaps[-1].x)
    md = (f"{n} chains, {k} steps of size {eta:g}, noise {sigma:g} (σ = √(2η) = {toy2d.langevin_noise(eta):.3g} "
          f"would sample exp(−E)). Mean energy {float(snaps[0].energy.mean()):.3f} → "
          f"**{float(snaps[-1].energy.mean()):.3f}**; distance to the nearest minimum at the end: median "
          f"**{float(dist.median()):.3f}**, largest {float(dist.max()):.3f}.")
    return toy_picture(energy, snaps), descent_plot(snaps), md


# --- training ---

def train_config(langevin_steps, step_size, alpha, buffer_size, *, steps, batch_size, lr):
    return ebm.FAMILY.config("cpu", langevin_steps=whole(langevin_steps, "Langevin steps"),
                             step_size=number(step_size, "Step size"), alpha=number(alpha, "α"),
                             buffer_size=whole(buffer_size, "Buffer size"), steps=steps, batch_size=batch_size,
                             lr=lr)


def render_preview(images):
    """Training's preview: the top two rows from the buffer, the bottom two from fresh noise."""
    return widgets.mosaic(images, 4, pad=1, scale=4)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("An **energy-based model** gives every image an energy E(x) and models p(x) ∝ exp(−E(x)). "
                "Sampling walks downhill in energy with a little noise (**Langevin dynamics**); training pushes "
                "the energy of real digits down and of the model's own samples up (contrastive divergence), "
                "with a replay buffer of earlier samples so chains keep improving. (Foster 2nd ed. ch. 7; "
                "Du & Mordatch 2019.)")
    header = parts.checkpoint_header(page, FAMILY, "ebm_mnist", "ebm")
    ckpt = header.dropdown
    with gr.Accordion("Samples: replay buffer and fresh noise", open=True):
        with gr.Row():
            seed = widgets.seed_box()
            n = gr.Slider(2, MAX_SAMPLES, value=36, step=1, label="Number of samples")
            kb = gr.Slider(0, 500, value=60, step=10, label="Steps after the buffer")
            kf = gr.Slider(0, 500, value=60, step=10, label="Steps from noise")
            sample_btn = gr.Button("Sample", variant="primary", elem_id="ebm-sample")
        with gr.Row():
            buf_img = gr.Image(label="From the replay buffer", format="png", interactive=False)
            fresh_img = gr.Image(label="From fresh noise", format="png", interactive=False)
        sample_out = parts.output_panel()
    with gr.Accordion("Chain viewer: one sample's descent", open=True):
        run_state = parts.visitor_state(None)
        with gr.Row():
            start = gr.Radio(list(STARTS), value="fresh noise", label="Start from")
            test_image = gr.Number(value=0, precision=0, label="Test image (0–9999)")
            c_seed = widgets.seed_box()
            chains = gr.Slider(1, MAX_CHAINS, value=8, step=1, label="Chains")
        with gr.Row():
            c_steps = gr.Slider(1, 1000, value=60, step=1, label="Steps")
            eta = gr.Slider(0, 100, value=10, step=0.5, label="Step size")
            sigma = gr.Slider(0, 0.1, value=0.005, step=0.001, label="Noise scale")
            chain_btn = gr.Button("Run chains", variant="primary", elem_id="ebm-chain")
        chain_md = gr.Markdown(label="Chain status", elem_id="ebm-chain-status")
        with gr.Row():
            chain_img = gr.Image(label="Chains now", format="png", interactive=False)
            chain_plot = gr.Image(label="Energy of every chain", format="png", interactive=False)
        with gr.Row():
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="ebm-frame")
            which = gr.Slider(0, MAX_CHAINS - 1, value=0, step=1, label="Chain")
            scrub_btn = gr.Button("Show frame")
        with gr.Row():
            one_img = gr.Image(label="One chain at this frame", format="png", interactive=False, height=260)
            one_plot = gr.Image(label="Its energy", format="png", interactive=False)
        one_md = gr.Markdown(label="Energy at this frame")
    with gr.Accordion("2-D energies: chains over the heatmap", open=True):
        with gr.Row():
            energy = gr.Radio(list(toy2d.ENERGIES), value="four wells", label="Energy")
            t_chains = gr.Slider(1, 200, value=40, step=1, label="Chains")
            t_steps = gr.Slider(1, 5000, value=300, step=1, label="Steps")
            t_eta = gr.Slider(0, 1, value=0.01, step=0.001, label="Step size")
            t_sigma = gr.Slider(0, 1, value=0.05, step=0.005, label="Noise scale")
            t_seed = widgets.seed_box()
            toy_btn = gr.Button("Run chains", variant="primary", elem_id="ebm-toy")
        toy_md = gr.Markdown(label="Where the chains ended")
        with gr.Row():
            toy_img = gr.Image(label="Energy heatmap and chains", format="png", interactive=False)
            toy_plot = gr.Image(label="Descent", format="png", interactive=False)
    with parts.TrainPanel(header, "Train an EBM here: the shipped model's network and sampler. Each step runs "
                          "the Langevin chains too, so it is slow on a CPU (a few seconds per step); curves show "
                          "the energy of real digits and of the chains' samples, and the contrast against noise. "
                          "The preview: top two rows from the buffer, bottom two from fresh noise.",
                          steps_default=100, steps_max=5000, batches=(16, 32, 64, 128), batch_default=64,
                          lr_default=2e-4, run_name="my_ebm", elem_id="ebm-train") as train:
        tr_steps = gr.Slider(5, 200, value=60, step=5, label="Langevin steps")
        tr_eta = gr.Number(value=10.0, label="Step size")
        tr_alpha = gr.Number(value=0.1, label="α (energy regulariser)")
        tr_buffer = gr.Dropdown([512, 2048, 8192], value=2048, label="Buffer size")

    outs = [buf_img, fresh_img, *sample_out.outputs]
    header.then(samples, [ckpt, seed, n, kb, kf], outs)
    page.action(sample_btn.click, samples, [ckpt, seed, n, kb, kf], outs, api_name="ebm_samples")
    page.action(chain_btn.click, chain_run, [ckpt, start, test_image, c_seed, chains, c_steps, eta, sigma],
                [run_state, chain_img, chain_plot, frame, chain_md], api_name="ebm_chain",
                show_progress_on=[chain_md])
    # the scrubber reads the visitor's run (gr.State is not part of the API): plumbing, api_name=False
    for event in (scrub_btn.click, frame.release, which.release):
        event(chain_scrub, [run_state, frame, which], [one_img, one_plot, one_md], api_name=False,
              show_progress="hidden")
    toy_in = [energy, t_chains, t_steps, t_eta, t_sigma, t_seed]
    page.action(toy_btn.click, toy_chains, toy_in, [toy_img, toy_plot, toy_md], api_name="ebm_toy_chains")
    page.on_load(toy_chains, toy_in, [toy_img, toy_plot, toy_md])
    train.wire(page, train_config, [tr_steps, tr_eta, tr_alpha, tr_buffer],
               ["energy_real", "energy_fake", "contrast_vs_noise"], render=render_preview, api_prefix="ebm",
               names=["langevin_steps", "step_size", "alpha", "buffer_size"])
