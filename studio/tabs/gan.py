"""The GAN tab: seeded samples, a class × seed grid for conditional models, latent interpolation next
to the VAE's, the checkerboard-artefact demo, and training in the page with live D/G losses,
gradient norms, a diversity score with a "mode collapse?" flag, settings switched while the run
trains, and a fixed-noise grid that can be replayed step by step afterwards.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import threading

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from models.core import data
from models.core.family import check_range, last, seeded
from models.image import gan, vae
from studio import jobs, parts, widgets
from studio.jobs import owner_of
from studio.widgets import friendly, whole

TITLE = "GAN"
DATA_NOTE = ("**Data.** Chollet's DCGAN learns CelebA faces and Foster's LEGO bricks (2nd ed.) or Quick, Draw! "
             "camels (1st ed.); none ships offline, so MNIST and Fashion-MNIST stand in.")
FAMILY = "gan"
ANY_CLASS = "any (random)"
# every dataset's classes, so an API caller can ask for "7" (or "Sneaker") without loading the page;
# the handlers check the name against the chosen checkpoint's dataset
EVERY_CLASS = [ANY_CLASS] + list(dict.fromkeys(c for d in data.DATASETS for c in data.class_names(d)))
MAX_SAMPLES = 64
KEYS = ["d_loss", "g_loss", "d_grad_norm", "g_grad_norm"]
MAX_FRAMES = 120  # fixed-noise previews kept for the replay; beyond this every other one is dropped


def loaded(name: str):
    """``(model, config, card)`` of a GAN checkpoint, from the read-only cache."""
    return widgets.load(FAMILY, name)


def class_index(config, class_name) -> int | None:
    """The class a control names, checked against the checkpoint's own dataset (None: any class)."""
    return data.chosen_class(config, class_name, ANY_CLASS)


# --- handlers ---

@friendly
def class_choices(checkpoint: str):
    """The page's class lists follow the checkpoint's dataset (the API accepts every dataset's names)."""
    _, config, _ = loaded(checkpoint)
    update = gr.update(choices=[ANY_CLASS] + data.class_names(config.dataset), value=ANY_CLASS,
                       interactive=config.conditional)
    return update, update


@friendly
def samples(checkpoint: str, seed, n, temperature: float, class_name: str):
    """A seeded grid (the same seed, count, temperature and class give the same images); returns the
    picture, its caption, its provenance record and the PNG download."""
    model, config, _ = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of samples")
    check_range("Number of samples", n, 1, MAX_SAMPLES)
    c = class_index(config, class_name)
    x = last(gan.sample(model, n, generator=seeded(seed), temperature=float(temperature),
                        labels=None if c is None else [c] * n))
    picture = widgets.mosaic(x, int(np.ceil(np.sqrt(n))), pad=1, scale=4)
    what = f", class {class_name}" if c is not None else (", random classes" if config.conditional else "")
    caption = f"seed {seed}, {n} samples, temperature {float(temperature):g}{what}, checkpoint {checkpoint}"
    record = parts.provenance(FAMILY, checkpoint, seed, n=n, temperature=float(temperature),
                              class_name=class_name or ANY_CLASS)
    return picture, *parts.publish(picture, record, caption, f"{checkpoint}_seed{seed}.png")


def labelled_grid(images, rows: list[str], cols: list[str], title: str) -> np.ndarray:
    """A mosaic with row and column names, rendered with Agg."""
    img = widgets.mosaic(images, len(cols), pad=1)
    h, w = img.shape
    fig = Figure(figsize=(1.0 + 0.55 * len(cols), 0.6 + 0.55 * len(rows)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    step_y, step_x = (h - 1) / len(rows), (w - 1) / len(cols)
    ax.set_yticks([step_y * (i + 0.5) for i in range(len(rows))], rows)
    ax.set_xticks([step_x * (i + 0.5) for i in range(len(cols))], cols)
    ax.tick_params(length=0, labelsize=8)
    ax.set_title(title, fontsize=9)
    return widgets.figure_to_array(fig)


@friendly
def class_seed_grid(checkpoint: str, first_seed, seeds, temperature: float):
    """Rows: classes; columns: seeds. One z per column, so a column shows one "style" across classes."""
    model, config, _ = loaded(checkpoint)
    first, k = widgets.seed_of(first_seed), whole(seeds, "Seeds per class")
    x = gan.class_grid(model, first, k, float(temperature))
    return labelled_grid(x, data.class_names(config.dataset), [f"seed {first + j}" for j in range(k)],
                         f"{checkpoint}: one latent code per column, one class per row")


def grid_view(checkpoint: str, first_seed, seeds, temperature: float):
    """The grid after a new checkpoint: empty (not an error) for an unconditional one."""
    return class_seed_grid(checkpoint, first_seed, seeds, temperature) if loaded(checkpoint)[1].conditional else None


def smoothness_text(images) -> str:
    s = gan.path_smoothness(images)
    return f"mean step {s['mean_step']:.2f}, largest/mean {s['largest_over_mean']:.2f}"


@friendly
def interpolation(checkpoint: str, seed_a, seed_b, steps, method: str, class_name: str):
    """A latent walk between the codes of two seeds, and the same walk through the VAE (latent 16) of
    the same dataset when it ships, with how evenly each changes."""
    model, config, _ = loaded(checkpoint)
    a, b = widgets.seed_of(seed_a), widgets.seed_of(seed_b)
    steps = whole(steps, "Interpolation steps")
    x, c = gan.interpolation(model, a, b, steps, method, class_index(config, class_name))
    which = f", class {data.class_names(config.dataset)[c]}" if c is not None else ""
    notes = [f"GAN ({checkpoint}{which}): {smoothness_text(x)}"]
    vae_strip = None
    vae_name = f"vae_{config.dataset}_z16"
    if vae_name in widgets.checkpoint_paths("vae"):
        v_model = widgets.load("vae", vae_name)[0]
        xv = vae.decode(v_model, gan.latent_path(v_model.latent_dim, a, b, steps, method))
        vae_strip = widgets.mosaic(xv, steps, pad=1, scale=3)
        notes.append(f"VAE ({vae_name}, unconditional): {smoothness_text(xv)}")
    return widgets.mosaic(x, steps, pad=1, scale=3), vae_strip, "  \n".join(notes)


@friendly
def checkerboard_demo(layers):
    """Each upsampling applied to a constant image: uneven overlap shows as a checkerboard."""
    fig = Figure(figsize=(9, 3.2), dpi=90, layout="constrained")
    outs = gan.checkerboards(whole(layers, "Upsampling layers"), size=6)
    top = max(2.0, max(float(x.max()) for x, _, _ in outs.values()))
    for i, (how, (x, low, high)) in enumerate(outs.items()):
        ax = fig.add_subplot(1, len(outs), i + 1)
        im = ax.imshow(x.numpy(), cmap="magma", vmin=0, vmax=top)
        ax.set_title(f"{how}\ninside: {low:.2f}–{high:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="output ÷ median")
    return widgets.figure_to_array(fig)


# --- training ---

def train_config(dataset, conditional, loss, critic_steps, gp_weight, label_smoothing, label_noise, dropout, lr_d,
                 *, steps, batch_size, lr):
    """The cpu preset with the Train section's settings; the panel's learning rate is G's."""
    return gan.FAMILY.config("cpu", dataset=dataset, conditional=bool(conditional), loss=loss,
                             critic_steps=int(critic_steps), gp_weight=float(gp_weight),
                             label_smoothing=float(label_smoothing), label_noise=float(label_noise),
                             dropout=float(dropout), lr_d=float(lr_d), lr_g=lr, steps=steps, batch_size=batch_size)


class Monitor:
    """One run's fixed-noise previews, kept for the replay (uint8, at most ``MAX_FRAMES``), and the
    diversity verdict on the latest one. It lives with the run (``job.keep``), so every poll of the
    run (a second window of the owner's, a reconnect) sees the same replay."""

    def __init__(self, job):
        self.job = job
        self.frames: list[tuple[int, np.ndarray]] = []
        self.notes = ""
        self._step = None
        self._lock = threading.Lock()

    def update(self) -> bool:
        """Take in the run's latest preview if it is new; True when one was added."""
        with self._lock:
            p = self.job.progress
            if p is None or p.preview is None or p.step == self._step:
                return False
            self._step = p.step
            self.frames.append((p.step, widgets.mosaic(p.preview, 4, pad=1)))
            while len(self.frames) > MAX_FRAMES:  # keep every other one (and the newest): memory stays bounded
                self.frames = self.frames[:-1][::2] + self.frames[-1:]
            div = gan.diversity(p.preview, self.job.config.dataset)
            warnings = gan.diagnose(p.metrics, div, self.job.config.loss)
            self.notes = (f"Step {p.step}: diversity **{div['diversity']:.2f}** (real data ≈ 1), "
                          f"{div['classes_seen']} of 10 classes seen in the fixed-noise grid.  \n"
                          + ("  \n".join(warnings) if warnings else "No sign of collapse."))
            return True


def follow_run(job) -> list:
    """On every poll of a run: the diversity notes, the replay's frames, and its slider at the newest."""
    monitor = job.keep.setdefault("gan_monitor", Monitor(job))
    added = monitor.update()
    n = len(monitor.frames)
    slider = gr.update(maximum=max(n - 1, 1), value=n - 1) if added else gr.update()
    return [monitor.notes, list(monitor.frames), slider]


@friendly
def switch_live(loss, d_steps_per_g_step, gradient_penalty_weight, label_smoothing, label_noise, d_learning_rate,
                lr, request: gr.Request = None):
    """Apply these settings to the visitor's own GAN run in progress: queued now, applied all at once
    by the training thread between two steps (and marked on the curves). Only the run's owner may."""
    job = jobs.JOBS.current
    if job is None or not job.running or job.family != FAMILY:
        return "No GAN training in progress: start one, then apply settings to it while it runs."
    changes = {"loss": loss, "critic_steps": int(d_steps_per_g_step), "gp_weight": float(gradient_penalty_weight),
               "label_smoothing": float(label_smoothing), "label_noise": float(label_noise),
               "lr_d": float(d_learning_rate), "lr_g": float(lr)}
    owner = owner_of(request)
    # the owner's values are checked before they are queued; anyone else is refused by JOBS.change
    todo = gan.check_switch(job.config, changes) if job.owner == owner else []
    jobs.JOBS.change(owner, FAMILY, changes, gan.switch)
    step = job.progress.step if job.progress else 0
    if not todo:
        return f"Step {step}: these are the run's settings already; nothing changes."
    return f"Step {step}: queued {'; '.join(todo)}; applied together before the next step (marked on the curves)."


@friendly
def replay(frames, k):
    if not frames:
        raise ValueError("Train first: the replay shows the fixed-noise grids of your last run.")
    k = int(k)
    if not 0 <= k < len(frames):
        raise ValueError(f"Preview number must be from 0 to {len(frames) - 1}.")
    step, frame = frames[k]
    return widgets.upscale(frame, 4), f"Fixed-noise samples at step {step}"


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A GAN is a game: the generator turns noise into images, the discriminator tells them from "
                "real ones, and each learns from the other. Nothing ties G to the data but D's gradients, so "
                "training can collapse or oscillate: watch the losses, gradient norms and diversity as it "
                "trains. (Chollet ch. 12, Foster ch. 4, Goodfellow ch. 20.)")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMILY, "gan_mnist", "gan")
    ckpt = header.dropdown
    frames = parts.visitor_state([])
    with gr.Column():  # sections, not nested tabs
        with gr.Accordion("Samples", open=True):
            with gr.Row():
                seed = widgets.seed_box()
                n = gr.Slider(1, MAX_SAMPLES, value=36, step=1, label="Number of samples")
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05,
                                        label="Temperature (z scale; < 1 is the truncation trick)")
                class_name = gr.Dropdown(EVERY_CLASS, value=ANY_CLASS, label="Class")
                go = gr.Button("Generate", variant="primary", elem_id="gan-generate")
            s_img = gr.Image(label="Samples", format="png", interactive=False, elem_id="gan-samples")
            s_out = parts.output_panel()
        with gr.Accordion("Class × seed grid (conditional models)", open=True):
            with gr.Row():
                g_seed = widgets.seed_box(label="First seed")
                g_k = gr.Slider(1, gan.MAX_GRID_SEEDS, value=8, step=1, label="Seeds (columns)")
                g_temp = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature")
                g_go = gr.Button("Draw grid", variant="primary")
            g_img = gr.Image(label="Class × seed", format="png", interactive=False)
        with gr.Accordion("Latent interpolation (GAN vs VAE)", open=True):
            with gr.Row():
                i_a = widgets.seed_box(1, label="From seed")
                i_b = widgets.seed_box(2, label="To seed")
                i_steps = gr.Slider(2, 16, value=10, step=1, label="Steps")
                i_method = gr.Radio(["linear", "spherical"], value="spherical", label="Path")
                i_class = gr.Dropdown(EVERY_CLASS, value=ANY_CLASS, label="Class")
                i_go = gr.Button("Interpolate", variant="primary")
            i_note = gr.Markdown(label="Smoothness")
            i_gan = gr.Image(label="GAN", format="png", interactive=False)
            i_vae = gr.Image(label="VAE (latent 16) between codes from the same seeds", format="png",
                             interactive=False)
        with gr.Accordion("Checkerboard artefacts", open=False):
            gr.Markdown("A transposed convolution spreads each input pixel over a kernel-sized patch, `stride` "
                        "pixels apart. With kernel 3 and stride 2 the patches overlap unevenly: some output pixels "
                        "get one contribution, some two, some four, which shows as a checkerboard even for a "
                        "constant input, and stacking layers compounds it. Kernel 4 with stride 2 (this "
                        "generator's choice) overlaps evenly, and so does resize-then-convolve "
                        "([Odena et al. 2016](https://distill.pub/2016/deconv-checkerboard/)). All kernels are ones.")
            c_layers = gr.Slider(1, 3, value=1, step=1, label="Upsampling layers")
            c_img = gr.Image(label="Constant 6×6 input, upsampled", format="png", interactive=False)
        shown = {}  # the replay's components, made beside the live preview

        def preview():
            live = gr.Image(label="Fixed-noise samples (live)", format="png", interactive=False)
            with gr.Column():
                shown["notes"] = gr.Markdown(label="Diversity")
                shown["slider"] = gr.Slider(0, 1, value=0, step=1, label="Replay: preview number")
                shown["label"] = gr.Markdown(label="Replayed step")
                shown["image"] = gr.Image(label="Fixed-noise samples then", format="png", interactive=False)
            return live

        with parts.TrainPanel(header, "Train a small DCGAN here (the cpu preset: G 64-32, D 32-64-64). A step at "
                              "batch 64 takes about 0.16 s on an idle CPU core: 500 steps give blobs, 1,000 to "
                              "2,000 give digits. Try making it fail: D learning rate 10× G's, no label noise, "
                              "dropout 0. Cancel keeps the checkpoint; Resume continues it; a diverging run stops "
                              "and keeps its last good checkpoint.", steps_default=500, batches=(16, 32, 64, 128),
                              batch_default=64, lr_default=2e-4, lr_label="G learning rate", run_name="my_gan",
                              preview=preview, elem_id="gan-train") as train:
            with gr.Column():
                with gr.Row():
                    t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                    t_cond = gr.Checkbox(value=True, label="Class-conditional")
                    t_loss = gr.Radio(list(gan.LOSSES), value="bce", label="Loss")
                    t_critic = gr.Slider(1, 10, value=1, step=1, label="D steps per G step (5 for WGAN-GP)")
                    t_gp = gr.Number(value=10.0, label="Gradient-penalty weight (λ)")
                with gr.Row():
                    t_smooth = gr.Slider(0.0, 0.5, value=0.0, step=0.05, label="Label smoothing")
                    t_noise = gr.Slider(0.0, 0.5, value=0.05, step=0.01, label="Label noise")
                    t_drop = gr.Slider(0.0, 0.9, value=0.2, step=0.05, label="D dropout")
                    t_lr_d = gr.Number(value=2e-4, label="D learning rate")
                with gr.Row():
                    t_switch = gr.Button("Apply loss, D steps, λ, label smoothing/noise and learning rates to "
                                         "your running run", elem_id="gan-train-switch")
                    t_switched = gr.Markdown(label="Live change")

    # a new checkpoint (or the page's first load) refreshes every view that depends on it
    sample_inputs = [ckpt, seed, n, temperature, class_name]
    grid_inputs = [ckpt, g_seed, g_k, g_temp]
    interp_inputs = [ckpt, i_a, i_b, i_steps, i_method, i_class]
    header.then(class_choices, ckpt, [class_name, i_class]) \
        .then(samples, sample_inputs, [s_img, *s_out.outputs]) \
        .then(grid_view, grid_inputs, g_img) \
        .then(interpolation, interp_inputs, [i_gan, i_vae, i_note])
    page.on_load(checkerboard_demo, c_layers, c_img)
    page.action(go.click, samples, sample_inputs, [s_img, *s_out.outputs], api_name="gan_samples")
    page.action(g_go.click, class_seed_grid, grid_inputs, g_img, api_name="gan_class_grid")
    page.action(i_go.click, interpolation, interp_inputs, [i_gan, i_vae, i_note], api_name="gan_interpolate")
    page.action(c_layers.change, checkerboard_demo, c_layers, c_img, api_name="gan_checkerboard")
    train.wire(page, train_config, [t_data, t_cond, t_loss, t_critic, t_gp, t_smooth, t_noise, t_drop, t_lr_d], KEYS,
               api_prefix="gan", extra_outputs=[shown["notes"], frames, shown["slider"]], extra=follow_run)
    page.action(t_switch.click, switch_live, [t_loss, t_critic, t_gp, t_smooth, t_noise, t_lr_d, train.lr],
                t_switched, api_name="gan_train_switch", lane="control")
    shown["slider"].change(replay, [frames, shown["slider"]], [shown["image"], shown["label"]], api_name=False,
                           show_progress="hidden")
