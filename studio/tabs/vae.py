"""The VAE tab: latent grid, clickable latent map, encode-your-own, interpolation and attribute
arithmetic, prior samples, and training in the page.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from models.core import data, evaluate
from models.core.family import check_range, last, seeded
from models.image import vae
from studio import parts, widgets
from studio.tabs import hvae as hierarchical
from studio.widgets import friendly

TITLE = "VAE"
DATA_NOTE = ("**Data.** Chollet's VAE learns MNIST and Foster's first one Fashion-MNIST, as here; Foster's face VAE "
             "learns CelebA, which no installable package ships, so its attribute vectors (a smile added to a "
             "face) become vectors between digits or garments.")
FAMILY = "vae"
N_SLIDERS = 8  # sliders for the first latent dims; the map shows the first two
MAP_POINTS = 5000  # encoded test images on the latent map
SLIDER_RANGE = 4.0
RED, BLUE, BLACK = (220, 30, 30), (30, 60, 220), (0, 0, 0)
PRIOR = "prior N(0, I)"
AGGREGATE = "aggregate posterior q(z) (GMM by EM)"


@dataclass
class Loaded:
    """A checkpoint in memory, with the views that depend only on it, computed on first use."""

    name: str
    model: vae.VAE
    config: vae.VAEConfig
    card: dict

    @functools.cached_property
    def encoded(self):
        x, y = data.images(self.config.dataset, "test")
        mu, _ = vae.encode(self.model, x[:MAP_POINTS])
        return mu, y[:MAP_POINTS]

    @functools.cached_property
    def class_means(self) -> torch.Tensor:
        x, y = data.images(self.config.dataset, "test")
        return vae.class_means(self.model, x, y, len(data.class_names(self.config.dataset)))

    @functools.cached_property
    def q_z(self):
        """The aggregate posterior as a GMM, fitted once per checkpoint (as its card's opening scores are)."""
        return vae.fit_q_z(self.model, self.config.dataset)

    @functools.cached_property
    def map(self) -> widgets.ScatterMap:
        mu, y = self.encoded
        return widgets.ScatterMap(mu[:, 0].numpy(), mu[:, 1].numpy() if mu.shape[1] > 1 else np.zeros(len(mu)),
                                  y.numpy(), data.class_names(self.config.dataset))


@functools.lru_cache(maxsize=6)
def _views(name: str, model: vae.VAE) -> Loaded:
    return Loaded(name, model, *widgets.load(FAMILY, name)[1:])


def loaded(name: str) -> Loaded:
    """The checkpoint with its derived views (cached with the model, so a changed file starts afresh)."""
    return _views(name, widgets.load(FAMILY, name)[0])


def show(images, nrow: int, scale: int) -> np.ndarray:
    return widgets.mosaic(images, nrow, pad=1 if scale > 1 else 0, scale=scale)


def held_out_image(dataset: str, index) -> torch.Tensor:
    x, _ = data.images(dataset, "test")
    if index is None or not 0 <= int(index) < len(x) or int(index) != index:
        raise ValueError(f"Test image number must be a whole number from 0 to {len(x) - 1}; got {index}.")
    return x[int(index)][None]


# --- handlers ---

@friendly
def select_checkpoint(checkpoint: str):
    """Latent map and slider layout for a newly chosen checkpoint (the header shows its card)."""
    m = loaded(checkpoint)
    dim = m.config.latent_dim
    sliders = [gr.update(visible=i < dim, value=0.0) for i in range(N_SLIDERS)]
    note = (f"Latent size {dim}: the sliders move the first {min(dim, N_SLIDERS)} dims; the map and "
            "the grid use z₁ and z₂ (other dims at 0)." if dim > 2 else "")
    return [m.map.draw(), note, *sliders]


@friendly
def latent_grid(checkpoint: str, n: int, extent: float):
    """n×n decoded images over [-extent, extent]² on z₁, z₂, drawn with labelled axes."""
    m = loaded(checkpoint)
    n = int(n)
    z = vae.latent_grid(n, float(extent), m.config.latent_dim)
    tile = widgets.mosaic(vae.decode(m.model, z), n, pad=0)
    fig = Figure(figsize=(7.5, 7.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(tile, cmap="gray", vmin=0, vmax=255, extent=(-extent, extent, -extent, extent),
              interpolation="nearest")
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title(f"{checkpoint}: decoder output over a {n}×{n} grid", fontsize=10)
    return widgets.figure_to_array(fig)


@friendly
def decode_point(checkpoint: str, z1=0.0, z2=0.0, z3=0.0, z4=0.0, z5=0.0, z6=0.0, z7=0.0, z8=0.0):
    """Decode the code set by the sliders; returns the image and the map with the point marked."""
    m = loaded(checkpoint)
    dim = m.config.latent_dim
    code = torch.zeros(1, dim)
    k = min(dim, N_SLIDERS)
    values = [float(v) for v in (z1, z2, z3, z4, z5, z6, z7, z8)[:k]]
    for i, v in enumerate(values):
        check_range(f"z{i + 1}", v, -SLIDER_RANGE, SLIDER_RANGE)
    code[0, :k] = torch.tensor(values)
    image = widgets.upscale(widgets.mosaic(vae.decode(m.model, code), 1, pad=0), 8)
    y = float(code[0, 1]) if dim > 1 else 0.0
    return image, m.map.draw(points=[(float(code[0, 0]), y, RED)])


def map_click(name: str, evt: gr.SelectData):
    """A click on the latent map sets z₁, z₂ to the clicked point (the sliders then decode it)."""
    try:
        m = loaded(name)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    x, y = m.map.to_data(*evt.index[:2])
    clip = lambda v: float(np.clip(round(v, 2), -SLIDER_RANGE, SLIDER_RANGE))
    return clip(x), clip(y)


def _read_upload(file_path) -> np.ndarray:
    return _gray(widgets.read_image(file_path))


def _gray(im: Image.Image) -> np.ndarray:
    """Grayscale in [0, 1], transparent parts treated as white paper."""
    rgba = im.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(paper, rgba).convert("L"), np.float32) / 255


def _read_sketch(sketch) -> np.ndarray:
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        raise ValueError("The sketch is empty: draw a digit first.")
    return _gray(Image.fromarray(np.asarray(composite).astype(np.uint8)))


def _encode(name: str, gray: np.ndarray):
    m = loaded(name)
    x = data.prepare_image(gray, m.config.dataset)
    mu, sigma = vae.encode(m.model, x)
    recon = vae.decode(m.model, mu)
    pair = widgets.upscale(widgets.mosaic(torch.cat([x, recon]), 2, pad=1), 6)
    mu1 = float(mu[0, 1]) if mu.shape[1] > 1 else 0.0
    s1 = float(sigma[0, 1]) if mu.shape[1] > 1 else 0.0
    ellipses = [(float(mu[0, 0]), mu1, k * float(sigma[0, 0]), k * s1, BLACK) for k in (1, 2)]
    fmt = lambda t: ", ".join(f"{v:.2f}" for v in t[0, :N_SLIDERS].tolist())
    text = (f"μ = ({fmt(mu)}{', …' if mu.shape[1] > N_SLIDERS else ''})  \n"
            f"σ = ({fmt(sigma)}{', …' if mu.shape[1] > N_SLIDERS else ''}); the ellipses on the map are 1σ and 2σ.")
    return pair, m.map.draw(points=[(float(mu[0, 0]), mu1, RED)], ellipses=ellipses), text


@friendly
def encode_sketch(checkpoint: str, sketch):
    """Your drawing -> its μ and σ on the map, and its reconstruction (left: input as the model sees it)."""
    return _encode(checkpoint, _read_sketch(sketch))


@friendly
def encode_upload(checkpoint: str, file_path):
    return _encode(checkpoint, _read_upload(file_path))


@friendly
def interpolation(checkpoint: str, index_a, index_b, steps: int, method: str):
    """Decode the path between two test images' codes; the originals frame the strip."""
    m = loaded(checkpoint)
    a, b = held_out_image(m.config.dataset, index_a), held_out_image(m.config.dataset, index_b)
    mu, _ = vae.encode(m.model, torch.cat([a, b]))
    frames = vae.decode(m.model, vae.interpolate(mu[0], mu[1], int(steps), method))
    strip = show(torch.cat([a, frames, b]), len(frames) + 2, 4)
    record = parts.provenance(FAMILY, checkpoint, image_a=int(index_a), image_b=int(index_b), steps=int(steps),
                              method=method)
    gif = widgets.save_gif([widgets.mosaic(f[None], 1, pad=0, scale=6) for f in frames],
                           f"{checkpoint}_{int(index_a)}_{int(index_b)}_{method}.gif", comment=json.dumps(record))
    return strip, gif


@friendly
def arithmetic(checkpoint: str, index, from_class: str, to_class: str, strength: float):
    """z + s·(mean code of class B − mean code of class A), for s from 0 to the strength."""
    m = loaded(checkpoint)
    classes = data.class_names(m.config.dataset)
    if from_class not in classes or to_class not in classes:
        raise ValueError(f"Choose two classes of {m.config.dataset}.")
    check_range("strength", float(strength), -3.0, 3.0)
    x = held_out_image(m.config.dataset, index)
    mu, _ = vae.encode(m.model, x)
    path = vae.attribute_path(mu, m.class_means, classes.index(from_class), classes.index(to_class), float(strength))
    return show(torch.cat([x, vae.decode(m.model, path)]), 9, 4)


@friendly
def samples(checkpoint: str, seed, n, scale: float, source: str = PRIOR):
    """Samples decoded from the prior z ~ N(0, scale² I) or from the aggregate posterior's mixture,
    plus how the project's classifier scores them (beside its calibration rows); returns the image,
    its caption, its provenance record and the PNG download."""
    m = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    if n is None or int(n) != n:
        raise ValueError(f"Number of samples must be a whole number; got {n}.")
    n = int(n)
    check_range("Number of samples", n, 1, 100)
    if source not in (PRIOR, AGGREGATE):
        raise ValueError(f"Sample from {PRIOR!r} or {AGGREGATE!r}; got {source!r}.")
    mixture = m.q_z if source == AGGREGATE else None
    images = last(vae.sample(m.model, n, generator=seeded(seed), scale=float(scale), mixture=mixture))
    picture = show(images, int(np.ceil(np.sqrt(n))), 4)
    where = vae.Q_SETTING if mixture else "prior N(0, I)"
    md = f"seed {seed}, {n} samples from the {where}, scale {float(scale):g}, checkpoint {checkpoint}"
    if n >= 2:
        md += "  \nClassifier on these samples: " + widgets.score_text(evaluate.score(images, m.config.dataset))
        md += "".join("  \n" + line for line in widgets.calibration_lines(evaluate.calibration(m.config.dataset, n)))
    record = parts.provenance(FAMILY, checkpoint, seed, n=n, prior_scale=float(scale), source=source)
    return picture, *parts.publish(picture, record, md, f"{checkpoint}_seed{seed}.png")


# --- training ---

def train_config(dataset, latent, beta, *, steps, batch_size, lr):
    """The book's architecture with the Train section's settings (dense layer grows with the latent)."""
    latent = int(latent)
    return vae.FAMILY.config("book", dataset=dataset, latent_dim=latent, hidden=max(16, 4 * latent),
                             beta=float(beta), steps=steps, batch_size=batch_size, lr=lr)


@friendly
def class_choices(checkpoint: str):
    """The attribute-arithmetic class lists follow the checkpoint's dataset (defaults: 1 -> 7)."""
    classes = data.class_names(loaded(checkpoint).config.dataset)
    return gr.update(choices=classes, value=classes[1]), gr.update(choices=classes, value=classes[7])


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A variational autoencoder learns an encoder q(z|x) and a decoder p(x|z) by maximising the "
                "ELBO: reconstruction − β·KL(q(z|x) ‖ N(0, I)). The KL term packs codes around the origin, "
                "so any nearby point decodes to something plausible. (Chollet ch. 12, Foster ch. 3.)")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMILY, "vae_mnist", "vae")
    ckpt = header.dropdown
    with gr.Column():  # sections, not nested tabs: every view is one scroll away
        with gr.Accordion("Latent map", open=True):
            note = gr.Markdown()
            with gr.Row():
                map_img = gr.Image(label=f"Latent map: {MAP_POINTS} test images encoded (μ), coloured by label; "
                                   "click to decode", format="png", interactive=False, elem_id="vae-map",
                                   buttons=["download"])
                with gr.Column():
                    decoded = gr.Image(label="Decoded", format="png", interactive=False, elem_id="vae-decoded",
                                       height=260, buttons=["download"])
                    sliders = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.01, label=f"z{i + 1}",
                                         elem_id=f"vae-z{i + 1}") for i in range(N_SLIDERS)]
        with gr.Accordion("Latent grid", open=True):
            with gr.Row():
                grid_n = gr.Slider(1, 64, value=30, step=1, label="Grid size n (n×n images)")
                grid_r = gr.Slider(0.1, 5.0, value=1.0, step=0.1, label="Range: z in [-r, r]")
                grid_btn = gr.Button("Decode grid", variant="primary")
            grid_img = gr.Image(label="Latent grid", format="png", interactive=False, buttons=["download"])
        with gr.Accordion("Encode your own", open=True):
            with gr.Row():
                with gr.Column():
                    sketch = gr.Sketchpad(label="Draw a digit (or a garment)", type="numpy", canvas_size=(280, 280),
                                          brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"))
                    sketch_btn = gr.Button("Encode drawing", variant="primary")
                    upload = gr.File(label="…or upload an image (PNG, JPEG)", type="filepath")
                    upload_btn = gr.Button("Encode upload")
                with gr.Column():
                    enc_pair = gr.Image(label="Input as the model sees it | reconstruction", format="png",
                                        interactive=False, height=200)
                    enc_text = gr.Markdown(label="Code")
                    enc_map = gr.Image(label="Where it lands: μ (red) with 1σ and 2σ ellipses", format="png",
                                       interactive=False)
        with gr.Accordion("Interpolate", open=True):
            with gr.Row():
                idx_a = gr.Number(value=0, precision=0, label="Test image A (0–9999)")
                idx_b = gr.Number(value=1, precision=0, label="Test image B (0–9999)")
                interp_steps = gr.Slider(2, 32, value=10, step=1, label="Steps")
                method = gr.Radio(["linear", "spherical"], value="linear", label="Path")
                interp_btn = gr.Button("Interpolate", variant="primary")
            strip = gr.Image(label="A | decoded path | B", format="png", interactive=False, buttons=["download"],
                             height=180)
            gif = gr.File(label="Animated GIF", height=90)
            gr.Markdown("**Attribute arithmetic**: move a test image's code along the difference between two "
                        "class-mean codes (e.g. 'thin 1' → '7').")
            every_class = sorted({c for d in data.DATASETS for c in data.class_names(d)}, key=str)
            with gr.Row():
                arith_idx = gr.Number(value=0, precision=0, label="Test image")
                from_cls = gr.Dropdown(every_class, value="1", label="From class (mean)")
                to_cls = gr.Dropdown(every_class, value="7", label="To class (mean)")
                strength = gr.Slider(-3, 3, value=1.0, step=0.05, label="Strength")
                arith_btn = gr.Button("Apply")
            arith_img = gr.Image(label="original | strength 0 → s", format="png", interactive=False)
        with gr.Accordion("Samples", open=True):
            with gr.Row():
                seed = widgets.seed_box()
                n_samples = gr.Slider(1, 100, value=36, step=1, label="Number of samples")
                scale = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label="Scale (temperature)")
                source = gr.Radio([AGGREGATE, PRIOR], value=AGGREGATE, label="Sample from",
                                  info="q(z) covers every class; N(0, I) shows the prior's holes")
                sample_btn = gr.Button("Sample", variant="primary")
            sample_img = gr.Image(label="Samples", format="png", interactive=False,
                                  buttons=["download"], height=560)
            sample_out = parts.output_panel()
        with parts.TrainPanel(header, "Train a small VAE here (book architecture). About 1,200 images/s on 2 CPU "
                              "cores: 1,000 steps at batch 128 take under 2 minutes. Cancelling keeps the "
                              "checkpoint at the current step; Resume continues it. Finished runs appear in the "
                              "Checkpoint list.", run_name="my_vae", elem_id="vae-train") as train:
            t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
            t_latent = gr.Dropdown([2, 8, 16, 32], value=2, label="Latent size")
            t_beta = gr.Slider(0.0, 4.0, value=1.0, step=0.05, label="β (KL weight)")

    # a new checkpoint (or the page's first load) refreshes every view that depends on it
    header.then(select_checkpoint, ckpt, [map_img, note, *sliders]) \
        .then(decode_point, [ckpt, *sliders], [decoded, map_img]) \
        .then(latent_grid, [ckpt, grid_n, grid_r], grid_img) \
        .then(class_choices, ckpt, [from_cls, to_cls]) \
        .then(samples, [ckpt, seed, n_samples, scale, source], [sample_img, *sample_out.outputs]) \
        .then(interpolation, [ckpt, idx_a, idx_b, interp_steps, method], [strip, gif])
    for i, s in enumerate(sliders):  # the first slider's event is also the API's /vae_decode
        if i == 0:
            page.action(s.change, decode_point, [ckpt, *sliders], [decoded, map_img], api_name="vae_decode",
                        show_progress="hidden")
        else:
            s.change(decode_point, [ckpt, *sliders], [decoded, map_img], api_name=False, show_progress="hidden")
    map_img.select(map_click, ckpt, sliders[:2], api_name=False)
    page.action(grid_btn.click, latent_grid, [ckpt, grid_n, grid_r], grid_img, api_name="vae_decode_grid")
    page.action(sketch_btn.click, encode_sketch, [ckpt, sketch], [enc_pair, enc_map, enc_text],
                api_name="vae_encode_sketch", example={"sketch": "stroke"})
    page.action(upload_btn.click, encode_upload, [ckpt, upload], [enc_pair, enc_map, enc_text],
                api_name="vae_encode_upload", example={"file_path": "digit.png"})
    page.action(interp_btn.click, interpolation, [ckpt, idx_a, idx_b, interp_steps, method], [strip, gif],
                api_name="vae_interpolate")
    page.action(arith_btn.click, arithmetic, [ckpt, arith_idx, from_cls, to_cls, strength], arith_img,
                api_name="vae_arithmetic")
    page.action(sample_btn.click, samples, [ckpt, seed, n_samples, scale, source], [sample_img, *sample_out.outputs],
                api_name="vae_samples")
    train.wire(page, train_config, [t_data, t_latent, t_beta], ["loss", "reconstruction", "kl"], api_prefix="vae",
               names=["dataset", "latent_size", "beta"])
    hierarchical.build_section(page)
