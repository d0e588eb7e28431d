"""The diffusion tab: the forward process and its schedules, a reverse process that streams, can be
scrubbed and replayed step by step, branched from any step with a new seed, η or step count, and
steered with classifier-free guidance; plus training in the page."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import data
from models.image import diffusion
from models.core.family import seeded
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "Diffusion"
FAMILY = "diffusion"
MAX_SAMPLES = 16  # every step of every sample is kept for the scrubber and branching
ANY_CLASS = "any (unconditional)"
PREVIEW_S = 0.2  # stream a preview at most this often


def loaded(name: str):
    return widgets.load(FAMILY, name)


def grid(x, scale: int = 4) -> np.ndarray:
    """Model-space images (N, 1, 28, 28) in [-1, 1] as one picture."""
    x = diffusion.to_pixels(x)
    return widgets.mosaic(x, int(np.ceil(np.sqrt(len(x)))), pad=1, scale=scale)


def _labels(config, class_name: str, n: int):
    if class_name in (None, "", ANY_CLASS):
        return None
    classes = data.class_names(config.dataset)
    if class_name not in classes:
        raise ValueError(f"Unknown class {class_name!r} for {config.dataset}.")
    if not config.conditional:
        raise ValueError("This checkpoint is unconditional: choose a class-conditional one to pick a class.")
    return [classes.index(class_name)] * n


# --- forward process ---

@friendly
def forward_process(dataset: str, index, t, schedule: str, T: int = 1000):
    """q(x_t | x_0) for one test image: a strip over t, the image at the chosen t, and ᾱ_t curves."""
    x, _ = data.images(dataset, "test")
    if index is None or not 0 <= int(index) < len(x):
        raise ValueError(f"Test image number must be from 0 to {len(x) - 1}; got {index}.")
    t = int(t)
    if not 0 <= t < T:
        raise ValueError(f"t must be from 0 to {T - 1}; got {t}.")
    ab = diffusion.alpha_bars(schedule, T)
    x0 = diffusion.to_model_space(x[int(index)][None])
    g = seeded(0)
    ts = torch.tensor([0, 50, 100, 200, 300, 400, 500, 600, 800, T - 1])
    noise = torch.randn(1, 1, 28, 28, generator=g).expand(len(ts), -1, -1, -1)
    strip = widgets.mosaic(diffusion.to_pixels(diffusion.q_sample(ab, x0.expand(len(ts), -1, -1, -1), ts, noise)),
                           len(ts), pad=1, scale=3)
    at_t = widgets.upscale(widgets.mosaic(diffusion.to_pixels(diffusion.q_sample(ab, x0, torch.tensor([t]), noise[:1])),
                                          1, pad=0), 8)
    fig = Figure(figsize=(5.5, 3.2), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    for name in ("linear", "cosine"):
        ax.plot(diffusion.alpha_bars(name, T), label=f"{name}", lw=2.5 if name == schedule else 1.2)
    ax.axvline(t, color="k", ls="--", lw=1)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("ᾱ_t (signal kept)")
    ax.legend()
    ax.grid(alpha=0.3)
    caption = f"t = {t}: x_t = {ab[t].sqrt():.3f}·x₀ + {(1 - ab[t]).sqrt():.3f}·ε  (ᾱ_t = {ab[t]:.4f})"
    return strip, at_t, widgets.figure_to_array(fig), caption


# --- reverse process ---

@friendly
def select_checkpoint(name: str):
    if not name:
        return ("No diffusion checkpoint yet: train one in the Train tab.", gr.update(), gr.update(), gr.update())
    model, config, card = loaded(name)
    classes = [ANY_CLASS] + data.class_names(config.dataset)
    return (widgets.card_markdown(card),
            gr.update(choices=classes, value=ANY_CLASS, interactive=config.conditional),
            gr.update(interactive=config.conditional),
            gr.update(maximum=config.T, value=min(50, config.T)))


def _controls(config, sampler, steps, eta):
    if sampler == "DDPM":
        return config.T, 1.0  # ancestral sampling: every step, full noise
    return int(steps), float(eta)


@friendly
def generate(name, sampler, steps, eta, class_name, guidance, seed, n):
    """Stream the reverse process; keep every state for the scrubber and branching."""
    model, config, _ = loaded(name)
    n = int(n)
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"Number of samples must be from 1 to {MAX_SAMPLES}; got {n}.")
    seed = widgets.seed_of(seed)
    steps, eta = _controls(config, sampler, steps, eta)
    labels = _labels(config, class_name, n)
    ts = diffusion.timesteps(config.T, steps)
    g = seeded(int(seed))
    x_T = diffusion.initial_noise(n, g)
    run = {"name": name, "ts": ts, "xs": [x_T], "x0s": [torch.zeros_like(x_T)], "seed": int(seed),
           "eta": eta, "labels": labels, "guidance": float(guidance), "sampler": sampler}
    states = diffusion.denoise(model, x_T, ts, g, eta, labels, float(guidance))
    start = last_yield = time.time()
    yield grid(x_T), None, f"Denoising {n} samples over {len(ts)} steps…", None, gr.update(), gr.update()
    for i, (t, x, x0) in enumerate(states):
        run["xs"].append(x.cpu())
        run["x0s"].append(x0.cpu())
        done = i + 1 == len(ts)
        if done or time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            status = (f"step {i + 1}/{len(ts)} (t = {t}), {time.time() - start:.1f} s; "
                      f"seed {int(seed)}, {sampler}, η {eta:g}, guidance {float(guidance):g}")
            yield (grid(x), grid(x0), status, run if done else None,
                   gr.update(maximum=len(ts), value=len(ts)) if done else gr.update(),
                   gr.update(maximum=len(ts) - 1, value=len(ts) // 2) if done else gr.update())


def _check_run(run):
    if not run:
        raise ValueError("Generate first: the scrubber replays the last finished run.")


@friendly
def scrub(run, k):
    """State k of the last run: x_t after k steps and the model's guess of x̂_0 at that moment."""
    _check_run(run)
    k = int(k)
    if not 0 <= k < len(run["xs"]):
        raise ValueError(f"Step must be from 0 to {len(run['xs']) - 1}.")
    t = run["ts"][k] if k < len(run["ts"]) else 0
    label = f"after {k} of {len(run['ts'])} steps: x_t at t = {t}" if k < len(run["ts"]) else "final images x₀"
    return grid(run["xs"][k]), grid(run["x0s"][k]) if k else None, label


def play(run, k):
    """Replay the run from step k to the end, about 12 frames a second, by moving the scrubber."""
    if not run:
        raise gr.Error("Generate first: the scrubber replays the last finished run.")
    last = len(run["xs"]) - 1
    k = int(k) if int(k) < last else 0
    stride = max(1, last // 60)
    for j in list(range(k, last, stride)) + [last]:
        yield j
        time.sleep(0.08)


@friendly
def export_gif(run, which: str):
    _check_run(run)
    key = "x0s" if which.startswith("x̂") else "xs"
    frames = run[key][1:] if key == "x0s" else run[key]
    stride = max(1, len(frames) // 60)
    frames = frames[::stride] + [run["xs"][-1]]
    return widgets.save_gif([grid(f, scale=3) for f in frames], f"{run['name']}_seed{run['seed']}_{key}.gif", ms=80)


@friendly
def branch(run, k, seed, steps, eta):
    """Re-run from state k with a new seed / η / step count, shown beside the original."""
    _check_run(run)
    model, config, _ = loaded(run["name"])
    k = int(k)
    if not 0 <= k < len(run["ts"]):
        raise ValueError(f"Branch from a step between 0 and {len(run['ts']) - 1} (the final images have "
                         "nothing left to denoise).")
    seed = widgets.seed_of(seed)
    same_steps = int(steps) == len(run["ts"])
    states = diffusion.branch(model, run["xs"][k], run["ts"], k, int(seed), None if same_steps else int(steps),
                              float(eta), run["labels"], run["guidance"])
    x = run["xs"][k]
    last_yield = 0.0
    for i, (t, x, x0) in enumerate(states):
        if time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            yield grid(x0), f"branch: t = {t}…"
    same = torch.equal(x, run["xs"][-1])
    yield grid(x), (f"Branched at step {k} (t = {run['ts'][k]}) with seed {int(seed)}, η {float(eta):g}, "
                    f"{int(steps)} steps in all. " + ("Identical to the original: same seed and settings "
                                                      "replay the same noise." if same else
                                                      "Compare with the original on the left."))


def original_final(run):
    return grid(run["xs"][-1]) if run else None


# --- training ---

@friendly
def train_start(dataset, conditional, schedule, steps, batch, lr, run_name, current):
    config = diffusion.FAMILY.config("cpu", dataset=dataset, conditional=bool(conditional), schedule=schedule,
                                     steps=int(steps), batch_size=int(batch), lr=float(lr))
    job = JOBS.start(FAMILY, (run_name or "").strip(), config)
    yield from stream(job, FAMILY, ["loss"], current)


@friendly
def train_resume(run_name, steps, current):
    job = JOBS.resume(FAMILY, run_name, steps)
    yield from stream(job, FAMILY, ["loss"], current)


# --- layout ---

def build(page):
    demo = page.demo
    choices = widgets.checkpoint_choices(FAMILY)
    names = [v for _, v in choices]
    default = "diffusion_mnist_cond" if "diffusion_mnist_cond" in names else (names[0] if names else None)
    gr.Markdown("Diffusion learns to undo noise. The forward process blends an image with Gaussian noise, "
                "x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε; a U-Net learns to predict ε, and sampling walks back from pure noise. "
                "DDIM takes fewer, larger steps (η = 0 is deterministic); classifier-free guidance pushes "
                "samples towards a class. (Deep Learning from Scratch 5 ch. 10, Foster ch. 8.)")
    with gr.Row():
        ckpt = gr.Dropdown(choices, value=default, label="Checkpoint", scale=2, elem_id="diffusion-checkpoint")
        card = gr.Markdown()
    run = gr.State(None)
    with gr.Column():  # sections, not nested tabs: every view is one scroll away
        with gr.Accordion("Reverse process", open=True):
            with gr.Row():
                sampler = gr.Radio(["DDIM", "DDPM"], value="DDIM", label="Sampler (DDPM = all T steps, η = 1)")
                steps = gr.Slider(1, 1000, value=50, step=1, label="Steps (DDIM)")
                eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="η (DDIM noise)")
            with gr.Row():
                class_name = gr.Dropdown([ANY_CLASS], value=ANY_CLASS, label="Class")
                guidance = gr.Slider(0.0, 10.0, value=3.0, step=0.1, label="Guidance scale w (0 = unconditional)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="diffusion-generate")
                stop = gr.Button("Cancel", variant="stop")
            status = gr.Markdown(elem_id="diffusion-status")
            with gr.Row():
                xt_img = gr.Image(label="x_t (current noisy images)", format="png", interactive=False,
                                  elem_id="diffusion-xt")
                x0_img = gr.Image(label="x̂₀ (the model's guess of the clean images)", format="png",
                                  interactive=False)
            gr.Markdown("**Replay**: scrub through every kept step of the last run, play it, or export it.")
            with gr.Row():
                scrubber = gr.Slider(0, 50, value=0, step=1, label="Step", scale=3)
                play_btn = gr.Button("▶ Play")
                which = gr.Radio(["x_t", "x̂₀"], value="x_t", label="GIF of")
                gif_btn = gr.Button("Export GIF")
            scrub_label = gr.Markdown()
            gif = gr.File(label="GIF", height=90)
            gr.Markdown("**Branch**: restart from the state after some step of the run above (same x_t), with "
                        "new randomness or a new schedule. The original seed and settings reproduce the run.")
            with gr.Row():
                b_from = gr.Slider(0, 49, value=25, step=1, label="Branch after step")
                b_seed = gr.Number(value=1, precision=0, label="Branch seed")
                b_steps = gr.Slider(1, 1000, value=50, step=1, label="Total steps")
                b_eta = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="η")
                b_go = gr.Button("Branch", variant="primary")
            b_status = gr.Markdown()
            with gr.Row():
                orig_img = gr.Image(label="Original run", format="png", interactive=False)
                branch_img = gr.Image(label="Branch", format="png", interactive=False)
        with gr.Accordion("Forward process", open=True):
            with gr.Row():
                f_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                f_index = gr.Number(value=0, precision=0, label="Test image (0–9999)")
                f_sched = gr.Radio(["linear", "cosine"], value="linear", label="β schedule")
                f_t = gr.Slider(0, 999, value=250, step=1, label="t")
            f_caption = gr.Markdown()
            f_strip = gr.Image(label="x_t at t = 0, 50, 100, 200, 300, 400, 500, 600, 800, 999 (same ε)",
                               format="png", interactive=False)
            with gr.Row():
                f_at = gr.Image(label="x_t at the chosen t", format="png", interactive=False, height=260)
                f_plot = gr.Image(label="ᾱ_t: linear vs cosine", format="png", interactive=False)
        with gr.Accordion("Train", open=True):
            gr.Markdown("Train a small DDPM here (U-Net 32-64-128). On 2 CPU cores a step at batch 64 takes about "
                        "0.4 s: 300 steps (2 minutes) give blurry blobs, 3,000 steps (20 minutes) give digits. "
                        "Previews use 50-step DDIM. Cancel keeps the checkpoint; Resume continues it.")
            with gr.Row():
                t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                t_cond = gr.Checkbox(value=True, label="Class-conditional (for guidance)")
                t_sched = gr.Radio(["linear", "cosine"], value="linear", label="β schedule")
                t_steps = gr.Slider(10, 20000, value=300, step=10, label="Steps")
            with gr.Row():
                t_batch = gr.Dropdown([16, 32, 64, 128], value=64, label="Batch size")
                t_lr = gr.Number(value=1e-3, label="Learning rate")
                t_name = gr.Textbox(value="my_ddpm", label="Run name")
                t_start = gr.Button("Start", variant="primary")
                t_resume = gr.Button("Resume")
                t_cancel = gr.Button("Cancel", variant="stop")
            t_status = gr.Markdown()
            with gr.Row():
                t_curves = gr.Plot(show_label=False)
                t_preview = gr.Image(label="Samples from a fixed seed (50-step DDIM)", format="png", interactive=False)

    for event in (ckpt.change, demo.load):
        event(select_checkpoint, ckpt, [card, class_name, guidance, steps], api_name=False)
    gen = go.click(generate, [ckpt, sampler, steps, eta, class_name, guidance, seed, n],
                   [xt_img, x0_img, status, run, scrubber, b_from], show_progress_on=[status], api_name="generate")
    gen.then(original_final, run, orig_img, api_name=False)
    stop.click(None, None, None, cancels=[gen])
    scrubber.change(scrub, [run, scrubber], [xt_img, x0_img, scrub_label], api_name=False, show_progress="hidden")
    play_btn.click(play, [run, scrubber], scrubber, api_name=False, show_progress="hidden")
    gif_btn.click(export_gif, [run, which], gif, api_name=False)
    b_go.click(branch, [run, b_from, b_seed, b_steps, b_eta], [branch_img, b_status], show_progress_on=[b_status],
               api_name=False)
    forward_inputs = [f_data, f_index, f_t, f_sched]
    for c in forward_inputs:
        c.change(forward_process, forward_inputs, [f_strip, f_at, f_plot, f_caption], api_name=False,
                 show_progress="hidden")
    demo.load(forward_process, forward_inputs, [f_strip, f_at, f_plot, f_caption], api_name=False)
    t_start.click(train_start, [t_data, t_cond, t_sched, t_steps, t_batch, t_lr, t_name, ckpt],
                  [t_status, t_curves, t_preview, ckpt], show_progress_on=[t_status], api_name=False)
    t_resume.click(train_resume, [t_name, t_steps, ckpt], [t_status, t_curves, t_preview, ckpt],
                   show_progress_on=[t_status], api_name=False)
    t_cancel.click(JOBS.cancel, None, t_status, api_name=False)
