"""The Paint tab: neural style transfer and DeepDream, two ways of optimising an image through a
fixed ImageNet network, with every weight on a slider. Style transfer streams snapshots (a quick
low-resolution preview first) with its loss split into content, style and total variation, and
shows the Gram matrices it matches; DeepDream streams one result per octave, can be scrubbed, and
keeps a gallery of the configurations you liked. CycleGAN translates between two unpaired domains
(plain digits and digits on photo textures): the book's six-panel view both ways, the PatchGAN's
real/fake map over an image, and training in the page with the three loss weights on sliders."""
from __future__ import annotations

import json
import math
import time
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from models.paint import cyclegan, deepdream, fast_style, pretrained, style_transfer
from models.core.family import seeded
from models.paint.pretrained import VGG16_NAMES
from models.paint.style_transfer import PRESETS, STYLE_LAYERS, StyleConfig
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "Paint"
IMAGES = Path(__file__).resolve().parent.parent.parent / "assets" / "images"
SAMPLES = Path(tempfile.gettempdir()) / "gdl-studio-samples"
OPTIMIZERS = {"L-BFGS": "lbfgs", "Adam": "adam"}
STARTS = {"content image": "content", "noise": "noise"}
DREAM_LAYERS = deepdream.LAYERS
MAX_GALLERY = 24
CYCLE = "cyclegan"
CYCLE_PANELS = 8  # most test images per direction in the six-panel view
PATCH_SOURCES = {  # what is judged -> (domain of the image, whether it is translated, the judging D)
    "real A (plain digit)": ("a", False),
    "A→B translation (judged as B)": ("a", True),
    "real B (digit on texture)": ("b", False),
    "B→A translation (judged as A)": ("b", True),
}
CYCLE_LOSSES = ["validation", "reconstruction", "identity", "d_a", "d_b"]


def bundled(name: str) -> str:
    """Path of a bundled photo; scikit-learn's two sample photos are written out on first use."""
    if name in ("china", "flower"):
        path = SAMPLES / f"{name}.jpg"
        if not path.exists():
            from sklearn.datasets import load_sample_images

            SAMPLES.mkdir(parents=True, exist_ok=True)
            imgs = dict(zip(("china", "flower"), load_sample_images().images))
            Image.fromarray(imgs[name]).save(path, quality=92)
        return str(path)
    return str(IMAGES / f"{name}.jpg")


def _image(path, what: str, side: int) -> tuple[torch.Tensor, str]:
    if not path:
        raise ValueError(f"Choose a {what} image first (upload one or pick an example).")
    return pretrained.fit(pretrained.read_image(path), side, what)


# --- style transfer ---

def style_config(cw_log, sw_log, tvw_log, content_layer, *rest) -> StyleConfig:
    """The controls, in the order the page passes them, as a StyleConfig."""
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
    """Weighted content, style and TV losses against step (log scale), the preview stage shaded."""
    fig = Figure(figsize=(6.4, 2.8), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    steps = [h["step"] for h in history]
    for key, color in (("content", "C0"), ("style", "C1"), ("tv", "C2"), ("total", "k")):
        ax.plot(steps, [max(h[key], 1e-30) for h in history], color=color, lw=1.8 if key == "total" else 1.2,
                ls="--" if key == "total" else "-", label=key)
    preview = [h["step"] for h in history if h["stage"] == "preview"]
    if preview:
        ax.axvspan(0.5, max(preview) + 0.5, color="0.9", label="low-res preview")
    ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("weighted loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=5, loc="upper right")
    return fig


@friendly
def stylise(content_path, style_path, seed, *controls):
    """Stream snapshots: (result, curves, status, state for the Gram viewer)."""
    cfg = style_config(*controls)
    style_transfer.check(cfg)
    seed = widgets.seed_of(seed)
    content, c_note = _image(content_path, "content", cfg.size)
    style, s_note = _image(style_path, "style", cfg.size)
    notes = (f"{c_note}; {s_note}; weights: content {cfg.content_weight:.2g}, style {cfg.style_weight:.2g}, "
             f"TV {cfg.tv_weight:.2g}; seed {int(seed)}")
    snaps = style_transfer.transfer(content, style, cfg, torch.Generator().manual_seed(int(seed)))
    total = sum(n for _, n in style_transfer._stages(cfg))
    yield None, None, f"Starting: {notes}. The first preview comes after {cfg.snapshot_every} steps.", None
    for snap in snaps:
        h = snap["history"][-1] if snap["history"] else {}
        img = pretrained.to_uint8(snap["image"])
        where = f"{snap['stage']} at {img.shape[1]}×{img.shape[0]} px"
        status = (f"Step {snap['step']}/{total} ({where}): content {h.get('content', 0):.3g}, "
                  f"style {h.get('style', 0):.3g}, TV {h.get('tv', 0):.3g}. {notes}.")
        state = {"content": content_path, "style": style_path, "result": img}
        yield img, loss_figure(snap["history"]) if snap["history"] else None, status, state
    yield gr.update(), gr.update(), status + " Done.", state


@friendly
def fast_preview(content_path, style_path, strength, preserve_color, size):
    """The feed-forward network's one-pass rendering, to set beside the optimised result."""
    for path, what in ((content_path, "content"), (style_path, "style")):
        if not path:
            raise ValueError(f"Choose a {what} image first (upload one or pick an example).")
    content, style = pretrained.read_image(content_path), pretrained.read_image(style_path)
    t0 = time.time()
    out = fast_style.stylise(content, style, float(strength), int(size), bool(preserve_color))
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


@friendly
def show_gram(state, layer, channels):
    if not state:
        raise ValueError("Run style transfer first: the Gram viewer compares its result with the two inputs.")
    result = torch.from_numpy(state["result"]).permute(2, 0, 1)[None].float() / 255.0
    side = max(result.shape[-2:])
    content, _ = _image(state["content"], "content", side)
    style, _ = _image(state["style"], "style", side)
    views = style_transfer.gram_views(content, style, result, layer, int(channels))
    dist = {k: float((views[k] - views["style"]).norm() / views["style"].norm()) for k in ("content", "result")}
    note = (f"Relative distance to the style's Gram matrix: content {dist['content']:.2f}, result "
            f"{dist['result']:.2f} (lower = closer in style at this layer).")
    return gram_figure(views, layer), note


def apply_preset(name):
    if name not in PRESETS:
        raise gr.Error(f"Unknown preset {name!r}.")
    p = PRESETS[name]
    cfg = StyleConfig(**p)
    inv = {v: k for k, v in OPTIMIZERS.items()}
    return (math.log10(cfg.content_weight), math.log10(cfg.style_weight), math.log10(cfg.tv_weight),
            cfg.decay, inv[cfg.optimizer], cfg.lr)


# --- DeepDream ---

def dream_config(*controls) -> deepdream.DreamConfig:
    n = len(DREAM_LAYERS)
    weights, (step, octaves, scale, iterations, max_loss, reinject, size) = controls[:n], controls[n:]
    return deepdream.DreamConfig(layers={k: float(w) for k, w in zip(DREAM_LAYERS, weights)}, step=float(step),
                                 octaves=int(octaves), octave_scale=float(scale), iterations=int(iterations),
                                 max_loss=float(max_loss), reinject=bool(reinject), size=int(size))


def dream_loss_figure(octaves: list[dict]) -> Figure:
    fig = Figure(figsize=(6.4, 2.6), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    start = 0
    for r in octaves:
        xs = range(start + 1, start + 1 + len(r["losses"]))
        ax.plot(xs, r["losses"], marker=".", label=f"octave {r['octave']} ({r['shape'][1]}×{r['shape'][0]})")
        start += len(r["losses"])
    ax.set_xlabel("gradient-ascent step (all octaves)")
    ax.set_ylabel("loss (1 per unit weight = the photo)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def save_png(img: np.ndarray, name: str) -> str:
    widgets.EXPORTS.mkdir(parents=True, exist_ok=True)
    path = widgets.EXPORTS / name
    Image.fromarray(img).save(path)
    return str(path)


@friendly
def run_dream(path, *controls):
    """Stream one result per octave: (image, status, scrubber, octave images, loss plot, PNG file)."""
    cfg = dream_config(*controls)
    deepdream.check(cfg)
    x, note = _image(path, "image", cfg.size)
    frames, results = [], []
    yield None, f"Dreaming: {note}; {cfg.octaves} octaves × {cfg.iterations} steps.", gr.update(), [], None, None
    for r in deepdream.dream(x, cfg):
        results.append(r)
        frames.append(pretrained.to_uint8(r["image"]))
        early = f", stopped at max loss after {len(r['losses'])} steps" if r["stopped_early"] else ""
        status = (f"Octave {r['octave']}/{cfg.octaves} at {r['shape'][1]}×{r['shape'][0]} px: loss "
                  f"{r['losses'][0] if r['losses'] else float('nan'):.2f} → "
                  f"{r['losses'][-1] if r['losses'] else float('nan'):.2f}{early}. {note}.")
        yield (frames[-1], status, gr.update(maximum=len(frames), value=len(frames), interactive=len(frames) > 1),
               frames, dream_loss_figure(results), None)
    yield gr.update(), gr.update(), gr.update(), frames, gr.update(), save_png(frames[-1], "deepdream.png")


def scrub(frames, octave):
    if not frames:
        return None
    i = int(octave) - 1
    if not 0 <= i < len(frames):
        raise gr.Error(f"Octave must be from 1 to {len(frames)}.")
    return frames[i]


@friendly
def randomise(seed):
    """New random layer weights from a seed (shown), then the seed moves on for the next click."""
    seed = widgets.seed_of(seed)
    weights = deepdream.random_layers(torch.Generator().manual_seed(int(seed)))
    return (*weights.values(), int(seed) + 1)


def save_config(gallery_state, frames, *controls):
    """Keep the current result and its settings in this session's gallery."""
    if not frames:
        raise gr.Error("Dream first: the gallery keeps a result together with the settings that made it.")
    cfg = dream_config(*controls)
    entry = {"image": frames[-1], "controls": [float(c) if not isinstance(c, bool) else c for c in controls],
             "caption": ", ".join(f"{k} {v:g}" for k, v in cfg.layers.items() if v) +
                        f"; step {cfg.step:g}, {cfg.octaves}×{cfg.octave_scale:g}, {cfg.iterations} it"}
    gallery_state = (gallery_state or []) + [entry]
    gallery_state = gallery_state[-MAX_GALLERY:]
    return gallery_state, [(e["image"], e["caption"]) for e in gallery_state], config_json(gallery_state)


def config_json(gallery_state) -> str:
    names = [*DREAM_LAYERS, "step", "octaves", "octave_scale", "iterations", "max_loss", "reinject", "size"]
    return json.dumps([dict(zip(names, e["controls"])) for e in gallery_state], indent=1)


def restore_config(gallery_state, evt: gr.SelectData):
    """Clicking a saved configuration puts its settings back on the sliders."""
    entry = gallery_state[evt.index]
    return tuple(entry["controls"])


# --- layout ---

# --- CycleGAN ---

def cycle_card(name: str) -> str:
    if not name:
        return "No CycleGAN checkpoint yet: train one below."
    _, config, card = widgets.load(CYCLE, name)
    m = card.get("metrics", {})
    lines = [widgets.card_markdown(card),
             f"Loss weights: validation {config.lambda_validation:g}, reconstruction {config.lambda_reconstr:g}, "
             f"identity {config.lambda_id:g}"]
    if "reconstruction_a" in m:
        lines.append(f"Test set: cycle error (mean |x − x̂|) A {m['reconstruction_a']:.3f}, B {m['reconstruction_b']:.3f}; "
                     f"identity error A {m['identity_a']:.3f}, B {m['identity_b']:.3f}; the MNIST classifier reads "
                     f"**{m['b_to_a_digit_accuracy']:.0%}** of B→A translations right "
                     f"({m['textured_input_accuracy']:.0%} of the textured inputs).")
    return "  \n".join(lines)


def _panel_rows(p: dict, d: str, o: str) -> np.ndarray:
    rows = torch.stack([p[d], p[f"{d}_to_{o}"], p[f"{d}_reconstructed"], p[f"{d}_identity"]], 1)
    return widgets.mosaic(rows.reshape(-1, 1, 28, 28).cpu(), 4, pad=2, scale=4)


@friendly
def cycle_translate(name, seed, n):
    """The six-panel view for ``n`` held-out images of each domain, picked by ``seed``."""
    model, config, _ = widgets.load(CYCLE, name)
    n = int(n)
    if not 1 <= n <= CYCLE_PANELS:
        raise ValueError(f"Images per direction must be between 1 and {CYCLE_PANELS}; got {n}.")
    g = seeded(int(seed))
    ia, ib = torch.randperm(2_000, generator=g)[:n], torch.randperm(2_000, generator=g)[:n]
    p = cyclegan.six_panel(model, cyclegan.test_images(config.dataset, "a", ia),
                           cyclegan.test_images(config.dataset, "b", ib))
    note = (f"Seed {int(seed)}: test images A {ia.tolist()}, B {ib.tolist()} ({name}). Columns: original, "
            "translated, reconstructed (translated back), identity (fed to the generator of its own domain).")
    return _panel_rows(p, "a", "b"), _panel_rows(p, "b", "a"), note


def cycle_initial(name, seed, n):
    """What the section shows on load or when the checkpoint changes (nothing without a checkpoint)."""
    if not name:
        return None, None, "Train a CycleGAN below to see translations."
    return cycle_translate(name, seed, n)


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
def cycle_patches(name, source, index):
    """The discriminator's real/fake verdict on each patch of one held-out (or translated) image."""
    model, config, _ = widgets.load(CYCLE, name)
    if source not in PATCH_SOURCES:
        raise ValueError(f"Choose what to judge from {list(PATCH_SOURCES)}.")
    if index is None:
        raise ValueError("Enter a test image number.")
    domain, translated = PATCH_SOURCES[source]
    x = cyclegan.test_images(config.dataset, domain, [int(index)])
    judge = domain
    if translated:
        judge = "b" if domain == "a" else "a"
        with torch.no_grad():
            x = model.translate(x, f"{domain}_to_{judge}")
    scores = cyclegan.patch_map(model, x, judge)[0].cpu().numpy()
    fig = patch_figure(x[0, 0].cpu().numpy(), scores, f"D_{judge.upper()}: each cell judges an 18×18 patch")
    note = (f"D_{judge.upper()} scores {source}, test image {int(index)}: mean {scores.mean():.2f} "
            f"(least-squares targets: 1 real, 0 fake); {int((scores > 0.5).sum())} of 49 patches look real.")
    return widgets.figure_to_array(fig), note


def identity_off():
    """The book's ablation preset: no identity loss."""
    return 0.0


@friendly
def cycle_train_start(steps, batch, lam_v, lam_r, lam_id, lr, run_name, current):
    config = cyclegan.FAMILY.config("cpu", steps=int(steps), batch_size=int(batch), lambda_validation=float(lam_v),
                                    lambda_reconstr=float(lam_r), lambda_id=float(lam_id), lr=float(lr))
    job = JOBS.start(CYCLE, (run_name or "").strip(), config)
    yield from stream(job, CYCLE, CYCLE_LOSSES, current, render=_train_preview)


@friendly
def cycle_train_resume(run_name, steps, current):
    job = JOBS.resume(CYCLE, run_name, steps)
    yield from stream(job, CYCLE, CYCLE_LOSSES, current, render=_train_preview)


def _train_preview(images) -> np.ndarray:
    return widgets.mosaic(images, 4, pad=2, scale=3)


def build(page):
    demo = page.demo
    gr.Markdown("Two ways to paint with a fixed ImageNet network: **style transfer** optimises an image so "
                "its deep features match a content photo and its feature correlations (Gram matrices) match a "
                "painting; **DeepDream** changes an image to excite chosen layers. (Chollet ch. 12, Foster ch. 5; "
                "networks: VGG16 convolutions and EfficientNet-Lite0, converted from packaged ImageNet weights.)")
    with gr.Column():
        with gr.Accordion("Style transfer", open=True):
            with gr.Row():
                content = gr.Image(value=bundled("chelsea"), type="filepath", label="Content image",
                                   height=220, elem_id="paint-content")
                style = gr.Image(value=bundled("starry_night"), type="filepath", label="Style image",
                                 height=220, elem_id="paint-style")
                with gr.Column():
                    preset = gr.Dropdown(list(PRESETS), value="Studio (short runs)", label="Presets (and the books' values)")
                    preset_btn = gr.Button("Apply preset")
                    seed = gr.Number(value=0, precision=0, label="Seed (noise start)")
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
                        weights.append(gr.Slider(0, 5, value=1.0, step=0.1, label="weight", show_label=False))
                decay = gr.Slider(0.25, 4, value=1.0, step=0.05, label="Decay per layer")
            with gr.Row():
                size = gr.Slider(64, 512, value=256, step=32, label="Output size (long side, px)")
                preview = gr.Dropdown([0, 64, 96, 128], value=96, label="Preview size (0 = none)")
                start = gr.Radio(list(STARTS), value="content image", label="Start from")
                optimizer = gr.Radio(list(OPTIMIZERS), value="Adam", label="Optimizer")
            with gr.Row():
                lr = gr.Slider(0.5, 20, value=5, step=0.5, label="Adam step (pixel levels)")
                steps = gr.Slider(0, 500, value=60, step=5, label="Steps at full size")
                preview_steps = gr.Slider(0, 100, value=20, step=5, label="Preview steps")
                run_btn = gr.Button("Stylise", variant="primary", elem_id="paint-stylise")
                cancel_btn = gr.Button("Cancel", variant="stop")
            st_status = gr.Markdown(elem_id="paint-status")
            with gr.Row():
                result = gr.Image(label="Result (streams as it optimises)", format="png", interactive=False,
                                  buttons=["download"], elem_id="paint-result", height=360)
                curves = gr.Plot(label="Loss split", show_label=False)
            with gr.Row():
                fast_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Preview style strength")
                fast_keep = gr.Checkbox(value=False, label="Keep the photo's colours")
                fast_btn = gr.Button("Instant preview (feed-forward network)", elem_id="paint-fast")
            fast_status = gr.Markdown(fast_style.missing() or "")
            fast_img = gr.Image(label="Instant preview (Ghiasi et al. 2017, one forward pass)", format="png",
                                interactive=False, buttons=["download"], height=300)
            with gr.Row():
                gram_layer = gr.Dropdown(STYLE_LAYERS, value="block2_conv1", label="Gram matrices at layer")
                gram_channels = gr.Slider(8, 128, value=32, step=8, label="Channels shown")
                gram_btn = gr.Button("Show Gram matrices")
            gram_note = gr.Markdown()
            gram_plot = gr.Plot(show_label=False)
            st_state = gr.State(None)

        with gr.Accordion("DeepDream", open=True):
            with gr.Row():
                d_image = gr.Image(value=bundled("china"), type="filepath", label="Image", height=240,
                                   elem_id="paint-dream-image")
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
                d_seed = gr.Number(value=0, precision=0, label="Randomise seed")
            with gr.Row():
                d_run = gr.Button("Dream", variant="primary", elem_id="paint-dream")
                d_cancel = gr.Button("Cancel", variant="stop")
                d_random = gr.Button("Randomise layer settings")
                d_save = gr.Button("Save configuration to gallery")
            d_status = gr.Markdown(elem_id="paint-dream-status")
            with gr.Row():
                with gr.Column():
                    d_result = gr.Image(label="Dream", format="png", interactive=False, buttons=["download"],
                                        elem_id="paint-dream-result", height=380)
                    d_scrub = gr.Slider(1, 3, value=1, step=1, label="Octave (scrub)", interactive=False)
                    d_png = gr.File(label="PNG (full size)", height=80)
                d_curve = gr.Plot(show_label=False)
            d_gallery = gr.Gallery(label="Saved configurations (click one to restore its settings)", columns=6,
                                   height=240, elem_id="paint-gallery")
            d_json = gr.Code(label="Saved configurations as JSON", language="json", lines=4)
            d_frames = gr.State([])
            d_saved = gr.State([])

        with gr.Accordion("CycleGAN", open=True):
            cg_choices = widgets.checkpoint_choices(CYCLE)
            cg_names = [v for _, v in cg_choices]
            gr.Markdown("CycleGAN (Foster ch. 5) learns to translate between two domains with **no paired "
                        "examples**: A = plain MNIST digits, B = other digits blended onto patches of the bundled "
                        "photos (MNIST-M style). Generators G_AB and G_BA are small ResNets; PatchGAN "
                        "discriminators D_A and D_B judge each patch. The generators minimise validation "
                        "(fool D) + reconstruction (A→B→A gives A back) + identity (leave own-domain images alone).")
            with gr.Row():
                cg_ckpt = gr.Dropdown(cg_choices, value="cyclegan_mnist" if "cyclegan_mnist" in cg_names
                                      else (cg_names[0] if cg_names else None), label="Checkpoint", scale=2,
                                      elem_id="paint-cyclegan-checkpoint")
                cg_card = gr.Markdown()
            with gr.Row():
                cg_seed = gr.Number(value=0, precision=0, label="Seed (which test images)")
                cg_n = gr.Slider(1, CYCLE_PANELS, value=4, step=1, label="Images per direction")
                cg_go = gr.Button("Translate", variant="primary", elem_id="paint-cyclegan-translate")
            cg_note = gr.Markdown()
            with gr.Row():
                cg_ab = gr.Image(label="A → B: original | translated | reconstructed | identity", format="png",
                                 interactive=False, buttons=["download"], elem_id="paint-cyclegan-ab")
                cg_ba = gr.Image(label="B → A: original | translated | reconstructed | identity", format="png",
                                 interactive=False, buttons=["download"])
            gr.Markdown("**PatchGAN verdict**: the discriminator outputs a 7×7 grid, one real/fake score per "
                        "overlapping patch, rather than one number for the whole image.")
            with gr.Row():
                cg_source = gr.Dropdown(list(PATCH_SOURCES), value="A→B translation (judged as B)", label="Judge")
                cg_index = gr.Number(value=0, precision=0, label="Test image (0–1999)")
                cg_judge = gr.Button("Show patch map")
            cg_patch_note = gr.Markdown()
            cg_patch = gr.Image(label="Patch map", format="png", interactive=False)
            gr.Markdown("**Train** a CycleGAN here (the shipped checkpoint's architecture). On one CPU core a step "
                        "at batch 16 takes about 0.7 s; a few hundred steps already change the texture, 3,000 "
                        "(about 35 minutes) give the shipped checkpoint. The preview is the six-panel view of 4 "
                        "fixed test images each way.")
            with gr.Row():
                t_lv = gr.Slider(0, 10, value=1.0, step=0.5, label="Validation (adversarial) weight")
                t_lr_ = gr.Slider(0, 50, value=10.0, step=0.5, label="Reconstruction (cycle) weight")
                t_li = gr.Slider(0, 20, value=2.0, step=0.5, label="Identity weight")
                t_id_off = gr.Button("Identity off (ablation)")
            with gr.Row():
                cg_steps = gr.Slider(10, 20000, value=300, step=10, label="Steps")
                cg_batch = gr.Dropdown([1, 4, 8, 16, 32], value=16, label="Batch size")
                cg_lr = gr.Number(value=2e-4, label="Learning rate")
                cg_name = gr.Textbox(value="my_cyclegan", label="Run name")
            with gr.Row():
                cg_start = gr.Button("Start", variant="primary")
                cg_resume = gr.Button("Resume")
                cg_cancel = gr.Button("Cancel", variant="stop")
            cg_status = gr.Markdown()
            with gr.Row():
                cg_curves = gr.Plot(show_label=False)
                cg_preview = gr.Image(label="Six-panel preview (rows: 4 A images, then 4 B images)", format="png",
                                      interactive=False)

    st_controls = [cw, sw, tvw, content_layer, *checks, *weights, decay, size, preview, start, optimizer, lr,
                   steps, preview_steps]
    run_ev = run_btn.click(stylise, [content, style, seed, *st_controls], [result, curves, st_status, st_state],
                           show_progress_on=[st_status], api_name="stylise")
    cancel_btn.click(None, None, None, cancels=[run_ev], api_name=False)
    fast_btn.click(fast_preview, [content, style, fast_strength, fast_keep, size], [fast_img, fast_status],
                   show_progress_on=[fast_status], api_name="fast_preview")
    preset_btn.click(apply_preset, preset, [cw, sw, tvw, decay, optimizer, lr], api_name=False)
    gram_btn.click(show_gram, [st_state, gram_layer, gram_channels], [gram_plot, gram_note], api_name=False)

    d_controls = [*d_weights, d_step, d_octaves, d_scale, d_iters, d_max, d_reinject, d_size]
    dream_ev = d_run.click(run_dream, [d_image, *d_controls], [d_result, d_status, d_scrub, d_frames, d_curve, d_png],
                           show_progress_on=[d_status], api_name="deepdream")
    d_cancel.click(None, None, None, cancels=[dream_ev], api_name=False)
    d_scrub.change(scrub, [d_frames, d_scrub], d_result, api_name=False, show_progress="hidden")
    d_random.click(randomise, d_seed, [*d_weights, d_seed], api_name=False)
    d_save.click(save_config, [d_saved, d_frames, *d_controls], [d_saved, d_gallery, d_json], api_name=False)
    d_gallery.select(restore_config, d_saved, d_controls, api_name=False)

    for event in (cg_ckpt.change, demo.load):
        event(friendly(cycle_card), cg_ckpt, cg_card, api_name=False)
        event(cycle_initial, [cg_ckpt, cg_seed, cg_n], [cg_ab, cg_ba, cg_note], api_name=False)
    cg_go.click(cycle_translate, [cg_ckpt, cg_seed, cg_n], [cg_ab, cg_ba, cg_note], show_progress_on=[cg_note],
                api_name="cyclegan")
    cg_judge.click(cycle_patches, [cg_ckpt, cg_source, cg_index], [cg_patch, cg_patch_note],
                   show_progress_on=[cg_patch_note], api_name=False)
    t_id_off.click(identity_off, None, t_li, api_name=False)
    cg_start.click(cycle_train_start, [cg_steps, cg_batch, t_lv, t_lr_, t_li, cg_lr, cg_name, cg_ckpt],
                   [cg_status, cg_curves, cg_preview, cg_ckpt], show_progress_on=[cg_status], api_name=False)
    cg_resume.click(cycle_train_resume, [cg_name, cg_steps, cg_ckpt], [cg_status, cg_curves, cg_preview, cg_ckpt],
                    show_progress_on=[cg_status], api_name=False)
    cg_cancel.click(JOBS.cancel, None, cg_status, api_name=False)
