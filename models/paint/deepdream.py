"""DeepDream (Mordvintsev et al. 2015; Chollet, DLwP ch. 12).

Run an ImageNet classifier backwards: instead of changing weights to lower a loss, change the
*image* to raise the activations of chosen layers. The loss to maximise is

    L(x) = Σ_l w_l · mean(a_l(x)²) / mean(a_l(x₀)²)   (borders of each map left out, as in the book)

and each step is gradient *ascent* with the gradient scaled to unit L2 norm,
``x ← x + step · ∇L / ‖∇L‖`` (Chollet 2nd ed.), stopping early once ``L > max_loss`` so the
image does not turn to mush. Each layer's term is divided by its value on the starting photo x₀
(at the first octave), so a layer's weight is what it contributes at the start and ``max_loss`` reads
as "stop when the weighted activations have grown this much": with the book's weights (sum 7), the
book's max loss of 15 lets them roughly double. Early layers amplify strokes and textures; deeper layers
eyes, fur and whole object parts.

**Octaves.** The image is processed at ``octaves`` successive scales, each ``octave_scale`` times
larger than the previous, so patterns form at several sizes. Shrinking loses detail; **detail
reinjection** adds it back after each octave: the difference between the original at this size and
the original shrunk to the first octave and enlarged again.

The network is EfficientNet-Lite0 (:func:`models.paint.pretrained.efficientnet_lite0`); the book's four
InceptionV3 "mixed" layers map to stages 3–6 (resolutions 1/8 to 1/32). Since nothing is
trained, this is not a family in ``models.FAMILIES``. :func:`dream` is a generator yielding one
result per octave.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F

from models.paint.pretrained import EfficientNetLite0, efficientnet_lite0

LAYERS = EfficientNetLite0.STAGES
# Chollet's mixed4..mixed7 weights 1.0, 1.5, 2.0, 2.5 moved onto EfficientNet stages 3..6
BOOK_LAYERS = {"stage3": 1.0, "stage4": 1.5, "stage5": 2.0, "stage6": 2.5}
MIN_OCTAVE_SIDE = 32  # the smallest octave must still survive the network's five stride-2 steps


@dataclass
class DreamConfig:
    layers: dict = field(default_factory=lambda: dict(BOOK_LAYERS))  # layer -> weight
    step: float = 20.0  # Chollet: 20 (normalised gradient, so the step is in "image L2" units)
    octaves: int = 3
    octave_scale: float = 1.4
    iterations: int = 30  # gradient-ascent steps per octave
    max_loss: float = 15.0  # stop an octave once the loss exceeds this
    reinject: bool = True  # detail reinjection between octaves
    size: int = 384  # long side of the final octave


def check(cfg: DreamConfig) -> dict[str, float]:
    chosen = {k: float(v) for k, v in cfg.layers.items() if v and float(v) != 0}
    if not chosen:
        raise ValueError("Give at least one layer a weight other than 0: DeepDream has nothing to maximise.")
    unknown = set(chosen) - set(LAYERS)
    if unknown:
        raise ValueError(f"Unknown layer(s) {sorted(unknown)}; choose from {LAYERS}.")
    if not cfg.step > 0:
        raise ValueError(f"Step must be above 0; got {cfg.step}.")
    if not 1 <= cfg.octaves <= 8:
        raise ValueError(f"Octaves must be from 1 to 8; got {cfg.octaves}.")
    if not 1.0 <= cfg.octave_scale <= 3.0:
        raise ValueError(f"Octave scale must be from 1.0 to 3.0; got {cfg.octave_scale}.")
    if not 0 <= cfg.iterations <= 500:
        raise ValueError(f"Iterations must be from 0 to 500; got {cfg.iterations}.")
    if not 64 <= cfg.size <= 1024:
        raise ValueError(f"Size must be from 64 to 1024 px; got {cfg.size}.")
    return chosen


def dream_loss(net: EfficientNetLite0, x: torch.Tensor, weights: dict[str, float],
               ref: dict[str, float] | None = None) -> torch.Tensor:
    """Σ_l w_l · mean(a_l²) / ref_l, with a 2-pixel border of each activation map ignored (edge
    artefacts); ``ref`` (default 1) holds each layer's mean(a²) on the starting image."""
    feats = net.features(x, list(weights))
    loss = x.new_zeros(())
    for name, w in weights.items():
        a = feats[name]
        if min(a.shape[-2:]) > 4:
            a = a[:, :, 2:-2, 2:-2]
        loss = loss + w * a.square().mean() / (ref[name] if ref else 1.0)
    return loss


def ascend(net, x: torch.Tensor, weights: dict, ref: dict, iterations: int, step: float, max_loss: float):
    """Gradient ascent on the image; returns (image, losses). ``step`` is in [0, 1]-image units
    ×255/128, i.e. in the network's [-1, 1] input scale, as in the book."""
    x = x.clone()
    losses = []
    for _ in range(iterations):
        x.requires_grad_(True)
        loss = dream_loss(net, x, weights, ref)
        (grad,) = torch.autograd.grad(loss, x)
        losses.append(loss.item())
        if max_loss and loss.item() > max_loss:
            break
        with torch.no_grad():
            # the book steps the [-1, 1] input; our image is [0, 1], i.e. half that scale
            x = (x + 0.5 * step * grad / grad.norm().clamp_min(1e-8)).clamp(0, 1)
    return x.detach(), losses


def octave_shapes(h: int, w: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Smallest first, the last being (h, w)."""
    shapes = [(max(MIN_OCTAVE_SIDE, round(h / scale ** i)), max(MIN_OCTAVE_SIDE, round(w / scale ** i)))
              for i in range(octaves)]
    return shapes[::-1]


def _resize(x, shape):
    return F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)


def dream(image: torch.Tensor, cfg: DreamConfig) -> Iterator[dict]:
    """DeepDream one (1, 3, H, W) image in [0, 1] (already at the working size); yields after each
    octave ``{"octave", "image" (at that octave's size), "shape", "losses", "stopped_early"}``."""
    weights = check(cfg)
    net = efficientnet_lite0()
    image = image.to(next(net.parameters()).device)
    shapes = octave_shapes(*image.shape[-2:], cfg.octaves, cfg.octave_scale)
    shrunk_original = _resize(image, shapes[0])
    x = shrunk_original.clone()
    with torch.no_grad():
        ref = {k: dream_loss(net, shrunk_original, {k: 1.0}).item() + 1e-8 for k in weights}
    for i, shape in enumerate(shapes):
        x = _resize(x, shape)
        x, losses = ascend(net, x, weights, ref, cfg.iterations, cfg.step, cfg.max_loss)
        if cfg.reinject:
            # what shrinking threw away at this size, put back
            same_size_original = _resize(image, shape)
            lost_detail = same_size_original - _resize(shrunk_original, shape)
            x = (x + lost_detail).clamp(0, 1)
            shrunk_original = same_size_original
        yield {"octave": i + 1, "image": x.clone(), "shape": shape, "losses": losses,
               "stopped_early": len(losses) < cfg.iterations}


def layer_activation(image: torch.Tensor, layer: str) -> float:
    """mean(a²) of one layer for an image (what DeepDream raises)."""
    with torch.no_grad():
        return dream_loss(efficientnet_lite0(), image, {layer: 1.0}).item()


def random_layers(generator: torch.Generator, scale: float = 3.0) -> dict[str, float]:
    """Random weights for 1-3 layers (the rest 0), rounded to what the sliders show."""
    n = int(torch.randint(1, 4, (1,), generator=generator))
    chosen = torch.randperm(len(LAYERS), generator=generator)[:n].tolist()
    values = torch.rand(len(LAYERS), generator=generator) * scale
    return {name: (round(float(values[i]) + 0.1, 1) if i in chosen else 0.0) for i, name in enumerate(LAYERS)}
