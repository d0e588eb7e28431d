"""The GAN tab: seeded samples, a class × seed grid for conditional models, latent interpolation next
to the VAE's, the checkerboard-artefact demo, and training in the page with live D/G losses,
gradient norms, a diversity score with a "mode collapse?" flag, and a fixed-noise grid that can be
replayed step by step afterwards."""
from __future__ import annotations

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models.core import data
from models.image import gan, vae
from models.core.family import seeded
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "GAN"
FAMILY = "gan"
ANY_CLASS = "any (random)"
MAX_SAMPLES = 64
KEYS = ["d_loss", "g_loss", "d_grad_norm", "g_grad_norm"]


def loaded(name: str):
    return widgets.load(FAMILY, name)



def _class_index(config, class_name) -> int | None:
    if class_name in (None, "", ANY_CLASS):
        return None
    classes = data.class_names(config.dataset)
    if class_name not in classes:
        raise ValueError(f"Unknown class {class_name!r} for {config.dataset}.")
    if not config.conditional:
        raise ValueError("This checkpoint is unconditional: choose a class-conditional one to pick a class.")
    return classes.index(class_name)


@friendly
def select_checkpoint(name: str):
    if not name:
        return "No GAN checkpoint yet: train one below.", gr.update(), gr.update()
    _, config, card = loaded(name)
    classes = gr.update(choices=[ANY_CLASS] + data.class_names(config.dataset), value=ANY_CLASS,
                        interactive=config.conditional)
    text = widgets.card_markdown(card)
    m = card.get("metrics", {})
    if "d_on_real_test" in m:
        text += (f"  \nD's belief that an image is real: {m['d_on_real_test']:.2f} on held-out real images, "
                 f"{m['d_on_fake']:.2f} on fakes (both near 0.5 would mean it can no longer tell them apart)")
    return text, classes, classes


@friendly
def samples(name, seed, n, temperature, class_name):
    """A seeded grid: the same seed, count, temperature and class give the same images."""
    model, config, _ = loaded(name)
    n = int(n)
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"Number of samples must be from 1 to {MAX_SAMPLES}; got {n}.")
    c = _class_index(config, class_name)
    labels = None if c is None else [c] * n
    x = next(gan.sample(model, n, generator=seeded(widgets.seed_of(seed)), temperature=float(temperature), labels=labels))
    what = "random classes" if config.conditional and c is None else (class_name if c is not None else "")
    caption = f"{name}: {n} samples, seed {widgets.seed_of(seed)}, temperature {float(temperature):g}" + (f", {what}" if what else "")
    return widgets.mosaic(x, int(np.ceil(np.sqrt(n))), pad=1, scale=4), caption


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
def class_seed_grid(name, first_seed, n_seeds, temperature):
    """Rows: classes; columns: seeds. One z per column, so a column shows one "style" across classes."""
    model, config, _ = loaded(name)
    if not config.conditional:
        raise ValueError("The class × seed grid needs a class-conditional checkpoint (gan_mnist or gan_fashion).")
    k = int(n_seeds)
    if not 1 <= k <= 12:
        raise ValueError(f"Seeds per class must be from 1 to 12; got {k}.")
    first = widgets.seed_of(first_seed)
    z = torch.cat([gan.noise(1, model.latent_dim, seeded(first + j), float(temperature)) for j in range(k)])
    labels = torch.arange(gan.CLASSES).repeat_interleave(k)
    x = gan.generate(model, z.repeat(gan.CLASSES, 1), labels)
    return labelled_grid(x, data.class_names(config.dataset), [f"seed {first + j}" for j in range(k)],
                         f"{name}: one latent code per column, one class per row")


def smoothness(images: torch.Tensor) -> str:
    """Mean pixel change per interpolation step, and the largest step relative to it (1 = even)."""
    d = (images[1:] - images[:-1]).flatten(1).norm(dim=1)
    return f"mean step {d.mean():.2f}, largest/mean {(d.max() / d.mean().clamp_min(1e-9)):.2f}"


@friendly
def interpolation(name, seed_a, seed_b, steps, method, class_name):
    """A latent walk between the codes of two seeds, and the same walk through the VAE (latent 16) of
    the same dataset when it ships, for comparing how smoothly each changes."""
    model, config, _ = loaded(name)
    a, b = widgets.seed_of(seed_a), widgets.seed_of(seed_b)
    steps = int(steps)
    z = vae.interpolate(gan.noise(1, model.latent_dim, seeded(a))[0], gan.noise(1, model.latent_dim, seeded(b))[0],
                        steps, method)
    c = _class_index(config, class_name)
    if config.conditional and c is None:
        c = int(torch.randint(0, gan.CLASSES, (1,), generator=seeded(a)))
    x = gan.generate(model, z, None if c is None else [c] * steps)
    strip = widgets.mosaic(x, steps, pad=1, scale=3)
    notes = [f"GAN ({name}{', class ' + data.class_names(config.dataset)[c] if c is not None else ''}): {smoothness(x)}"]
    vae_strip = None
    vae_name = f"vae_{config.dataset}_z16"
    if vae_name in widgets.checkpoint_paths("vae"):
        v_model, _, _ = widgets.load("vae", vae_name)
        zv = vae.interpolate(torch.randn(v_model.latent_dim, generator=seeded(a)),
                             torch.randn(v_model.latent_dim, generator=seeded(b)), steps, method)
        xv = vae.decode(v_model, zv)
        vae_strip = widgets.mosaic(xv, steps, pad=1, scale=3)
        notes.append(f"VAE ({vae_name}, unconditional): {smoothness(xv)}")
    return strip, vae_strip, "  \n".join(notes)


@friendly
def checkerboard_demo(layers):
    """Each upsampling applied to a constant image: uneven overlap shows as a checkerboard."""
    fig = Figure(figsize=(9, 3.2), dpi=90, layout="constrained")
    outs = {how: gan.checkerboard(how, int(layers), size=6) for how in gan.UPSAMPLINGS}
    top = max(2.0, max(float(x.max()) for x in outs.values()))
    m = 2 ** int(layers)  # border pixels see fewer patches whatever the method: judge the inside
    for i, (how, x) in enumerate(outs.items()):
        ax = fig.add_subplot(1, 3, i + 1)
        im = ax.imshow(x.numpy(), cmap="magma", vmin=0, vmax=top)
        inner = x[m:-m, m:-m]
        ax.set_title(f"{how}\ninside: {float(inner.min()):.2f}–{float(inner.max()):.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="output ÷ median")
    return widgets.figure_to_array(fig)


# --- training ---

class Monitor:
    """Renders the fixed-noise previews as they arrive, keeps them for replay, and scores diversity."""

    def __init__(self, job):
        self.job = job
        self.frames: list[tuple[int, np.ndarray]] = []
        self.notes = ""

    def render(self, images):
        p = self.job.progress
        step = p.step if p else 0
        frame = widgets.mosaic(images, 4, pad=1, scale=4)
        self.frames.append((step, frame))
        div = gan.diversity(images, self.job.config.dataset)
        warnings = gan.diagnose(p.metrics if p else {}, div, self.job.config.loss)
        self.notes = (f"Step {step}: diversity **{div['diversity']:.2f}** (real data ≈ 1), "
                      f"{div['classes_seen']} of 10 classes seen in the fixed-noise grid.  \n"
                      + ("  \n".join(warnings) if warnings else "No sign of collapse."))
        return frame


MARKS: dict[str, list] = {}  # run name -> [(step, what changed)] for settings switched mid-run


def _marked(fig, marks):
    """Dotted lines on every curve panel where settings were switched."""
    if fig is None or not hasattr(fig, "axes"):
        return fig
    for ax in fig.axes:
        for step, what in marks:
            ax.axvline(step, color="k", ls=":", lw=1)
            ax.text(step, ax.get_ylim()[1], f" {what}", fontsize=6, va="top", rotation=90)
    return fig


def _stream(job, current):
    monitor = Monitor(job)
    marks = MARKS.setdefault(job.name, [])
    marks.clear()
    for status, curves, preview, choices in stream(job, FAMILY, KEYS, current, render=monitor.render):
        curves = _marked(curves, marks)
        n = len(monitor.frames)
        replay = gr.update(maximum=max(n - 1, 1), value=max(n - 1, 0)) if n else gr.update()
        yield status, curves, preview, choices, monitor.notes, list(monitor.frames), replay


@friendly
def train_start(dataset, conditional, loss, critic_steps, gp_weight, smoothing, label_noise, dropout,
                lr_d, lr_g, steps, batch, run_name, current):
    config = gan.FAMILY.config("cpu", dataset=dataset, conditional=bool(conditional), loss=loss,
                               critic_steps=int(critic_steps), gp_weight=float(gp_weight),
                               label_smoothing=float(smoothing), label_noise=float(label_noise),
                               dropout=float(dropout), lr_d=float(lr_d), lr_g=float(lr_g), steps=int(steps),
                               batch_size=int(batch))
    job = JOBS.start(FAMILY, (run_name or "").strip(), config)
    yield from _stream(job, current)


@friendly
def train_resume(run_name, steps, current):
    job = JOBS.resume(FAMILY, run_name, steps)
    yield from _stream(job, current)


@friendly
def switch_live(loss, critic_steps, gp_weight, smoothing, label_noise, lr_d, lr_g):
    """Apply the training settings to the run in progress; they take effect at its next step."""
    job = JOBS.current
    if job is None or not job.running or job.family != FAMILY:
        raise ValueError("No GAN training in progress: start one, then switch its settings while it runs.")
    done = gan.switch(job.config, loss=loss, critic_steps=int(critic_steps), gp_weight=float(gp_weight),
                      label_smoothing=float(smoothing), label_noise=float(label_noise), lr_d=float(lr_d),
                      lr_g=float(lr_g))
    if not done:
        return "Nothing changed."
    step = job.progress.step if job.progress else 0
    MARKS.setdefault(job.name, []).append((step, "; ".join(done)))
    return f"At step {step}: " + "; ".join(done) + " (marked on the curves)."


@friendly
def replay(frames, k):
    if not frames:
        raise ValueError("Train first: the replay shows the fixed-noise grids of the last run.")
    k = int(k)
    if not 0 <= k < len(frames):
        raise ValueError(f"Preview number must be from 0 to {len(frames) - 1}.")
    step, frame = frames[k]
    return frame, f"Fixed-noise samples at step {step}"


# --- layout ---

def build(page):
    demo = page.demo
    choices = widgets.checkpoint_choices(FAMILY)
    names = [v for _, v in choices]
    default = "gan_mnist" if "gan_mnist" in names else (names[0] if names else None)
    gr.Markdown("A GAN is a game: the generator turns noise into images, the discriminator tells them from "
                "real ones, and each learns from the other. Nothing ties G to the data but D's gradients, so "
                "training can collapse or oscillate: watch the losses, gradient norms and diversity as it "
                "trains. (Chollet ch. 12, Foster ch. 4, Goodfellow ch. 20.)")
    with gr.Row():
        ckpt = gr.Dropdown(choices, value=default, label="Checkpoint", scale=2, elem_id="gan-checkpoint")
        card = gr.Markdown()
    frames = gr.State([])
    with gr.Column():  # sections, not nested tabs
        with gr.Accordion("Samples", open=True):
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed")
                n = gr.Slider(1, MAX_SAMPLES, value=36, step=1, label="Samples")
                temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05,
                                        label="Temperature (z scale; < 1 is the truncation trick)")
                class_name = gr.Dropdown([ANY_CLASS], value=ANY_CLASS, label="Class")
                go = gr.Button("Generate", variant="primary", elem_id="gan-generate")
            s_caption = gr.Markdown()
            s_img = gr.Image(label="Samples", format="png", interactive=False, elem_id="gan-samples")
        with gr.Accordion("Class × seed grid (conditional models)", open=True):
            with gr.Row():
                g_seed = gr.Number(value=0, precision=0, label="First seed")
                g_k = gr.Slider(1, 12, value=8, step=1, label="Seeds (columns)")
                g_temp = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature")
                g_go = gr.Button("Draw grid", variant="primary")
            g_img = gr.Image(label="Class × seed", format="png", interactive=False)
        with gr.Accordion("Latent interpolation (GAN vs VAE)", open=True):
            with gr.Row():
                i_a = gr.Number(value=1, precision=0, label="From seed")
                i_b = gr.Number(value=2, precision=0, label="To seed")
                i_steps = gr.Slider(2, 16, value=10, step=1, label="Steps")
                i_method = gr.Radio(["linear", "spherical"], value="spherical", label="Path")
                i_class = gr.Dropdown([ANY_CLASS], value=ANY_CLASS, label="Class")
                i_go = gr.Button("Interpolate", variant="primary")
            i_note = gr.Markdown()
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
        with gr.Accordion("Train", open=True):
            gr.Markdown("Train a small DCGAN here (the cpu preset: G 64-32, D 32-64-64). A step at batch 64 takes "
                        "about 0.16 s on an idle CPU core: 500 steps give blobs, 1,000 to 2,000 give digits. Try making it "
                        "fail: D learning rate 10× G's, no label noise, dropout 0. Cancel keeps the checkpoint; "
                        "Resume continues it; a diverging run stops and keeps its last good checkpoint.")
            with gr.Row():
                t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
                t_cond = gr.Checkbox(value=True, label="Class-conditional")
                t_loss = gr.Radio(list(gan.LOSSES), value="bce", label="Loss")
                t_critic = gr.Slider(1, 10, value=1, step=1, label="D steps per G step (5 for WGAN-GP)")
                t_gp = gr.Number(value=10.0, label="Gradient-penalty weight λ")
            with gr.Row():
                t_smooth = gr.Slider(0.0, 0.5, value=0.0, step=0.05, label="Label smoothing")
                t_noise = gr.Slider(0.0, 0.5, value=0.05, step=0.01, label="Label noise")
                t_drop = gr.Slider(0.0, 0.9, value=0.2, step=0.05, label="D dropout")
                t_lr_d = gr.Number(value=2e-4, label="D learning rate")
                t_lr_g = gr.Number(value=2e-4, label="G learning rate")
            with gr.Row():
                t_steps = gr.Slider(10, 20000, value=500, step=10, label="Steps")
                t_batch = gr.Dropdown([16, 32, 64, 128], value=64, label="Batch size")
                t_name = gr.Textbox(value="my_gan", label="Run name")
                t_start = gr.Button("Start", variant="primary")
                t_resume = gr.Button("Resume")
                t_cancel = gr.Button("Cancel", variant="stop")
            with gr.Row():
                t_switch = gr.Button("Apply loss, D steps, λ, label smoothing/noise and learning rates to the "
                                     "running run")
                t_switched = gr.Markdown()
            t_status = gr.Markdown()
            t_notes = gr.Markdown()
            with gr.Row():
                t_curves = gr.Plot(show_label=False)
            with gr.Row():
                t_preview = gr.Image(label="Fixed-noise samples (live)", format="png", interactive=False)
                with gr.Column():
                    r_slider = gr.Slider(0, 1, value=0, step=1, label="Replay: preview number")
                    r_label = gr.Markdown()
                    r_img = gr.Image(label="Fixed-noise samples then", format="png", interactive=False)

    for event in (ckpt.change, demo.load):
        event(select_checkpoint, ckpt, [card, class_name, i_class], api_name=False)
    inputs = [ckpt, seed, n, temperature, class_name]
    go.click(samples, inputs, [s_img, s_caption], api_name="gan_samples")
    demo.load(samples, inputs, [s_img, s_caption], api_name=False)
    g_go.click(class_seed_grid, [ckpt, g_seed, g_k, g_temp], g_img, api_name=False)
    demo.load(class_seed_grid, [ckpt, g_seed, g_k, g_temp], g_img, api_name=False)
    i_go.click(interpolation, [ckpt, i_a, i_b, i_steps, i_method, i_class], [i_gan, i_vae, i_note], api_name=False)
    demo.load(interpolation, [ckpt, i_a, i_b, i_steps, i_method, i_class], [i_gan, i_vae, i_note], api_name=False)
    c_layers.change(checkerboard_demo, c_layers, c_img, api_name=False)
    demo.load(checkerboard_demo, c_layers, c_img, api_name=False)
    outs = [t_status, t_curves, t_preview, ckpt, t_notes, frames, r_slider]
    t_start.click(train_start, [t_data, t_cond, t_loss, t_critic, t_gp, t_smooth, t_noise, t_drop, t_lr_d, t_lr_g,
                                t_steps, t_batch, t_name, ckpt], outs, show_progress_on=[t_status], api_name=False)
    t_resume.click(train_resume, [t_name, t_steps, ckpt], outs, show_progress_on=[t_status], api_name=False)
    t_cancel.click(JOBS.cancel, None, t_status, api_name=False)
    t_switch.click(switch_live, [t_loss, t_critic, t_gp, t_smooth, t_noise, t_lr_d, t_lr_g], t_switched,
                   api_name=False)
    r_slider.change(replay, [frames, r_slider], [r_img, r_label], api_name=False, show_progress="hidden")
