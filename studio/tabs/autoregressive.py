"""The PixelCNN & NADE tab: autoregressive image models, where log p(x) is an exact sum of one-pixel
conditionals. Sampling streams pixel by pixel in the model's order; completion fills a missing region
of a test image or of your drawing (saying which conditional it draws from); a per-pixel surprise map
scores an image; the receptive field of a clicked pixel compares the plain masked stack (blind spot)
with the gated stacks (none); and both families train in the page.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import functools
import math
import time

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from models.core import data
from models.core.family import built, seeded
from models.density import nade, pixelcnn
from studio import parts, widgets
from studio.widgets import friendly, number, whole

TITLE = "PixelCNN & NADE"
FAMILIES = ("pixelcnn", "nade")
MODULES = {"pixelcnn": pixelcnn, "nade": nade}
SIZE = 28
MAX_SAMPLES = 16
PREVIEW_S = 0.08  # stream a preview at most this often
REGIONS = {  # name -> (rows, cols) slices of the MISSING pixels
    "bottom half": (slice(14, 28), slice(0, 28)),
    "top half": (slice(0, 14), slice(0, 28)),
    "right half": (slice(0, 28), slice(14, 28)),
    "left half": (slice(0, 28), slice(0, 14)),
    "centre square": (slice(7, 21), slice(7, 21)),
}
SOURCES = ("test image", "my drawing")
TRAIN_MODELS = ("PixelCNN (gated)", "NADE")
RF_LAYERS = 5  # depth of the two untrained stacks compared in the receptive-field view (the book's 5 blocks)
CLICK_SCALE = 10  # the clickable picture shows each pixel as 10×10


# --- loading ----------------------------------------------------------------------------------------

def loaded(name: str):
    """``(family, model, config, card)`` of a PixelCNN or NADE checkpoint."""
    family = widgets.family_of(FAMILIES, name)
    model, config, card = widgets.load(family, name)
    return family, model, config, card


def order_of(family: str, model) -> torch.Tensor:
    """The order the model draws pixels in, as raster indices."""
    return model.order if family == "nade" else torch.arange(SIZE * SIZE)


def order_name(family: str, config) -> str:
    if family == "pixelcnn":
        return "raster (rows, left to right)"
    return config.order + (f" (seed {config.order_seed})" if config.order == "random" else "")


def levels_of(family: str, config) -> int:
    return config.levels if family == "pixelcnn" else 2


def show(images, scale: int = 5) -> np.ndarray:
    images = torch.as_tensor(images)
    return widgets.mosaic(images, min(len(images), 8), pad=1, scale=scale)


# --- images in -----------------------------------------------------------------------------------------

def quantise(x, levels: int) -> torch.Tensor:
    """Intensities in [0, 1] -> the model's pixel values: ink > 0.5 for binary models, else 4 levels."""
    if levels == 2:
        return (x > 0.5).float()
    return (x * levels).floor().clamp(max=levels - 1) / (levels - 1)


def sketch_gray(sketch) -> np.ndarray:
    """A Sketchpad value (its composite, RGBA with a transparent canvas) as grayscale on white paper."""
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        raise ValueError("The drawing is empty: draw a digit first (or choose 'test image').")
    if isinstance(composite, str):  # an API caller sent a file
        im = widgets.read_image(composite)
    else:
        array = np.asarray(composite)
        if array.ndim not in (2, 3) or array.size == 0:
            raise ValueError("The drawing could not be read: send the Sketchpad's picture.")
        im = Image.fromarray(array.astype(np.uint8))
    rgba = im.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(paper, rgba).convert("L"), np.float32) / 255


def input_image(family, config, source: str, index, sketch) -> tuple[torch.Tensor, str]:
    """The image to complete or score, in the model's preprocessing, and where it came from."""
    if source not in SOURCES:
        raise ValueError(f"Source must be one of {', '.join(SOURCES)}; got {source!r}.")
    if source == "my drawing":
        x = data.prepare_image(sketch_gray(sketch), config.dataset)  # centred and scaled like the dataset
        return quantise(x, levels_of(family, config)), "your drawing (centred, scaled and " + (
            "thresholded at 0.5)" if levels_of(family, config) == 2 else "quantised to 4 levels)")
    x, _ = MODULES[family].data(config, "test")[0]
    i = whole(index, "Test image number", 0, len(x) - 1)
    return x[i:i + 1], f"test image {i}"


def region_mask(region: str) -> torch.Tensor:
    """Known pixels (1, 1, 28, 28) bools: everything but the region."""
    if region not in REGIONS:
        raise ValueError(f"Region must be one of {', '.join(REGIONS)}; got {region!r}.")
    known = torch.ones(1, 1, SIZE, SIZE, dtype=torch.bool)
    rows, cols = REGIONS[region]
    known[:, :, rows, cols] = False
    return known


def conditional_note(family: str, config, model, known: torch.Tensor, particles: int) -> str:
    """Which distribution a completion is drawn from, in words."""
    order = order_of(family, model)
    where = f"the {order_name(family, config)} order"
    if nade.exact_conditional(order, known[0, 0]):
        return (f"**Exact conditional** p(x_missing | x_observed): in {where} every observed pixel comes before "
                "every missing one, so the chain rule's conditionals are exactly it.")
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order))
    flat_known = known[0, 0].reshape(-1)
    first_missing = ranks[~flat_known].min()
    later = int((flat_known & (ranks > first_missing)).sum())
    if particles == 1:
        return (f"**Not the exact conditional**: each missing pixel is drawn from p(x_i | pixels before it in {where}); "
                f"the {later} observed pixels after the first missing one are ignored. Raise *particles* to "
                "resample by their likelihood.")
    return (f"**Importance-resampled**: {particles} completions drawn by the chain rule in {where}, one kept with "
            f"probability ∝ p(the {later} later observed pixels | the rest); this tends to the exact "
            "p(x_missing | x_observed) as the number of particles grows (at temperature 1).")


# --- handlers ---------------------------------------------------------------------------------------------

@friendly
def order_map(checkpoint: str):
    """The model's drawing order as a picture (dark: drawn first) and a line about the checkpoint."""
    family, model, config, card = loaded(checkpoint)
    ranks = torch.empty(SIZE * SIZE)
    ranks[order_of(family, model)] = torch.arange(SIZE * SIZE, dtype=torch.float32) / (SIZE * SIZE - 1)
    picture = widgets.upscale(widgets.mosaic(ranks.reshape(1, 1, SIZE, SIZE), 1, pad=0), 6)
    pre = card.get("data", {}).get("preprocessing") or MODULES[family].data(config, "test")[1]["preprocessing"]
    return picture, f"Order: **{order_name(family, config)}**. Pixels: {pre}."


@friendly
def sample(checkpoint: str, seed, n, temperature, every):
    """Draw images pixel by pixel, streamed; grey pixels are not drawn yet."""
    family, model, config, _ = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of samples", 1, MAX_SAMPLES)
    temperature = number(temperature, "temperature", 0.05, 5.0)
    every = whole(every, "Preview every (pixels)", 1, SIZE * SIZE)
    t0 = last_yield = time.time()
    frames = MODULES[family].sample(model, n, generator=seeded(seed), temperature=temperature, every=every)
    images = None
    for k, images in enumerate(frames):
        if k == 0 or time.time() - last_yield > PREVIEW_S:  # the first row at once, then at a steady pace
            last_yield = time.time()
            drawn = min((k + 1) * every, SIZE * SIZE)
            yield show(images), f"Drawing… {drawn} of {SIZE * SIZE} pixels ({time.time() - t0:.1f} s)", None, None
    picture = show(images)
    md = (f"seed {seed}, {n} samples, temperature {temperature:g}, checkpoint {checkpoint}, order "
          f"{order_name(family, config)}; {time.time() - t0:.1f} s")
    record = parts.provenance(family, checkpoint, seed, n=n, temperature=temperature)
    yield picture, *parts.publish(picture, record, md, f"{checkpoint}_seed{seed}.png")


@friendly
def complete(checkpoint: str, source: str, index, sketch, region: str, particles, seed, n, temperature):
    """Fill the chosen region of a test image or of your drawing, n times, streamed; the strip shows the
    original, the observed part (missing pixels grey), then the completions."""
    family, model, config, _ = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    n = whole(n, "Number of completions", 1, MAX_SAMPLES)
    particles = whole(particles, "Particles", 1, 64)
    temperature = number(temperature, "temperature", 0.05, 5.0)
    x, what = input_image(family, config, source, index, sketch)
    known = region_mask(region)
    observed = torch.where(known, x, torch.full_like(x, pixelcnn.UNKNOWN))
    note = conditional_note(family, config, model, known, particles)
    frames = MODULES[family].complete(model, x.repeat(n, 1, 1, 1), known.repeat(n, 1, 1, 1), generator=seeded(seed),
                                      temperature=temperature, particles=particles)
    head = torch.cat([x, observed])
    last_yield, out = time.time(), None
    for out in frames:
        if time.time() - last_yield > PREVIEW_S:
            last_yield = time.time()
            yield show(torch.cat([head, out])), f"Completing {what}…  \n{note}", None, None
    picture = show(torch.cat([head, out]))
    md = f"{what}, {region} missing, {n} completions, seed {seed}, temperature {temperature:g}.  \n{note}"
    record = parts.provenance(family, checkpoint, seed, source=what, region=region, particles=particles, n=n,
                              temperature=temperature)
    yield picture, *parts.publish(picture, record, md, f"{checkpoint}_complete_seed{seed}.png")


@friendly
def score(checkpoint: str, source: str, index, sketch):
    """Exact −log p(x) of one image and where its nats are spent: −log p(x_i | earlier pixels) per pixel."""
    family, model, config, _ = loaded(checkpoint)
    x, what = input_image(family, config, source, index, sketch)
    surprise = -MODULES[family].pixel_log_probs(model, x)[0].detach().numpy()
    total = float(surprise.sum())
    fig = Figure(figsize=(7.2, 3.4), dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.imshow(x[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax1.set_title(what, fontsize=9)
    im = ax2.imshow(surprise, cmap="magma")
    ax2.set_title("−log p(pixel | earlier pixels), nats", fontsize=9)
    fig.colorbar(im, ax=ax2, fraction=0.046)
    for ax in (ax1, ax2):
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    md = (f"{what}: **−log p(x) = {total:.1f} nats** ({total / (SIZE * SIZE * math.log(2)):.4f} bits/dim), "
          f"exact. The brightest pixels are where the model was most surprised.")
    return widgets.figure_to_array(fig), md


@functools.lru_cache(maxsize=2)
def untrained(arch: str):
    """A fixed-seed untrained stack of the book's depth: its receptive field is the masks' doing."""
    config = pixelcnn.FAMILY.config("tiny", arch=arch, filters=16, layers=RF_LAYERS, levels=2)
    return built(pixelcnn.build, config, seed=0).eval()


def click_picture(checkpoint: str, index=0):
    """The clickable test image (each pixel 10×10)."""
    family, _, config, _ = loaded(checkpoint)
    x, _ = MODULES[family].data(config, "test")[0]
    i = whole(index, "Test image number", 0, len(x) - 1)
    return widgets.upscale(widgets.mosaic(x[i:i + 1], 1, pad=0), CLICK_SCALE)


def click_pixel(evt: gr.SelectData):
    """A click on the picture -> its row and column."""
    col, row = evt.index[:2]
    return int(np.clip(row // CLICK_SCALE, 0, SIZE - 1)), int(np.clip(col // CLICK_SCALE, 0, SIZE - 1))


@friendly
def receptive_field(checkpoint: str, row, col):
    """Which pixels can change the prediction of pixel (row, col): |∂ logits / ∂ input| for the plain
    masked stack and the gated stacks (untrained, same depth), and the chosen checkpoint."""
    family, model, config, _ = loaded(checkpoint)
    r, c = whole(row, "Row", 0, SIZE - 1), whole(col, "Column", 0, SIZE - 1)
    maps = [(f"plain stack (7×7 A + {RF_LAYERS} blocks of 3×3 B)", pixelcnn.receptive_field(untrained("plain"), r, c,
                                                                                             generator=seeded(0))),
            (f"gated stacks ({RF_LAYERS} layers after the first)", pixelcnn.receptive_field(untrained("gated"), r, c,
                                                                                            generator=seeded(0)))]
    if family == "pixelcnn":
        x, _ = pixelcnn.data(config, "test")[0]
        maps.append((f"{checkpoint} (trained; 8 test images)", pixelcnn.receptive_field(model, r, c, x=x[:8])))
    else:
        ranks = torch.empty(SIZE * SIZE, dtype=torch.long)
        ranks[model.order] = torch.arange(SIZE * SIZE)
        maps.append((f"{checkpoint}: NADE sees every earlier pixel", (ranks < ranks[r * SIZE + c]).float()
                     .reshape(SIZE, SIZE)))
    fig = Figure(figsize=(10.5, 3.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(maps))
    earlier = torch.zeros(SIZE * SIZE, dtype=torch.bool)
    earlier[:r * SIZE + c] = True
    lines = []
    for ax, (title, g) in zip(axes, maps):
        reach = g > 0
        shown = np.ma.masked_where(~reach.numpy(), np.log10(g.numpy() + 1e-12))
        ax.imshow(np.full((SIZE, SIZE), 0.85), cmap="gray", vmin=0, vmax=1)
        ax.imshow(shown, cmap="viridis")
        ax.plot(c, r, "s", ms=7, mfc="none", mec="red", mew=2)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        if family == "pixelcnn" or "NADE" not in title:
            missed = int((earlier.reshape(SIZE, SIZE) & ~reach).sum())
            lines.append(f"{title}: reaches {int(reach.sum())} pixels, misses {missed} of the {r * SIZE + c} "
                         "earlier ones")
    fig.suptitle(f"Which input pixels can change the prediction at row {r}, column {c} (red square); grey: none. "
                 "Colour: log₁₀ |∂ logits / ∂ x|", fontsize=9)
    md = ("  \n".join(lines) + "  \nThe plain stack's misses up and to the right of the pixel, inside the box its "
          "kernels span, are its **blind spot**; the gated stacks' misses are only beyond their depth.")
    return widgets.figure_to_array(fig), md


# --- training ----------------------------------------------------------------------------------------------

def train_config(model_name, dataset, levels, width, layers, order, *, steps, batch_size, lr):
    """A run's config from the Train section (the plain PixelCNN trains from the command line: its sampler
    has no cache, so a card's scored samples take long)."""
    if model_name not in TRAIN_MODELS:
        raise ValueError(f"Model must be one of {', '.join(TRAIN_MODELS)}; got {model_name!r}.")
    width = whole(width, "Width", 2, 1024)
    if model_name == "NADE":
        return nade.FAMILY.config("cpu", dataset=dataset, hidden=width, order=order, steps=steps,
                                  batch_size=batch_size, lr=lr)
    return pixelcnn.FAMILY.config("cpu", dataset=dataset, levels=whole(levels, "Levels", 2, 4), filters=width,
                                  layers=whole(layers, "Layers", 1, 40), steps=steps, batch_size=batch_size, lr=lr)


# --- layout -------------------------------------------------------------------------------------------------

def build(page: parts.Page):
    gr.Markdown("Autoregressive models write an image as a sequence of pixels, "
                "log p(x) = Σᵢ log p(xᵢ | x₁ … xᵢ₋₁), so the likelihood is **exact**. "
                "**PixelCNN** (Foster 2nd ed. ch. 5) computes every conditional at once with masked convolutions; "
                "**NADE** (Goodfellow et al. ch. 20.10.10) with one hidden layer whose weights are shared along the "
                "order. Both sample one pixel at a time. NLL is in nats per image (sum over 784 pixels) on "
                "binarised MNIST; the card says which binarisation.")
    header = parts.checkpoint_header(page, FAMILIES, "pixelcnn_mnist", "ar")
    ckpt = header.dropdown
    with gr.Column():
        with gr.Accordion("Sample pixel by pixel", open=True):
            with gr.Row():
                seed = widgets.seed_box()
                n = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="Number of samples")
                temperature = gr.Slider(0.05, 3.0, value=1.0, step=0.05, label="Temperature")
                every = gr.Slider(1, SIZE * SIZE, value=SIZE, step=1, label="Preview every (pixels)")
                sample_btn = gr.Button("Sample", variant="primary", elem_id="ar-sample")
            with gr.Row():
                sample_img = gr.Image(label="Samples (grey: not drawn yet)", format="png", interactive=False,
                                      buttons=["download"], height=260, scale=3, elem_id="ar-samples")
                with gr.Column(scale=1):
                    order_img = gr.Image(label="Drawing order (dark: first)", format="png", interactive=False,
                                         height=180)
                    order_md = gr.Markdown(label="Order and pixels")
            sample_out = parts.output_panel()
        with gr.Accordion("Complete or score an image", open=True):
            with gr.Row():
                with gr.Column():
                    source = gr.Radio(list(SOURCES), value="test image", label="Image")
                    index = gr.Number(value=0, precision=0, label="Test image number (0–9999)")
                    sketch = gr.Sketchpad(label="…or draw a digit", type="numpy", canvas_size=(280, 280),
                                          brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"))
                with gr.Column():
                    with gr.Row():
                        region = gr.Dropdown(list(REGIONS), value="bottom half", label="Missing region")
                        particles = gr.Slider(1, 64, value=1, step=1, label="Particles (importance resampling)")
                    with gr.Row():
                        c_seed = widgets.seed_box(label="Completion seed")
                        c_n = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="Number of completions")
                        c_temp = gr.Slider(0.05, 3.0, value=1.0, step=0.05, label="Completion temperature")
                    with gr.Row():
                        complete_btn = gr.Button("Complete", variant="primary", elem_id="ar-complete")
                        score_btn = gr.Button("Score: where are the nats?")
                    complete_img = gr.Image(label="original | observed | completions", format="png",
                                            interactive=False, buttons=["download"], height=200)
                    complete_out = parts.output_panel()
            score_img = gr.Image(label="Per-pixel surprise", format="png", interactive=False, height=300)
            score_md = gr.Markdown(label="Log-likelihood")
        with gr.Accordion("Receptive field of a pixel", open=True):
            gr.Markdown("Click a pixel (or type its row and column): which input pixels can its prediction depend "
                        "on? Stacked 3×3 type-B masks leave a **blind spot** up and to the right; the gated "
                        "PixelCNN's vertical stack sees every row above in full width.")
            with gr.Row():
                click_img = gr.Image(label="Click a pixel", format="png", interactive=False, height=280,
                                     elem_id="ar-click", scale=1)
                with gr.Column(scale=3):
                    with gr.Row():
                        row = gr.Number(value=14, precision=0, label="Row (0–27)")
                        col = gr.Number(value=14, precision=0, label="Column (0–27)")
                        rf_btn = gr.Button("Show receptive field", variant="primary")
                    rf_img = gr.Image(label="Receptive fields", format="png", interactive=False)
                    rf_md = gr.Markdown(label="What each stack reaches")
        with parts.TrainPanel(header, "Train a gated PixelCNN or a NADE here on binarised (or 4-level) MNIST or "
                              "Fashion-MNIST. On 2 CPU cores a gated PixelCNN of width 32 takes about 1 s per step "
                              "at batch 32, a NADE of 500 hidden units about 1.5 s per step at batch 100. The card "
                              "at the end holds the exact test NLL (a few minutes to compute). Cancel keeps the "
                              "checkpoint; Resume continues it.", steps_default=200, batches=(16, 32, 64, 100, 128),
                              batch_default=32, run_name="my_pixelcnn", elem_id="ar-train") as train:
            t_model = gr.Radio(list(TRAIN_MODELS), value=TRAIN_MODELS[0], label="Model")
            t_data = gr.Radio(["mnist", "fashion"], value="mnist", label="Dataset")
            t_levels = gr.Radio([2, 4], value=2, label="Pixel levels (PixelCNN)")
            t_width = gr.Number(value=32, precision=0, label="Width (PixelCNN channels / NADE hidden units)")
            t_layers = gr.Slider(1, 12, value=7, step=1, label="Layers (PixelCNN)")
            t_order = gr.Dropdown(list(nade.ORDERS), value="raster", label="Order (NADE)")

    header.then(order_map, ckpt, [order_img, order_md]) \
        .then(click_picture, [ckpt, index], click_img) \
        .then(sample, [ckpt, seed, n, temperature, every], [sample_img, *sample_out.outputs])
    page.action(sample_btn.click, sample, [ckpt, seed, n, temperature, every], [sample_img, *sample_out.outputs],
                api_name="ar_sample")
    page.action(complete_btn.click, complete,
                [ckpt, source, index, sketch, region, particles, c_seed, c_n, c_temp],
                [complete_img, *complete_out.outputs], api_name="ar_complete", example={"sketch": "stroke"})
    page.action(score_btn.click, score, [ckpt, source, index, sketch], [score_img, score_md], api_name="ar_score",
                example={"sketch": "stroke"})
    page.action(rf_btn.click, receptive_field, [ckpt, row, col], [rf_img, rf_md], api_name="ar_receptive_field")
    index.submit(friendly(click_picture), [ckpt, index], click_img, api_name=False)
    click_img.select(click_pixel, None, [row, col], api_name=False) \
        .then(receptive_field, [ckpt, row, col], [rf_img, rf_md], api_name=False)
    train.wire(page, train_config, [t_model, t_data, t_levels, t_width, t_layers, t_order], ["loss", "bits_per_dim"],
               api_prefix="ar", names=["model", "dataset", "levels", "width", "layers", "order"])
