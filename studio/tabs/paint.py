"""The Paint tab: neural style transfer and DeepDream, two ways of optimising an image through a
fixed ImageNet network, with every weight on a slider. Style transfer streams snapshots (a quick
low-resolution preview first) with its loss split into content, style and total variation, and
shows the Gram matrices it matches; DeepDream streams one result per octave, can be scrubbed, and
keeps a gallery of the configurations you liked. CycleGAN translates between two unpaired domains
(plain digits and digits on photo textures): the book's six-panel view both ways, the PatchGAN's
real/fake map over an image, and training in the page with the three loss weights on sliders.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them. Uploads are ``gr.File`` inputs read by
:func:`read_upload`, so a file that is not an image, is empty or decodes huge gets a message
instead of failing inside Gradio.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from models.core import lazy
from models.core.family import seeded
from models.paint import cyclegan, deepdream, fast_style, pretrained, style_transfer
from models.paint.pretrained import VGG16_NAMES
from models.paint.style_transfer import PRESETS, STYLE_LAYERS, StyleConfig
from studio import parts, widgets
from studio.widgets import friendly

TITLE = "Paint"
DATA_NOTE = ("**Data.** Foster's CycleGAN translates apples ↔ oranges and Monet ↔ photos; those sets do not "
             "ship offline, so here domain A is MNIST digits and B other digits blended onto patches of the "
             "bundled photos (MNIST-M style).")
IMAGES = Path(__file__).resolve().parent.parent.parent / "assets" / "images"
SAMPLES = Path(tempfile.gettempdir()) / "gdl-studio-samples"
OPTIMIZERS = {"L-BFGS": "lbfgs", "Adam": "adam"}
STARTS = {"content image": "content", "noise": "noise"}
DREAM_LAYERS = deepdream.LAYERS
MAX_GALLERY = 24  # saved DeepDream configurations kept per visitor
GALLERY_SIDE = 256  # the gallery keeps thumbnails, so a visitor's state stays small
SHOWN_SIDE = 512  # uploads are shown beside their file box at most this large
CYCLE = "cyclegan"
CYCLE_PANELS = 8  # most test images per direction in the six-panel view
PATCH_SOURCES = {  # what is judged -> (domain of the image, whether it is translated, the judging D)
    "real A (plain digit)": ("a", False),
    "A→B translation (judged as B)": ("a", True),
    "real B (digit on texture)": ("b", False),
    "B→A translation (judged as A)": ("b", True),
}
CYCLE_LOSSES = ["validation", "reconstruction", "identity", "d_a", "d_b"]
# the API's parameter names for the controls, in the order the page passes them
ST_CONTROLS = ["content_weight_log10", "style_weight_log10", "tv_weight_log10", "content_layer",
               *[f"use_{name}" for name in STYLE_LAYERS], *[f"weight_{name}" for name in STYLE_LAYERS],
               "decay", "size", "preview_size", "start", "optimizer", "adam_step", "steps", "preview_steps"]
DREAM_CONTROLS = [*[f"weight_{name}" for name in DREAM_LAYERS], "step", "octaves", "octave_scale", "iterations",
                  "max_loss", "reinject", "size"]


def bundled(name: str) -> str:
    """Path of a bundled photo; scikit-learn's two sample photos are written out on first use."""
    if name in ("china", "flower"):
        path = SAMPLES / f"{name}.jpg"
        if not path.exists():
            load_sample_images = lazy.module("sklearn.datasets").load_sample_images

            SAMPLES.mkdir(parents=True, exist_ok=True)
            imgs = dict(zip(("china", "flower"), load_sample_images().images))
            Image.fromarray(imgs[name]).save(path, quality=92)
        return str(path)
    return str(IMAGES / f"{name}.jpg")


# --- uploads ---

def read_upload(path, what: str) -> np.ndarray:
    """An uploaded image as (H, W, 3) uint8 RGB, upright as its EXIF says. ``widgets.read_image``
    refuses a non-image, an empty file or a decompression bomb with a message naming the file."""
    if not path:
        noun = "an image" if what == "image" else f"a {what} image"
        raise ValueError(f"Choose {noun} first (upload one or pick an example).")
    im = ImageOps.exif_transpose(widgets.read_image(path))
    return pretrained.read_image(np.asarray(im.convert("RGB")))


def _image(path, what: str, side: int) -> tuple[torch.Tensor, str]:
    return pretrained.fit(read_upload(path, what), side, what)


def _source(path, key: str) -> dict:
    """What the provenance record says about an input image: its file name and content hash."""
    return {key: Path(path).name, f"{key}_sha256": parts.file_hash(path)}


@friendly
def show_upload(path):
    """The chosen file as the page shows it (at most SHOWN_SIDE px), or a message when it is no image."""
    if not path:
        return None
    im = Image.fromarray(read_upload(path, "image"))
    im.thumbnail((SHOWN_SIDE, SHOWN_SIDE))
    return np.asarray(im)


# --- style transfer ---

def style_config(cw_log, sw_log, tvw_log, content_layer, *rest) -> StyleConfig:
    """The controls, in the order the page passes them (:data:`ST_CONTROLS`), as a StyleConfig."""
    n = len(STYLE_LAYERS)
    checks, weights = rest[:n], rest[n:2 * n]
    decay, size, preview, start, optimizer, lr, steps, preview_steps = rest[2 * n:]
    if start not in STARTS:
        raise ValueError(f"Start must be one of {list(STARTS)}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Optimizer must be one of {list(OPTIMIZERS)}.")
    return StyleConfig(content_weight=10.0 ** float(cw_log), style_weight=10.0 ** float(sw_log),
                       tv_weight=10.0 ** float(tvw_log), content_layer=content_layer,
                       style_layers={name: float(w) for name, c, w in zip(STYLE_LAYERS, checks, weights) if c},
                       decay=float(decay), size=int(size), preview_size=int(preview), init=STARTS[start],
                       optimizer=OPTIMIZERS[optimizer], lr=float(lr), steps=int(steps),
                       preview_steps=int(preview_steps), snapshot_every=5)


def loss_figure(history: list[dict]) -> Figure:
    """Weighted content, style and TV losses against step on a log scale, the preview stage shaded.

    A zero (the content loss at step 1, when the image starts as the content photo) has no place on a
    log axis, so it is left out rather than drawn at a floor that would squash every other value;
    the axis spans at most six decades below the largest loss, and the legend sits below the plot."""
    fig = Figure(figsize=(6.4, 3.1), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    steps = [h["step"] for h in history]
    shown = []
    for key, color in (("content", "C0"), ("style", "C1"), ("tv", "C2"), ("total", "k")):
        values = np.array([h[key] for h in history], float)
        values[~(values > 0)] = np.nan
        shown.append(values)
        ax.plot(steps, values, color=color, lw=1.8 if key == "total" else 1.2, ls="--" if key == "total" else "-",
                label=key)
    preview = [h["step"] for h in history if h["stage"] == "preview"]
    if preview:
        ax.axvspan(0.5, max(preview) + 0.5, color="0.9", label="low-res preview", zorder=0)
    ax.set_yscale("log")
    positive = np.concatenate(shown)
    positive = positive[np.isfinite(positive)]
    if len(positive):
        top = positive.max()
        ax.set_ylim(max(positive.min(), top * 1e-6) / 1.5, top * 1.5)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("weighted loss")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    return fig


@friendly
def stylise(content_image, style_image, seed, *controls):
    """Stream snapshots: (result, curves, status, state for the Gram viewer, caption, provenance,
    PNG download); the download comes with the last one."""
    cfg = style_config(*controls)
    style_transfer.check(cfg)
    seed = widgets.seed_of(seed)
    content, c_note = _image(content_image, "content", cfg.size)
    style, s_note = _image(style_image, "style", cfg.size)
    notes = (f"{c_note}; {s_note}; weights: content {cfg.content_weight:.2g}, style {cfg.style_weight:.2g}, "
             f"TV {cfg.tv_weight:.2g}; seed {seed}")
    total = sum(n for _, n in style_transfer.stages(cfg))
    keep = [gr.update()] * 3
    yield None, None, f"Starting: {notes}. The first preview comes after {cfg.snapshot_every} steps.", None, *keep
    state = {"content": pretrained.to_uint8(content), "style": pretrained.to_uint8(style), "result": None}
    img = status = figure = None
    for snap in style_transfer.transfer(content, style, cfg, seeded(seed)):
        h = snap["history"][-1] if snap["history"] else {}
        img = pretrained.to_uint8(snap["image"])
        where = f"{snap['stage']} at {img.shape[1]}×{img.shape[0]} px"
        status = (f"Step {snap['step']}/{total} ({where}): content {h.get('content', 0):.3g}, "
                  f"style {h.get('style', 0):.3g}, TV {h.get('tv', 0):.3g}. {notes}.")
        state = {**state, "result": img}
        figure = loss_figure(snap["history"]) if snap["history"] else None
        yield img, figure, status, state, *keep
    if img is None:
        raise ValueError("The optimisation stopped before its first snapshot: raise the steps.")
    record = parts.provenance("style_transfer", None, seed, **_source(content_image, "content_image"),
                              **_source(style_image, "style_image"), **dict(zip(ST_CONTROLS, controls)))
    caption = (f"seed {seed}, {img.shape[1]}×{img.shape[0]} px, {total} {cfg.optimizer} steps; content "
               f"{Path(content_image).name}, style {Path(style_image).name}")
    # the last values are complete (an API caller sees only them), with the download
    yield (img, figure, status + " Done.", state,
           *parts.publish(img, record, caption, f"style_transfer_seed{seed}.png"))


@friendly
def fast_preview(content_image, style_image, strength, keep_colours, size):
    """The feed-forward network's one-pass rendering, to set beside the optimised result."""
    content, style = read_upload(content_image, "content"), read_upload(style_image, "style")
    t0 = time.time()
    out = fast_style.stylise(content, style, float(strength), int(size), bool(keep_colours))
    return out, (f"Instant preview, {out.shape[1]}×{out.shape[0]}, in {time.time() - t0:.1f} s: one forward pass "
                 "of Magenta's arbitrary-style network (ONNX; rendered at 384 px and scaled).")


def gram_figure(views: dict, layer: str) -> Figure:
    vmax = max(float(v.max()) for v in views.values())
    fig = Figure(figsize=(9.6, 3.3), dpi=90, layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (name, g) in zip(axes, views.items()):
        im = ax.imshow(g.numpy(), cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(name)
        ax.set_xlabel("feature channel")
        ax.set_ylabel("feature channel")
    fig.colorbar(im, ax=axes, shrink=0.85, label="mean co-activation (G / HW)")
    fig.suptitle(f"Gram matrices at {layer} (first {views['result'].shape[0]} channels)")
    return fig


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@friendly
def show_gram(state, layer, channels):
    """Gram matrices of the last result and its two inputs (kept, as read, in the visitor's state)."""
    if not state or state.get("result") is None:
        raise ValueError("Run style transfer first: the Gram viewer compares its result with the two inputs.")
    views = style_transfer.gram_views(_tensor(state["content"]), _tensor(state["style"]), _tensor(state["result"]),
                                      layer, int(channels))
    dist = {k: style_transfer.gram_distance(views[k], views["style"]) for k in ("content", "result")}
    note = (f"Relative distance to the style's Gram matrix: content {dist['content']:.2f}, result "
            f"{dist['result']:.2f} (lower = closer in style at this layer).")
    return gram_figure(views, layer), note


@friendly
def apply_preset(name):
    """A preset's weights, decay, optimizer and step on the sliders (log weights for the log sliders)."""
    cfg = style_transfer.with_preset(StyleConfig(), name)
    inv = {v: k for k, v in OPTIMIZERS.items()}
    return (math.log10(cfg.content_weight), math.log10(cfg.style_weight), math.log10(cfg.tv_weight),
            cfg.decay, inv[cfg.optimizer], cfg.lr)


# --- DeepDream ---

def dream_config(*controls) -> deepdream.DreamConfig:
    """The controls, in the order the page passes them (:data:`DREAM_CONTROLS`), as a DreamConfig."""
    n = len(DREAM_LAYERS)
    weights, (step, octaves, scale, iterations, max_loss, reinject, size) = controls[:n], controls[n:]
    return deepdream.DreamConfig(layers={k: float(w) for k, w in zip(DREAM_LAYERS, weights)}, step=float(step),
                                 octaves=int(octaves), octave_scale=float(scale), iterations=int(iterations),
                                 max_loss=float(max_loss), reinject=bool(reinject), size=int(size))


def dream_loss_figure(octaves: list[dict]) -> Figure:
    fig = Figure(figsize=(6.4, 2.9), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    start = 0
    for r in octaves:
        xs = range(start + 1, start + 1 + len(r["losses"]))
        ax.plot(xs, r["losses"], marker=".", label=f"octave {r['octave']} ({r['shape'][1]}×{r['shape'][0]})")
        start += len(r["losses"])
    ax.set_xlabel("gradient-ascent step (all octaves)")
    ax.set_ylabel("loss (1 per unit weight = the photo)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return fig


def _caption(cfg: deepdream.DreamConfig) -> str:
    return (", ".join(f"{k} {v:g}" for k, v in cfg.layers.items() if v)
            + f"; step {cfg.step:g}, {cfg.octaves}×{cfg.octave_scale:g}, {cfg.iterations} it")


@friendly
def run_dream(image, *controls):
    """Stream one result per octave: (image, status, octave scrubber, octave images, loss plot), then
    the caption, provenance and PNG download of the final result."""
    cfg = dream_config(*controls)
    deepdream.check(cfg)
    x, note = _image(image, "image", cfg.size)
    frames, results = [], []
    keep = [gr.update()] * 3
    yield (None, f"Dreaming: {note}; {cfg.octaves} octaves × {cfg.iterations} steps.",
           gr.update(choices=[], value=None, interactive=False), [], None, *keep)
    for r in deepdream.dream(x, cfg):
        results.append(r)
        frames.append(pretrained.to_uint8(r["image"]))
        early = f", stopped at max loss after {len(r['losses'])} steps" if r["stopped_early"] else ""
        status = (f"Octave {r['octave']}/{cfg.octaves} at {r['shape'][1]}×{r['shape'][0]} px: loss "
                  f"{r['losses'][0] if r['losses'] else float('nan'):.2f} → "
                  f"{r['losses'][-1] if r['losses'] else float('nan'):.2f}{early}. {note}.")
        octaves = gr.update(choices=list(range(1, len(frames) + 1)), value=len(frames), interactive=True)
        figure = dream_loss_figure(results)
        yield frames[-1], status, octaves, frames, figure, *keep
    record = parts.provenance("deepdream", None, **_source(image, "image"), **dict(zip(DREAM_CONTROLS, controls)))
    h, w = frames[-1].shape[:2]
    caption = f"{Path(image).name}, {w}×{h} px: {_caption(cfg)}"
    yield (frames[-1], status + " Done.", octaves, frames, figure,
           *parts.publish(frames[-1], record, caption, f"deepdream_{Path(image).stem}.png"))


def scrub(frames, octave):
    """The result after one octave (1 = the smallest)."""
    if not frames or octave is None:
        return gr.update()
    i = int(octave) - 1
    if not 0 <= i < len(frames):
        raise gr.Error(f"Octave must be from 1 to {len(frames)}.")
    return frames[i]


@friendly
def randomise(seed):
    """New random layer weights from a seed (shown), then the seed moves on for the next click."""
    seed = widgets.seed_of(seed)
    weights = deepdream.random_layers(seeded(seed))
    return (*weights.values(), seed + 1)


def _thumbnail(img: np.ndarray) -> np.ndarray:
    im = Image.fromarray(img)
    im.thumbnail((GALLERY_SIDE, GALLERY_SIDE))
    return np.asarray(im)


def save_config(gallery_state, frames, *controls):
    """Keep the current result (as a thumbnail) and its settings in this visitor's gallery."""
    if not frames:
        raise gr.Error("Dream first: the gallery keeps a result together with the settings that made it.")
    cfg = dream_config(*controls)
    entry = {"image": _thumbnail(frames[-1]),
             "controls": [float(c) if not isinstance(c, bool) else c for c in controls], "caption": _caption(cfg)}
    gallery_state = ((gallery_state or []) + [entry])[-MAX_GALLERY:]
    return gallery_state, [(e["image"], e["caption"]) for e in gallery_state], config_json(gallery_state)


def config_json(gallery_state) -> str:
    return json.dumps([dict(zip(DREAM_CONTROLS, e["controls"])) for e in gallery_state], indent=1)


def restore_config(gallery_state, evt: gr.SelectData):
    """Clicking a saved configuration puts its settings back on the sliders."""
    entry = gallery_state[evt.index]
    return tuple(entry["controls"])


# --- CycleGAN ---

def _panel_rows(p: dict, d: str, o: str) -> np.ndarray:
    rows = torch.stack([p[d], p[f"{d}_to_{o}"], p[f"{d}_reconstructed"], p[f"{d}_identity"]], 1)
    return widgets.mosaic(rows.reshape(-1, 1, 28, 28).cpu(), 4, pad=2, scale=4)


@friendly
def cycle_translate(checkpoint, seed, images_per_direction):
    """The six-panel view for ``images_per_direction`` held-out images of each domain, picked by ``seed``."""
    model, config, _ = widgets.load(CYCLE, checkpoint)
    seed = widgets.seed_of(seed)
    n = images_per_direction
    if n is None or not 1 <= n <= CYCLE_PANELS or int(n) != n:
        raise ValueError(f"Images per direction must be a whole number between 1 and {CYCLE_PANELS}; got {n}.")
    g = seeded(seed)
    ia, ib = torch.randperm(2_000, generator=g)[:int(n)], torch.randperm(2_000, generator=g)[:int(n)]
    p = cyclegan.six_panel(model, cyclegan.test_images(config.dataset, "a", ia),
                           cyclegan.test_images(config.dataset, "b", ib))
    note = (f"Seed {seed}: test images A {ia.tolist()}, B {ib.tolist()} ({checkpoint}). Columns: original, "
            "translated, reconstructed (translated back), identity (fed to the generator of its own domain).")
    return _panel_rows(p, "a", "b"), _panel_rows(p, "b", "a"), note


@friendly
def cycle_initial(checkpoint, seed, images_per_direction):
    """What the section shows on load or when the checkpoint changes (nothing without a checkpoint)."""
    if not checkpoint:
        return None, None, "Train a CycleGAN below to see translations."
    return cycle_translate(checkpoint, seed, images_per_direction)


def patch_figure(image: torch.Tensor, scores: torch.Tensor, title: str) -> Figure:
    """A (28, 28) image beside the PatchGAN's 7×7 scores drawn over it."""
    fig = Figure(figsize=(6.4, 3.2), dpi=90, layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    ax0.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax0.set_title("input")
    ax1.imshow(image, cmap="gray", vmin=0, vmax=1)
    im = ax1.imshow(scores, cmap="RdYlGn", vmin=0, vmax=1, alpha=0.55, extent=(-0.5, 27.5, 27.5, -0.5))
    for (r, c), v in np.ndenumerate(scores):
        ax1.text(c * 4 + 1.5, r * 4 + 1.5, f"{v:.1f}", ha="center", va="center", fontsize=6)
    ax1.set_title(title, fontsize=9)
    for ax in (ax0, ax1):
        ax.set_xlabel("pixel column")
    ax0.set_ylabel("pixel row")
    fig.colorbar(im, ax=ax1, label="D's score (1 = real, 0 = fake)")
    return fig


@friendly
def cycle_patches(checkpoint, judge, test_image):
    """The discriminator's real/fake verdict on each patch of one held-out (or translated) image."""
    model, config, _ = widgets.load(CYCLE, checkpoint)
    if judge not in PATCH_SOURCES:
        raise ValueError(f"Choose what to judge from {list(PATCH_SOURCES)}.")
    if test_image is None or int(test_image) != test_image:
        raise ValueError(f"Test image must be a whole number from 0 to 1999; got {test_image}.")
    index = int(test_image)
    domain, translated = PATCH_SOURCES[judge]
    x = cyclegan.test_images(config.dataset, domain, [index])
    by = domain
    if translated:
        by = "b" if domain == "a" else "a"
        with torch.no_grad():
            x = model.translate(x, f"{domain}_to_{by}")
    scores = cyclegan.patch_map(model, x, by)[0].cpu().numpy()
    fig = patch_figure(x[0, 0].cpu().numpy(), scores, f"D_{by.upper()}: each cell judges an 18×18 patch")
    note = (f"D_{by.upper()} scores {judge}, test image {index}: mean {scores.mean():.2f} "
            f"(least-squares targets: 1 real, 0 fake); {int((scores > 0.5).sum())} of 49 patches look real.")
    return widgets.figure_to_array(fig), note


def identity_off():
    """The book's ablation preset: no identity loss."""
    return 0.0


def cycle_config(validation_weight, reconstruction_weight, identity_weight, *, steps, batch_size, lr):
    """The shipped checkpoint's architecture (the ``cpu`` preset) with the Train section's settings."""
    return cyclegan.FAMILY.config("cpu", steps=steps, batch_size=batch_size, lr=lr,
                                  lambda_validation=float(validation_weight),
                                  lambda_reconstr=float(reconstruction_weight), lambda_id=float(identity_weight))


def _train_preview(images) -> np.ndarray:
    return widgets.mosaic(images, 4, pad=2, scale=3)


# --- layout ---

def image_picker(path: str, label: str, elem_id: str) -> gr.File:
    """An image upload the studio reads itself (Gradio decodes nothing, so a bad file gets a message),
    with the picture shown under it."""
    with gr.Column(min_width=220):
        file = gr.File(value=path, label=label, type="filepath", file_types=["image"], height=90, elem_id=elem_id)
        shown = gr.Image(value=path, label=f"{label} (as read)", format="png", interactive=False, height=200,
                         show_label=False, buttons=[])
    file.change(show_upload, file, shown, api_name=False, show_progress="hidden")
    return file


def build(page: parts.Page):
    gr.Markdown("Two ways to paint with a fixed ImageNet network: **style transfer** optimises an image so "
                "its deep features match a content photo and its feature correlations (Gram matrices) match a "
                "painting; **DeepDream** changes an image to excite chosen layers. (Chollet ch. 12, Foster ch. 5; "
                "networks: VGG16 convolutions and EfficientNet-Lite0, converted from packaged ImageNet weights.)")
    with gr.Column():
        with gr.Accordion("Style transfer", open=True):
            with gr.Row():
                content = image_picker(bundled("chelsea"), "Content image", "paint-content")
                style = image_picker(bundled("starry_night"), "Style image", "paint-style")
                with gr.Column():
                    preset = gr.Dropdown(list(PRESETS), value="Studio (short runs)",
                                         label="Presets (and the books' values)")
                    preset_btn = gr.Button("Apply preset")
                    seed = widgets.seed_box(label="Seed (noise start)")
            gr.Examples([[bundled("chelsea"), bundled("starry_night")], [bundled("china"), bundled("starry_night")],
                         [bundled("squirrel"), bundled("butterfly")], [bundled("coffee"), bundled("flower")]],
                        [content, style], label="Bundled pairs")
            with gr.Row():
                cw = gr.Slider(-12, 2, value=-7.6, step=0.1, label="log₁₀ content weight")
                sw = gr.Slider(-10, 4, value=-6, step=0.1, label="log₁₀ style weight")
                tvw = gr.Slider(-10, 4, value=-8, step=0.1, label="log₁₀ total-variation weight")
                content_layer = gr.Dropdown(VGG16_NAMES, value="block4_conv2", label="Content layer")
            gr.Markdown("**Style layers** (tick to use; the weight is the layer's share before decay; decay < 1 "
                        "favours fine texture from early layers, > 1 coarse patterns from deep ones)")
            with gr.Row():
                checks, weights = [], []
                for name in STYLE_LAYERS:
                    with gr.Column(min_width=120):
                        checks.append(gr.Checkbox(value=True, label=name))
                        weights.append(gr.Slider(0, 5, value=1.0, step=0.1, label=f"{name} weight",
                                                 show_label=False))
                decay = gr.Slider(0.25, 4, value=1.0, step=0.05, label="Decay per layer")
            with gr.Row():
                # small defaults so a first result comes in seconds on two CPU cores; raise them for quality
                size = gr.Slider(64, 512, value=128, step=32, label="Output size (long side, px)")
                preview = gr.Dropdown([0, 64, 96, 128], value=64, label="Preview size (0 = none)")
                start = gr.Radio(list(STARTS), value="content image", label="Start from")
                optimizer = gr.Radio(list(OPTIMIZERS), value="Adam", label="Optimizer")
            with gr.Row():
                lr = gr.Slider(0.5, 20, value=5, step=0.5, label="Adam step (pixel levels)")
                steps = gr.Slider(0, 500, value=30, step=5, label="Steps at full size")
                preview_steps = gr.Slider(0, 100, value=10, step=5, label="Preview steps")
                run_btn = gr.Button("Stylise", variant="primary", elem_id="paint-stylise")
                cancel_btn = gr.Button("Cancel", variant="stop")
            st_status = gr.Markdown(label="Status", elem_id="paint-status")
            with gr.Row():
                result = gr.Image(label="Result (streams as it optimises)", format="png", interactive=False,
                                  buttons=["download"], elem_id="paint-result", height=360)
                curves = gr.Plot(label="Loss split", show_label=False)
            st_out = parts.output_panel()
            with gr.Row():
                fast_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Preview style strength")
                fast_keep = gr.Checkbox(value=False, label="Keep the photo's colours")
                fast_btn = gr.Button("Instant preview (feed-forward network)", elem_id="paint-fast")
            fast_status = gr.Markdown(fast_style.missing() or "", label="Instant preview note")
            fast_img = gr.Image(label="Instant preview (Ghiasi et al. 2017, one forward pass)", format="png",
                                interactive=False, buttons=["download"], height=300)
            with gr.Row():
                gram_layer = gr.Dropdown(STYLE_LAYERS, value="block2_conv1", label="Gram matrices at layer")
                gram_channels = gr.Slider(8, 128, value=32, step=8, label="Channels shown")
                gram_btn = gr.Button("Show Gram matrices")
            gram_note = gr.Markdown(label="Gram distances")
            gram_plot = gr.Plot(label="Gram matrices", show_label=False)
            st_state = parts.visitor_state()

        with gr.Accordion("DeepDream", open=True):
            with gr.Row():
                d_image = image_picker(bundled("china"), "Image", "paint-dream-image")
                with gr.Column():
                    gr.Markdown("**Layer weights** (EfficientNet-Lite0 stages; the book's mixed4–7 ≈ stages 3–6)")
                    d_weights = [gr.Slider(0, 5, value=deepdream.BOOK_LAYERS.get(name, 0.0), step=0.1, label=name)
                                 for name in DREAM_LAYERS]
            gr.Examples([[bundled("china")], [bundled("flower")], [bundled("chelsea")], [bundled("coffee")]],
                        [d_image], label="Bundled photos")
            with gr.Row():
                d_step = gr.Slider(1, 60, value=20, step=1, label="Step")
                d_octaves = gr.Slider(1, 6, value=3, step=1, label="Octaves")
                d_scale = gr.Slider(1.0, 2.0, value=1.4, step=0.05, label="Octave scale")
                d_iters = gr.Slider(0, 100, value=20, step=1, label="Iterations per octave")
            with gr.Row():
                d_max = gr.Slider(0, 60, value=15, step=0.5, label="Max loss (0 = no limit)")
                d_reinject = gr.Checkbox(value=True, label="Detail reinjection")
                d_size = gr.Slider(64, 768, value=320, step=32, label="Size (long side, px)")
                d_seed = widgets.seed_box(label="Randomise seed")
            with gr.Row():
                d_run = gr.Button("Dream", variant="primary", elem_id="paint-dream")
                d_cancel = gr.Button("Cancel", variant="stop")
                d_random = gr.Button("Randomise layer settings")
                d_save = gr.Button("Save configuration to gallery")
            d_status = gr.Markdown(label="Status", elem_id="paint-dream-status")
            with gr.Row():
                with gr.Column():
                    d_result = gr.Image(label="Dream", format="png", interactive=False, buttons=["download"],
                                        elem_id="paint-dream-result", height=380)
                    # a radio, not a slider: one octave is a valid run, and a slider cannot span 1 to 1
                    d_scrub = gr.Radio([], value=None, label="Octave (scrub)", interactive=False,
                                       elem_id="paint-dream-octave")
                d_curve = gr.Plot(label="Loss per octave", show_label=False)
            d_out = parts.output_panel()
            d_gallery = gr.Gallery(label="Saved configurations (click one to restore its settings)", columns=6,
                                   height=240, elem_id="paint-gallery")
            d_json = gr.Code(label="Saved configurations as JSON", language="json", lines=4)
            d_frames = parts.visitor_state([])
            d_saved = parts.visitor_state([])

        with gr.Accordion("CycleGAN", open=True):
            gr.Markdown(DATA_NOTE)
            gr.Markdown("CycleGAN (Foster ch. 5) learns to translate between two domains with **no paired "
                        "examples**. Generators G_AB and G_BA are small ResNets; PatchGAN "
                        "discriminators D_A and D_B judge each patch. The generators minimise validation "
                        "(fool D) + reconstruction (A→B→A gives A back) + identity (leave own-domain images alone).")
            header = parts.checkpoint_header(page, CYCLE, "cyclegan_mnist", "paint-cyclegan")
            cg_ckpt = header.dropdown
            with gr.Row():
                cg_seed = widgets.seed_box(label="Seed (which test images)")
                cg_n = gr.Slider(1, CYCLE_PANELS, value=4, step=1, label="Images per direction")
                cg_go = gr.Button("Translate", variant="primary", elem_id="paint-cyclegan-translate")
            cg_note = gr.Markdown(label="Which test images")
            with gr.Row():
                cg_ab = gr.Image(label="A → B: original | translated | reconstructed | identity", format="png",
                                 interactive=False, buttons=["download"], elem_id="paint-cyclegan-ab")
                cg_ba = gr.Image(label="B → A: original | translated | reconstructed | identity", format="png",
                                 interactive=False, buttons=["download"])
            gr.Markdown("**PatchGAN verdict**: the discriminator outputs a 7×7 grid, one real/fake score per "
                        "overlapping patch, rather than one number for the whole image.")
            with gr.Row():
                cg_source = gr.Dropdown(list(PATCH_SOURCES), value="A→B translation (judged as B)", label="Judge")
                cg_index = gr.Number(value=0, precision=None, label="Test image (0–1999)")
                cg_judge = gr.Button("Show patch map")
            cg_patch_note = gr.Markdown(label="Patch verdict")
            cg_patch = gr.Image(label="Patch map", format="png", interactive=False)
            with parts.TrainPanel(header, "Train a CycleGAN here (the shipped checkpoint's architecture). On one "
                                  "CPU core a step at batch 16 takes about 0.7 s; a few hundred steps already change "
                                  "the texture, 3,000 (about 35 minutes) give the shipped checkpoint. The preview is "
                                  "the six-panel view of 4 fixed test images each way.",
                                  steps_default=300, batches=(1, 4, 8, 16, 32), batch_default=16, lr_default=2e-4,
                                  run_name="my_cyclegan", elem_id="paint-cyclegan-train",
                                  preview=lambda: gr.Image(label="Six-panel preview (rows: 4 A images, then 4 B "
                                                           "images)", format="png", interactive=False)) as train:
                t_lv = gr.Slider(0, 10, value=1.0, step=0.5, label="Validation weight (adversarial)")
                t_lr_ = gr.Slider(0, 50, value=10.0, step=0.5, label="Reconstruction weight (cycle)")
                t_li = gr.Slider(0, 20, value=2.0, step=0.5, label="Identity weight")
                t_id_off = gr.Button("Identity off (ablation)")

    st_controls = [cw, sw, tvw, content_layer, *checks, *weights, decay, size, preview, start, optimizer, lr,
                   steps, preview_steps]
    images = {"content_image": "digit.png", "style_image": "digit.png"}
    run_ev = page.action(run_btn.click, stylise, [content, style, seed, *st_controls],
                         [result, curves, st_status, st_state, *st_out.outputs], api_name="paint_stylise",
                         names=["content_image", "style_image", "seed", *ST_CONTROLS], example=images,
                         show_progress_on=[st_status])
    cancel_btn.click(None, None, None, cancels=[run_ev], api_name=False)
    page.action(fast_btn.click, fast_preview, [content, style, fast_strength, fast_keep, size],
                [fast_img, fast_status], api_name="paint_fast_preview", example=images,
                show_progress_on=[fast_status])
    preset_btn.click(apply_preset, preset, [cw, sw, tvw, decay, optimizer, lr], api_name=False)
    gram_btn.click(show_gram, [st_state, gram_layer, gram_channels], [gram_plot, gram_note], api_name=False)

    d_controls = [*d_weights, d_step, d_octaves, d_scale, d_iters, d_max, d_reinject, d_size]
    dream_ev = page.action(d_run.click, run_dream, [d_image, *d_controls],
                           [d_result, d_status, d_scrub, d_frames, d_curve, *d_out.outputs],
                           api_name="paint_deepdream", names=["image", *DREAM_CONTROLS],
                           example={"image": "digit.png"}, show_progress_on=[d_status])
    d_cancel.click(None, None, None, cancels=[dream_ev], api_name=False)
    d_scrub.input(scrub, [d_frames, d_scrub], d_result, api_name=False, show_progress="hidden")
    d_random.click(randomise, d_seed, [*d_weights, d_seed], api_name=False)
    d_save.click(save_config, [d_saved, d_frames, *d_controls], [d_saved, d_gallery, d_json], api_name=False)
    d_gallery.select(restore_config, d_saved, d_controls, api_name=False)

    header.then(cycle_initial, [cg_ckpt, cg_seed, cg_n], [cg_ab, cg_ba, cg_note])
    page.action(cg_go.click, cycle_translate, [cg_ckpt, cg_seed, cg_n], [cg_ab, cg_ba, cg_note],
                api_name="cyclegan_translate", show_progress_on=[cg_note])
    page.action(cg_judge.click, cycle_patches, [cg_ckpt, cg_source, cg_index], [cg_patch, cg_patch_note],
                api_name="cyclegan_patch_map", show_progress_on=[cg_patch_note])
    t_id_off.click(identity_off, None, t_li, api_name=False)
    train.wire(page, cycle_config, [t_lv, t_lr_, t_li], CYCLE_LOSSES, render=_train_preview, api_prefix="cyclegan")
