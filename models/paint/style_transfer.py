"""Neural style transfer (Gatys, Ecker & Bethge 2015; Foster ch. 5, Chollet ch. 12).

Nothing is trained here: the pixels of one image are optimised, through a fixed ImageNet VGG16
(:func:`models.paint.pretrained.vgg16`), so that

* its **content** matches the content image's: deep activations ``F`` at one layer, compared
  directly, ``L_content = Σ (F_gen − F_content)²``;
* its **style** matches the style image's: at several layers, the Gram matrix ``G = F Fᵀ`` of
  the (C, H·W) activations (which channels fire together, wherever in the image) is compared,
  ``L_style(l) = Σ (G_gen − G_style)² / (4 · 3² · (H·W)²)``. Like both books (and the Keras
  example they follow) we divide by the *image's* pixel count and a fixed "3 channels", not by
  each layer's C and H·W as Gatys does: so the books' weights mean here what they meant there;
* it is smooth: the **total variation** ``L_tv = Σ ((x[i,j]−x[i+1,j])² + (x[i,j]−x[i,j+1])²)^1.25``
  on 0–255 pixels.

``loss = w_content·L_content + Σ_l w_style·a_l·L_style(l) + w_tv·L_tv``, where the per-layer
shares ``a_l ∝ weight_l · decay^rank(l)`` sum to 1 (decay < 1 favours the fine, early layers;
> 1 the coarse, deep ones). With equal shares this is exactly the books' loss, whose defaults are
the presets. The book uses ``block5_conv2`` for content; the shipped VGG stops at ``block5_conv1``,
so the default is Gatys' own choice, ``block4_conv2``.

Because this is an optimisation rather than a trained model, it is not a family in
``models.FAMILIES``. :func:`transfer` is a generator (the studio's sampler pattern): it yields
snapshots with the loss split so far, first from a fast low-resolution stage, then refining at
full size from the upsampled preview.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
import torch.nn.functional as F

from models.paint.pretrained import VGG16_NAMES, vgg16

STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
INITS = ("content", "noise")
OPTIMIZERS = ("lbfgs", "adam")
MIN_SIZE, MAX_SIZE = 32, 1024


@dataclass
class StyleConfig:
    content_weight: float = 2.5e-8  # Chollet's values; only their ratios matter to L-BFGS and Adam
    style_weight: float = 1e-6
    tv_weight: float = 1e-8  # the books use 1e-6, which blurs short runs (see PRESETS)
    content_layer: str = "block4_conv2"  # Gatys' conv4_2 (the book's block5_conv2 is not shipped)
    style_layers: dict = field(default_factory=lambda: {name: 1.0 for name in STYLE_LAYERS})
    decay: float = 1.0  # per-layer share × decay**rank: < 1 fine texture, > 1 coarse patterns
    size: int = 256  # long side of the output, in pixels
    init: str = "content"  # start from the content image or from uniform noise
    optimizer: str = "lbfgs"
    steps: int = 100  # optimisation steps at full size (L-BFGS iterations or Adam steps)
    lr: float = 5.0  # Adam only: step size in 0-255 pixel levels
    preview_size: int = 96  # long side of the quick first stage (0: none)
    preview_steps: int = 20
    snapshot_every: int = 5


PRESETS = {
    # The books' content/style balance with a light TV term. With the books' TV weight the picture
    # blurs before any style appears over the ~100 steps a CPU can afford (measured: 50 L-BFGS steps
    # at 160 px give a smooth blur); likely also because this VGG, fine-tuned for edges, has other
    # activation scales than the books' ImageNet VGG, and the style loss grows with their 4th power
    "Studio (short runs)": dict(content_weight=2.5e-8, style_weight=1e-6, tv_weight=1e-8, optimizer="adam", lr=5.0),
    # Chollet, DLwP 2nd ed.: weights 2.5e-8 / 1e-6 / 1e-6, gradient descent on the pixels
    "Chollet (DLwP)": dict(content_weight=2.5e-8, style_weight=1e-6, tv_weight=1e-6, optimizer="adam", lr=5.0),
    # Foster ch. 5 / the Keras neural_style_transfer example: 0.025 / 1 / 1 with L-BFGS
    "Foster (Keras example)": dict(content_weight=0.025, style_weight=1.0, tv_weight=1.0, optimizer="lbfgs"),
    # More style, fine texture from the early layers only
    "Texture": dict(content_weight=2.5e-8, style_weight=1e-5, tv_weight=1e-8, decay=0.6, optimizer="lbfgs"),
}


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) activations -> (B, C, C) Gram matrices F Fᵀ, unnormalised as in the book."""
    f = features.flatten(2)  # (B, C, HW)
    return f @ f.transpose(1, 2)


def style_loss(g_style: torch.Tensor, features: torch.Tensor, pixels: int) -> torch.Tensor:
    """Σ (G_style − G_gen)² / (4 · 3² · pixels²) per image, ``pixels`` = the image's H·W (the books'
    normalisation, channels fixed at 3)."""
    return ((g_style - gram(features)) ** 2).sum((1, 2)) / (4.0 * 3 ** 2 * pixels ** 2)


def content_loss(f_content: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return ((features - f_content) ** 2).sum((1, 2, 3))


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation of (B, 3, H, W) images in [0, 1], measured on 0-255 pixels."""
    x = x * 255.0
    a = (x[:, :, :-1, :-1] - x[:, :, 1:, :-1]) ** 2
    b = (x[:, :, :-1, :-1] - x[:, :, :-1, 1:]) ** 2
    return ((a + b) ** 1.25).sum((1, 2, 3))


def layer_shares(style_layers: dict, decay: float) -> dict[str, float]:
    """Per-layer shares of the style weight: weight × decay**rank, normalised to sum to 1."""
    chosen = {k: float(v) for k, v in style_layers.items() if v and float(v) > 0}
    if not chosen:
        raise ValueError("Choose at least one style layer (with a weight above 0): without one "
                         "there is no style to transfer.")
    unknown = set(chosen) - set(VGG16_NAMES)
    if unknown:
        raise ValueError(f"Unknown style layer(s) {sorted(unknown)}; choose from {VGG16_NAMES}.")
    if decay <= 0:
        raise ValueError(f"Decay must be above 0; got {decay}.")
    ranked = sorted(chosen, key=VGG16_NAMES.index)
    raw = {name: chosen[name] * decay ** rank for rank, name in enumerate(ranked)}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def check(cfg: StyleConfig) -> dict[str, float]:
    """Validate every control; returns the style layer shares."""
    if cfg.content_layer not in VGG16_NAMES:
        raise ValueError(f"Unknown content layer {cfg.content_layer!r}; choose from {VGG16_NAMES}.")
    for name in ("content_weight", "style_weight", "tv_weight"):
        if not getattr(cfg, name) >= 0:
            raise ValueError(f"{name.replace('_', ' ').capitalize()} must be ≥ 0; got {getattr(cfg, name)}.")
    if not MIN_SIZE <= cfg.size <= MAX_SIZE:
        raise ValueError(f"Output size must be from {MIN_SIZE} to {MAX_SIZE} px; got {cfg.size}.")
    if cfg.init not in INITS:
        raise ValueError(f"Start must be one of {INITS}; got {cfg.init!r}.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"Optimizer must be one of {OPTIMIZERS}; got {cfg.optimizer!r}.")
    if cfg.steps < 0 or cfg.preview_steps < 0 or cfg.snapshot_every < 1:
        raise ValueError("Steps must be ≥ 0 and snapshots every ≥ 1 step.")
    if cfg.optimizer == "adam" and not cfg.lr > 0:
        raise ValueError(f"Adam's step size must be above 0; got {cfg.lr}.")
    return layer_shares(cfg.style_layers, cfg.decay)


class Objective:
    """The fixed targets (content features, style Grams) at one size, and the loss split."""

    def __init__(self, content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig, shares: dict):
        self.cfg, self.shares, self.net = cfg, shares, vgg16()
        self.layers = sorted(set(shares) | {cfg.content_layer}, key=VGG16_NAMES.index)
        # the style image is resized to the content's size, as in the book
        style = F.interpolate(style, size=content.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            self.f_content = self.net(content, [cfg.content_layer])[cfg.content_layer]
            feats = self.net(style, list(shares))
            self.g_style = {k: gram(feats[k]) for k in shares}

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        feats = self.net(x, self.layers)
        c = self.cfg.content_weight * content_loss(self.f_content, feats[self.cfg.content_layer]).sum()
        pixels = x.shape[-2] * x.shape[-1]
        s = sum(self.cfg.style_weight * a * style_loss(self.g_style[k], feats[k], pixels).sum()
                for k, a in self.shares.items())
        t = self.cfg.tv_weight * tv_loss(x).sum()
        total = c + s + t
        return total, {"content": c.item(), "style": s.item(), "tv": t.item(), "total": total.item()}


def stages(cfg: StyleConfig) -> list[tuple[int, int]]:
    """The optimisation stages :func:`transfer` runs, as ``(long side in px, steps)``: the quick
    low-resolution preview first (when it is on and smaller than the output), then the full size.
    With Adam, ``sum(steps)`` is the step count of the last snapshot; L-BFGS's line search may add
    a few loss evaluations (each counted as a step)."""
    stages = []
    if cfg.preview_size and cfg.preview_steps and cfg.preview_size < cfg.size:
        stages.append((max(MIN_SIZE, cfg.preview_size), cfg.preview_steps))
    return stages + [(cfg.size, cfg.steps)]


def _resize_long(x: torch.Tensor, long_side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    scale = long_side / max(h, w)
    size = (max(MIN_SIZE, round(h * scale)), max(MIN_SIZE, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False).clamp(0, 1)


def transfer(content: torch.Tensor, style: torch.Tensor, cfg: StyleConfig,
             generator: torch.Generator | None = None) -> Iterator[dict]:
    """Optimise an image; yields snapshots ``{"image", "step", "stage", "size", "history"}``.

    ``content`` and ``style``: (1, 3, H, W) RGB in [0, 1] (any sizes; the output keeps the
    content's aspect ratio). ``history`` is one dict per step: step, stage, content, style, tv,
    total (weighted losses). ``generator`` seeds the noise start."""
    shares = check(cfg)
    device = next(vgg16().parameters()).device
    content, style = content.to(device), style.to(device)
    history, step, x = [], 0, None
    plan = stages(cfg)
    for stage, (side, n_steps) in enumerate(plan):
        name = "preview" if stage < len(plan) - 1 else "full"
        target = _resize_long(content, side)
        objective = Objective(target, style, cfg, shares)
        if x is None:
            x = target.clone() if cfg.init == "content" else torch.rand(
                target.shape, generator=generator, device="cpu").to(device)
        else:  # refine: start from the upsampled preview
            x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
        x = x.detach().requires_grad_(True)
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=cfg.lr / 255.0)
        else:
            # a step is one loss evaluation; the line search keeps huge loss scales from diverging
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=10_000, history_size=20, line_search_fn="strong_wolfe",
                                    tolerance_grad=0.0, tolerance_change=0.0)
        done = 0

        def closure():
            nonlocal step, done
            opt.zero_grad()
            loss, parts = objective(x)
            loss.backward()
            step, done = step + 1, done + 1
            history.append({"step": step, "stage": name, **parts})
            if not all(v == v and abs(v) != float("inf") for v in parts.values()):
                raise ValueError(f"The loss became {parts['total']} at step {step}: lower the weights or "
                                 "Adam's step size.")
            return loss

        while done < n_steps:
            before = done
            if cfg.optimizer == "adam":
                for _ in range(min(cfg.snapshot_every, n_steps - done)):
                    opt.step(closure)
                    with torch.no_grad():  # L-BFGS stays unclamped: clamping would corrupt its curvature pairs
                        x.clamp_(0, 1)
            else:
                opt.param_groups[0]["max_eval"] = min(cfg.snapshot_every, n_steps - done)
                opt.step(closure)
            if done == before:  # converged: nothing left to do at this size
                break
            yield {"image": x.detach().clamp(0, 1), "step": step, "stage": name, "size": side,
                   "history": list(history)}
        if n_steps == 0:
            yield {"image": x.detach().clamp(0, 1), "step": step, "stage": name, "size": side, "history": list(history)}


def gram_views(content: torch.Tensor, style: torch.Tensor, result: torch.Tensor, layer: str,
               channels: int = 32) -> dict[str, torch.Tensor]:
    """Gram matrices (first ``channels`` channels, divided by H·W so sizes compare) of one layer for
    the content, style and result images, each (1, 3, H, W) in [0, 1] at the result's size."""
    if layer not in VGG16_NAMES:
        raise ValueError(f"Unknown layer {layer!r}; choose from {VGG16_NAMES}.")
    out = {}
    with torch.no_grad():
        for name, img in (("content", content), ("style", style), ("result", result)):
            img = F.interpolate(img, size=result.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
            f = vgg16()(img, [layer])[layer][:, :channels]
            out[name] = gram(f)[0] / (f.shape[2] * f.shape[3])
    return out


def gram_distance(gram_matrix: torch.Tensor, target: torch.Tensor) -> float:
    """How far one Gram matrix is from a target one, relative to the target's size:
    ``‖G − G_target‖_F / ‖G_target‖_F`` (0 = the same feature correlations; 1 = as far as a zero
    matrix). The Gram viewer reports it for the content and the result against the style."""
    norm = float(target.norm())
    if not norm > 0:
        raise ValueError("The style's Gram matrix is zero at this layer (a blank style image?): "
                         "there is nothing to compare with.")
    return float((gram_matrix - target).norm()) / norm


def with_preset(cfg: StyleConfig, preset: str) -> StyleConfig:
    """``cfg`` with one of :data:`PRESETS`' weights (and optimizer) applied."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose from {list(PRESETS)}.")
    return replace(cfg, **PRESETS[preset])
