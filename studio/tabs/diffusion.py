"""The diffusion tab: the forward process and its schedules, a reverse process that streams, can be
scrubbed and replayed step by step, branched from any step with a new seed, η or step count, and
steered with classifier-free guidance; plus training in the page.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them. A visitor's run lives in their own state: its
settings (which replay it exactly from the seed, so branching rebuilds the state it starts from)
and at most :data:`parts.MAX_FRAMES` uint8 frames for the scrubber.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from models.core import data
from models.core.family import check_range, seeded
from models.image import diffusion
from studio import parts, widgets
from studio.widgets import friendly

TITLE = "Diffusion"
DATA_NOTE = ("**Data.** Deep Learning from Scratch 5 trains on MNIST, as here; Foster's DDPM learns Oxford 102 "
             "Flowers at 64×64, which ships offline nowhere, so Fashion-MNIST at 28×28 is the second data set.")
FAMILY = "diffusion"
MAX_SAMPLES = 16
ANY_CLASS = "any (unconditional)"
EACH_CLASS = "every class in turn"  # the default: guidance has a class to steer towards, all classes shown
# every class of every dataset, so an API caller can choose one without loading the page (the page
# narrows the list to the checkpoint's dataset; the handler refuses a class of another dataset)
EVERY_CLASS = [EACH_CLASS, ANY_CLASS] + list(dict.fromkeys(c for d in data.DATASETS for c in data.class_names(d)))
PREVIEW_S = 0.2  # stream a preview at most this often
GIF_FRAMES = 60  # frames in an exported GIF (evenly spaced over the kept ones, the final image last)
FORWARD_T = 1000  # the forward-process view's number of noising steps
OPENING = diffusion.FAMILY.score_kwargs  # the sampler the page opens with is the one its cards score


def loaded(name: str):
    return widgets.load(FAMILY, name)


def show(pixels, scale: int = 4) -> np.ndarray:
    """Images (N, 1, 28, 28) in [0, 1] as one picture."""
    return widgets.mosaic(pixels, int(np.ceil(np.sqrt(len(pixels)))), pad=1, scale=scale)


def grid(x, scale: int = 4) -> np.ndarray:
    """Model-space images (N, 1, 28, 28) in [-1, 1] as one picture."""
    return show(diffusion.to_pixels(x), scale)


def _labels(config, class_name: str, n: int):
    """The class of each sample: one chosen class, every class in turn (0, 1, … 9, 0, …), or none."""
    if class_name == EACH_CLASS:
        classes = data.class_names(config.dataset)
        data.chosen_class(config, classes[0], ANY_CLASS)  # refuses an unconditional checkpoint
        return [i % len(classes) for i in range(n)]
    k = data.chosen_class(config, class_name, ANY_CLASS)
    return None if k is None else [k] * n


# --- forward process ---

@friendly
def forward_process(dataset: str, test_image, t, schedule: str):
    """q(x_t | x_0) for one test image: a strip over t, the image at the chosen t, and ᾱ_t curves."""
    x, _ = data.images(dataset, "test")
    if test_image is None or not 0 <= int(test_image) < len(x):
        raise ValueError(f"Test image number must be from 0 to {len(x) - 1}; got {test_image}.")
    t = int(t)
    ab = diffusion.alpha_bars(schedule, FORWARD_T)
    ts = diffusion.strip_timesteps(FORWARD_T)
    images = diffusion.forward_strip(x[int(test_image)][None], ab, [*ts, t], seeded(0))  # the same ε for all
    strip = widgets.mosaic(images[:-1], len(ts), pad=1, scale=3)
    at_t = widgets.upscale(widgets.mosaic(images[-1:], 1, pad=0), 8)
    fig = Figure(figsize=(5.5, 3.2), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    for name in ("linear", "cosine"):
        ax.plot(diffusion.alpha_bars(name, FORWARD_T), label=f"{name}", lw=2.5 if name == schedule else 1.2)
    ax.axvline(t, color="k", ls="--", lw=1)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("ᾱ_t (signal kept)")
    ax.legend()
    ax.grid(alpha=0.3)
    caption = f"t = {t}: x_t = {ab[t].sqrt():.3f}·x₀ + {(1 - ab[t]).sqrt():.3f}·ε  (ᾱ_t = {ab[t]:.4f})"
    return strip, at_t, widgets.figure_to_array(fig), caption


# --- reverse process ---

@dataclass
class Run:
    """One visitor's reverse-process run: the settings that replay it exactly from its seed, how far
    it got, and the frames the scrubber shows (states 0 … len(ts): x_T, then after each step)."""

    checkpoint: str
    seed: int
    sampler: str
    eta: float
    class_name: str
    labels: list | None
    guidance: float  # as used: 0 when no class is chosen (guidance then does nothing)
    ts: list[int]
    n: int
    frames: parts.Frames
    step: int = 0  # steps done so far
    done: bool = False
    cancelled: bool = False

    @property
    def total(self) -> int:
        return len(self.ts)

    def settings(self) -> str:
        guidance = f"guidance {self.guidance:g}" if self.labels else "guidance unused (no class chosen)"
        return (f"seed {self.seed}, {self.sampler}, η {self.eta:g}, class {self.class_name}, {guidance}, "
                f"{self.n} samples, checkpoint {self.checkpoint}")

    def record(self, **extra) -> dict:
        return parts.provenance(FAMILY, self.checkpoint, self.seed, sampler=self.sampler, steps=self.total,
                                eta=self.eta, class_name=self.class_name, guidance=self.guidance, n=self.n, **extra)


@friendly
def select_checkpoint(checkpoint: str):
    """The class list and guidance follow the checkpoint (its dataset; conditional or not)."""
    if not checkpoint:
        return gr.update(), gr.update(), gr.update()
    _, config, _ = loaded(checkpoint)
    classes = [EACH_CLASS, ANY_CLASS] + data.class_names(config.dataset)
    return (gr.update(choices=classes, value=EACH_CLASS if config.conditional else ANY_CLASS,
                      interactive=config.conditional),
            gr.update(interactive=config.conditional),
            gr.update(maximum=config.T, value=min(OPENING["steps"], config.T)))


def _controls(config, sampler, steps, eta):
    if sampler not in ("DDIM", "DDPM"):
        raise ValueError(f"Sampler must be DDIM or DDPM; got {sampler!r}.")
    if sampler == "DDPM":
        return config.T, 1.0  # ancestral sampling: every step, full noise
    return int(steps), float(eta)


@friendly
def generate(checkpoint, sampler, steps, eta, class_name, guidance, seed, n_samples):
    """Stream the reverse process; the visitor's run keeps its settings and the scrubber's frames.
    Yields x_t, x̂₀, status, the run, scrubber and branch-step updates, and the output panel."""
    model, config, _ = loaded(checkpoint)
    n = int(n_samples)
    check_range("Number of samples", n, 1, MAX_SAMPLES)
    seed = widgets.seed_of(seed)
    steps, eta = _controls(config, sampler, steps, eta)
    check_range("guidance scale", float(guidance), 0.0, 50.0)
    labels = _labels(config, class_name, n)
    ts = diffusion.timesteps(config.T, steps)
    run = Run(checkpoint, seed, sampler, eta, class_name or ANY_CLASS, labels,
              float(guidance) if labels else 0.0, ts, n, parts.Frames(len(ts) + 1))
    g = seeded(seed)
    x_T = diffusion.initial_noise(n, g)
    run.frames.add(0, x_t=diffusion.to_pixels(x_T), x0=None)
    keep = [gr.update()] * 5  # scrubber, branch step and the output panel change when the run is done
    states = diffusion.denoise(model, x_T, ts, g, eta, labels, run.guidance)
    start = last_yield = time.time()
    yield grid(x_T), None, f"Denoising {n} samples over {len(ts)} steps…", run, *keep
    for i, (t, x, x0) in enumerate(states):
        if run.cancelled:
            return
        run.step = i + 1
        if run.frames.wants(i + 1):
            run.frames.add(i + 1, x_t=diffusion.to_pixels(x), x0=diffusion.to_pixels(x0))
        if run.step < len(ts) and time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            status = f"step {run.step}/{len(ts)} (t = {t}), {time.time() - start:.1f} s; {run.settings()}"
            yield grid(x), grid(x0), status, run, *keep
    run.done = True
    picture = grid(x)
    status = f"step {len(ts)}/{len(ts)} (t = 0), {time.time() - start:.1f} s; {run.settings()}"
    yield (picture, grid(x0), status, run,
           gr.update(maximum=max(1, len(run.frames) - 1), value=len(run.frames) - 1),
           gr.update(maximum=max(1, len(ts) - 1), value=len(ts) // 2),
           *parts.publish(picture, run.record(), status, f"{checkpoint}_seed{seed}.png"))


@friendly
def cancel_generate(run):
    """Stop the visitor's run (Cancel also stops its event) and say where; its frames stay scrubbable."""
    if run is None:
        return "Nothing to cancel: generate first.", gr.update(), gr.update()
    if run.done:
        return f"Nothing to cancel: the last run finished all {run.total} steps.", gr.update(), gr.update()
    run.cancelled = True
    kept = len(run.frames)
    return (f"Cancelled at step {run.step} of {run.total}; the {kept} kept frames can be scrubbed, and the run "
            f"branched from any step up to {min(run.step, run.total - 1)}.",
            gr.update(maximum=kept - 1, value=kept - 1) if kept > 1 else gr.update(),
            gr.update(maximum=min(run.step, run.total - 1), value=0) if min(run.step, run.total - 1) else gr.update())


def _check_run(run):
    if not run or not len(run.frames):
        raise ValueError("Generate first: the scrubber replays the last run.")


@friendly
def scrub(run, k):
    """Kept frame k of the last run: x_t at that state and the model's guess of x̂_0 at that moment."""
    _check_run(run)
    step, images = run.frames.frame(k)
    label = (f"after {step} of {run.total} steps: x_t at t = {run.ts[step]}" if step < run.total
             else "final images x₀")
    x0 = images["x0"]
    return show(images["x_t"]), None if x0 is None else show(x0), label


def play(run, k):
    """Replay the run from frame k to the end, about 12 frames a second, by moving the scrubber."""
    if not run or not len(run.frames):
        raise gr.Error("Generate first: the scrubber replays the last run.")
    last = len(run.frames) - 1
    k = int(k) if int(k) < last else 0
    stride = max(1, last // 60)
    for j in list(range(k, last, stride)) + [last]:
        yield j
        time.sleep(0.08)


@friendly
def export_gif(run, which: str):
    """The kept frames of x_t (or of x̂₀, ending on the final images) as a GIF at a path of its own,
    with the run's provenance in its comment."""
    _check_run(run)
    key = "x0" if which.startswith("x̂") else "x_t"
    kept = [i for i, f in enumerate(run.frames.images) if f[key] is not None]
    if not kept:
        raise ValueError("No x̂₀ frames yet: the first step has not finished.")
    picks = [kept[j] for j in parts.frame_steps(len(kept), GIF_FRAMES)]
    pictures = [show(run.frames.frame(i)[1][key], scale=3) for i in picks]
    if key == "x0" and run.done:
        pictures.append(show(run.frames.frame(len(run.frames) - 1)[1]["x_t"], scale=3))
    record = run.record(gif_of=key, frames=len(pictures), cancelled_at=None if run.done else run.step)
    return widgets.save_gif(pictures, f"{run.checkpoint}_seed{run.seed}_{key}.gif", ms=80, comment=json.dumps(record))


@friendly
def branch(run, k, seed, steps, eta):
    """Rebuild state k of the run from its seed, then re-run from there with a new seed / η / step
    count, shown beside the original."""
    _check_run(run)
    model, _, _ = loaded(run.checkpoint)
    k, last = int(k), min(run.step, run.total - 1)
    if not 0 <= k <= last:
        raise ValueError(f"Branch from a step between 0 and {last} (the final images have nothing left to "
                         "denoise" + ("" if run.done else f"; the run was cancelled at step {run.step}") + ").")
    seed = widgets.seed_of(seed)
    yield None, f"Replaying the run to step {k} from its seed…"
    x_k = diffusion.replay(model, run.n, run.seed, run.ts, k, run.eta, run.labels, run.guidance)
    same_steps = int(steps) == run.total
    states = diffusion.branch(model, x_k, run.ts, k, seed, None if same_steps else int(steps), float(eta),
                              run.labels, run.guidance)
    x = x_k
    last_yield = 0.0
    for t, x, x0 in states:
        if time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            yield grid(x0), f"branch: t = {t}…"
    picture = grid(x)
    same = run.done and np.array_equal(picture, original_final(run))
    yield picture, (f"Branched at step {k} (t = {run.ts[k]}) with seed {seed}, η {float(eta):g}, "
                    f"{int(steps)} steps in all. " + ("Identical to the original: same seed and settings "
                                                      "replay the same noise." if same else
                                                      "Compare with the original on the left."))


def original_final(run):
    """The run's final images, as shown (None before it finishes)."""
    if not run or not run.done:
        return None
    return show(run.frames.frame(len(run.frames) - 1)[1]["x_t"])


# --- training ---

def train_config(dataset, conditional, schedule, *, steps, batch_size, lr):
    """The CPU preset's U-Net with the Train section's settings."""
    return diffusion.FAMILY.config("cpu", dataset=dataset, conditional=bool(conditional), schedule=schedule,
                                   steps=steps, batch_size=batch_size, lr=lr)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("Diffusion learns to undo noise. The forward process blends an image with Gaussian noise, "
                "x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε; a U-Net learns to predict ε, and sampling walks back from pure noise. "
                "DDIM takes fewer, larger steps (η = 0 is deterministic; the page opens on 100 steps with η = 1, "
                "whose fresh noise at every step brings these small models' unguided samples closer to the data: "
                "see the card); classifier-free guidance pushes samples towards a class. "
                "(Deep Learning from Scratch 5 ch. 10, Foster ch. 8.)")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMILY, "diffusion_mnist_cond", "diffusion")
    ckpt = header.dropdown
    run = parts.visitor_state()
    with gr.Column():  # sections, not nested tabs: every view is one scroll away
        with gr.Accordion("Reverse process", open=True):
            with gr.Row():
                sampler = gr.Radio(["DDIM", "DDPM"], value="DDIM", label="Sampler (DDPM = all T steps, η = 1)")
                steps = gr.Slider(1, 1000, value=OPENING["steps"], step=1, label="Steps (DDIM)")
                eta = gr.Slider(0.0, 1.0, value=OPENING["eta"], step=0.05, label="η (DDIM noise)")
            with gr.Row():
                class_name = gr.Dropdown(EVERY_CLASS, value=EACH_CLASS, label="Class")
                guidance = gr.Slider(0.0, 10.0, value=3.0, step=0.1,
                                     label="Guidance scale w (with a class; 0 = unconditional)")
                seed = widgets.seed_box()
                n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="diffusion-generate")
                stop = gr.Button("Cancel", variant="stop")
            status = gr.Markdown(label="Status", elem_id="diffusion-status")
            with gr.Row():
                xt_img = gr.Image(label="x_t (current noisy images)", format="png", interactive=False,
                                  elem_id="diffusion-xt")
                x0_img = gr.Image(label="x̂₀ (the model's guess of the clean images)", format="png",
                                  interactive=False)
            sample_out = parts.output_panel()
            gr.Markdown(f"**Replay**: scrub through the last run (every step, or {parts.MAX_FRAMES} evenly spaced "
                        "ones of a longer run), play it, or export it.")
            with gr.Row():
                scrubber = gr.Slider(0, OPENING["steps"], value=0, step=1, label="Frame", scale=3)
                play_btn = gr.Button("▶ Play")
                which = gr.Radio(["x_t", "x̂₀"], value="x_t", label="GIF of")
                gif_btn = gr.Button("Export GIF")
            scrub_label = gr.Markdown(label="Frame shown")
            gif = gr.File(label="GIF (with its provenance in the comment)", height=90)
            gr.Markdown("**Branch**: restart from the state after some step of the run above (the same x_t, "
                        "rebuilt from its seed), with new randomness or a new schedule. The original seed and "
                        "settings reproduce the run.")
            with gr.Row():
                b_from = gr.Slider(0, OPENING["steps"] - 1, value=OPENING["steps"] // 2, step=1,
                                   label="Branch after step")
                b_seed = widgets.seed_box(1, label="Branch seed")
                b_steps = gr.Slider(1, 1000, value=OPENING["steps"], step=1, label="Total steps")
                b_eta = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="η")
                b_go = gr.Button("Branch", variant="primary")
            b_status = gr.Markdown(label="Branch status")
            with gr.Row():
                orig_img = gr.Image(label="Original run", format="png", interactive=False)
                branch_img = gr.Image(label="Branch", format="png", interactive=False)
        with gr.Accordion("Forward process", open=True):
            with gr.Row():
                f_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                f_index = gr.Number(value=0, precision=0, label="Test image (0–9999)")
                f_sched = gr.Radio(["linear", "cosine"], value="linear", label="β schedule")
                f_t = gr.Slider(0, FORWARD_T - 1, value=250, step=1, label="t")
            f_caption = gr.Markdown(label="Forward-process formula at t")
            f_strip = gr.Image(label=f"x_t at t = {', '.join(map(str, diffusion.strip_timesteps(FORWARD_T)))} "
                               "(same ε)", format="png", interactive=False)
            with gr.Row():
                f_at = gr.Image(label="x_t at the chosen t", format="png", interactive=False, height=260)
                f_plot = gr.Image(label="ᾱ_t: linear vs cosine", format="png", interactive=False)
        with parts.TrainPanel(header, "Train a small DDPM here (U-Net 32-64-128). On 2 CPU cores a step at batch 64 "
                              "takes about 0.4 s: 300 steps (2 minutes) give blurry blobs, 3,000 steps (20 minutes) "
                              "give digits. Previews use the page's sampler (100 steps, η = 1). Cancel keeps the "
                              "checkpoint; Resume continues it.",
                              steps_default=300, batches=(16, 32, 64, 128), batch_default=64,
                              run_name="my_ddpm", elem_id="diffusion-train",
                              preview=lambda: gr.Image(label="Samples from a fixed seed (100 steps, η = 1)",
                                                       format="png", interactive=False)) as train:
            t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
            t_cond = gr.Checkbox(value=True, label="Class-conditional (for guidance)")
            t_sched = gr.Radio(["linear", "cosine"], value="linear", label="Noise schedule (β)")

    header.then(select_checkpoint, ckpt, [class_name, guidance, steps])
    gen = page.action(go.click, generate, [ckpt, sampler, steps, eta, class_name, guidance, seed, n],
                      [xt_img, x0_img, status, run, scrubber, b_from, *sample_out.outputs],
                      api_name="diffusion_generate", show_progress_on=[status])
    gen.then(original_final, run, orig_img, api_name=False)
    # UI plumbing below reads the visitor's run (gr.State is not part of the API): api_name=False
    stop.click(cancel_generate, run, [status, scrubber, b_from], cancels=[gen], api_name=False)
    scrubber.change(scrub, [run, scrubber], [xt_img, x0_img, scrub_label], api_name=False, show_progress="hidden")
    play_btn.click(play, [run, scrubber], scrubber, api_name=False, show_progress="hidden")
    gif_btn.click(export_gif, [run, which], gif, api_name=False)
    b_go.click(branch, [run, b_from, b_seed, b_steps, b_eta], [branch_img, b_status], show_progress_on=[b_status],
               api_name=False)
    forward_inputs, forward_outputs = [f_data, f_index, f_t, f_sched], [f_strip, f_at, f_plot, f_caption]
    page.action(f_data.change, forward_process, forward_inputs, forward_outputs, api_name="diffusion_forward_process",
                show_progress="hidden")
    for c in forward_inputs[1:]:
        c.change(forward_process, forward_inputs, forward_outputs, api_name=False, show_progress="hidden")
    page.on_load(forward_process, forward_inputs, forward_outputs)
    train.wire(page, train_config, [t_data, t_cond, t_sched], ["loss"], api_prefix="diffusion")
