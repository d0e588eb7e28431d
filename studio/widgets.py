"""Pieces every tab uses: image mosaics, labelled figures, clickable scatter maps, checkpoint
lists and the edge where model errors become messages in the page."""
from __future__ import annotations

import functools
import inspect
import json
import math
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from models import FAMILIES
from models.core import checkpoint, train as training
from models.core.train import RUNS

USER_CHECKPOINTS = RUNS / "checkpoints"
EXPORTS = Path(tempfile.gettempdir()) / "gdl-studio-exports"
EXPORT_TTL_S = 3600  # exported files older than this are removed when new ones are written
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer


def friendly(fn):
    """Turn the plain ValueErrors raised in models/ into a message shown in the page; works for
    streaming (generator) handlers too, whose errors surface while they are iterated."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise gr.Error(str(e), print_exception=False) from None

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def _as_float(value) -> float:
    """A control's value as a float; NaN for what is not a number (booleans, blanks, text)."""
    try:
        return math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _bounds(low, high, fmt: str = "") -> str:
    return f" from {low:{fmt}} to {high:{fmt}}" if low is not None and high is not None else ""


def number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """A control's value as a finite number (in [low, high] when given), or one clear message."""
    v = _as_float(value)
    if not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be a {'finite ' if low is None else ''}number{_bounds(low, high, 'g')}; got {value!r}.")
    return v


def whole(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """A control's value as a whole number (in [low, high] when given), refusing blanks, fractions, NaN
    and text with one message: never rounded, so what ran is what the control said."""
    v = _as_float(value)
    if not math.isfinite(v) or v != int(v) or (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be a whole number{_bounds(low, high)}; got {value!r}.")
    return int(v)


def seed_of(value) -> int:
    """A seed box's value as an int, refusing blanks, fractions, negatives and huge values with one message."""
    seed = None
    if isinstance(value, int) and not isinstance(value, bool):
        seed = value
    elif isinstance(value, (float, str)):
        try:
            number = float(value)
            seed = int(number) if number.is_integer() else None
        except (ValueError, OverflowError):
            seed = None
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"Seed must be a whole number from 0 to {MAX_SEED}; got {value!r}.")
    return seed


def seed_box(value: int = 0, label: str = "Seed", **kwargs) -> gr.Number:
    """A seed box that passes fractions through (``precision=None``) so :func:`seed_of` can refuse them."""
    return gr.Number(value=value, precision=None, label=label, **kwargs)


# --- images ---

MAX_UPLOAD_PIXELS = 25_000_000  # 5000×5000: far more than any view needs; bigger is refused before decoding


def read_image(file_path) -> Image.Image:
    """An uploaded image, opened safely: a missing file, a non-image, an empty file or a huge one (a
    decompression bomb: a few KB that decode to gigabytes) is refused with a clear message, before
    its pixels are decoded."""
    if not file_path:
        raise ValueError("Upload an image file (PNG or JPEG) first.")
    name = Path(file_path).name
    if not Path(file_path).is_file() or Path(file_path).stat().st_size == 0:
        raise ValueError(f"{name} is empty or missing: upload a PNG or JPEG image.")
    try:
        with Image.open(file_path) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ValueError(f"{name} is {w}×{h} pixels; the studio takes images up to "
                                 f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels. Resize it first.")
            im.load()
            return im.copy()
    except Image.DecompressionBombError:
        raise ValueError(f"{name} decodes to far more pixels than the studio takes (up to "
                         f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels). Resize it first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValueError(f"{name} is not an image the studio can read (use PNG or JPEG).") from None

def mosaic(images, nrow: int, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(N, 1, H, W) floats in [0, 1] -> one uint8 grayscale picture, ``nrow`` images per row."""
    x = np.asarray(images, dtype=np.float32)[:, 0]
    n, h, w = x.shape
    rows = -(-n // nrow)
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.25, np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    out = (out.clip(0, 1) * 255).round().astype(np.uint8)
    return upscale(out, scale)


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so 28×28 pixels stay crisp in the page."""
    return img if factor == 1 else img.repeat(factor, 0).repeat(factor, 1)


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a figure with Agg (no pyplot, so it is safe in handler threads) to an RGB array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def export_path(filename: str) -> Path:
    """A fresh folder per output, so two visitors (or two clicks) never share a file; old ones are swept."""
    EXPORTS.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in EXPORTS.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > EXPORT_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass
    folder = EXPORTS / uuid.uuid4().hex[:16]
    folder.mkdir()
    return folder / (re.sub(r"[^\w.-]", "_", filename)[:100] or "output")


def save_gif(frames: list[np.ndarray], name: str, ms: int = 120, comment: str | None = None) -> str:
    """Write frames (uint8 arrays) as a looping GIF that bounces back and forth, at a path of its own;
    ``comment`` (the provenance JSON) goes in the GIF's comment block."""
    images = [Image.fromarray(f) for f in frames]
    images = images + images[-2:0:-1]
    path = export_path(name)
    extra = {"comment": comment.encode()} if comment else {}
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0, **extra)
    return str(path)


def curves_figure(history: list[dict], keys: list[str], title: str = "", marks=()) -> Figure:
    """One small panel per metric against training step; ``marks`` (step, what) are dotted lines
    where settings were changed mid-run."""
    fig = Figure(figsize=(3.2 * len(keys), 2.6), dpi=90, layout="constrained")
    history = list(history)  # a snapshot: the training thread appends while the page draws
    steps = [h["step"] for h in history]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        ax.plot(steps, [h.get(key, np.nan) for h in history], color=f"C{i}")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for step, what in list(marks):
            ax.axvline(step, color="k", ls=":", lw=1)
            ax.text(step, ax.get_ylim()[1], f" {what}", fontsize=6, va="top", rotation=90)
    if title:
        fig.suptitle(title)
    return fig


class ScatterMap:
    """A matplotlib scatter rendered once to pixels, with the affine map between data and pixel
    coordinates kept, so clicks can be read back and markers drawn without re-plotting."""

    def __init__(self, x, y, labels, names: list[str], xlabel="z₁", ylabel="z₂"):
        fig = Figure(figsize=(6.4, 5.6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        sc = ax.scatter(x, y, c=labels, cmap="tab10", s=3, alpha=0.6, vmin=-0.5, vmax=len(names) - 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.25)
        cbar = fig.colorbar(sc, ax=ax, ticks=range(len(names)))
        cbar.ax.set_yticklabels(names, fontsize=8)
        self.base = figure_to_array(fig)
        height = self.base.shape[0]
        (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (1, 1)])
        # display coords have their origin at the bottom left; image rows grow downwards
        self._ax, self._bx = x1 - x0, x0
        self._ay, self._by = -(y1 - y0), height - y0
        self.xlim, self.ylim = ax.get_xlim(), ax.get_ylim()

    def to_pixel(self, x, y):
        return self._ax * x + self._bx, self._ay * y + self._by

    def to_data(self, px, py):
        return (px - self._bx) / self._ax, (py - self._by) / self._ay

    def draw(self, points=(), ellipses=()) -> np.ndarray:
        """The base picture with markers (x, y, rgb) and ellipses (x, y, rx, ry, rgb) drawn on."""
        img = self.base.copy()
        for cx, cy, rx, ry, color in ellipses:
            t = np.linspace(0, 2 * np.pi, 400)
            self._dots(img, *self.to_pixel(cx + rx * np.cos(t), cy + ry * np.sin(t)), color, 1)
        for x, y, color in points:
            px, py = self.to_pixel(x, y)
            t = np.linspace(0, 2 * np.pi, 60)
            self._dots(img, px + 7 * np.cos(t), py + 7 * np.sin(t), color, 1)
            self._dots(img, np.array([px]), np.array([py]), color, 2)
        return img

    @staticmethod
    def _dots(img, px, py, color, r):
        h, w = img.shape[:2]
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                xs = np.round(np.asarray(px) + dx).astype(int)
                ys = np.round(np.asarray(py) + dy).astype(int)
                ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
                img[ys[ok], xs[ok]] = color


# --- checkpoints ---

def checkpoint_paths(family: str) -> dict[str, Path]:
    """Name -> path of every checkpoint of a family: shipped ones, then ones trained in the app."""
    found = {}
    for folder in (training.SHIPPED, USER_CHECKPOINTS):
        for path in sorted(folder.glob("*.safetensors")):
            card = read_card(path)
            if card.get("family") == family and path.stem not in found:
                found[path.stem] = path
    return found


def read_card(path: Path) -> dict:
    """The checkpoint's JSON card; for a checkpoint with no card (an interrupted run), its header."""
    card_path = Path(path).with_suffix(".json")
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            card = None
        if not isinstance(card, dict):
            family = _header_family(path)
            return {"name": Path(path).stem, "family": family,
                    "error": f"its card {card_path.name} is corrupt (not a JSON object); the weights may still "
                             "load, but nothing it claims can be shown. Delete the card or re-train."}
        card["family"] = checkpoint.RENAMED.get(card.get("family"), card.get("family"))
        return card
    try:
        meta = checkpoint.read_meta(path)
    except ValueError as e:
        return {"name": Path(path).stem, "family": None, "error": str(e)}
    return {"name": Path(path).stem, "family": meta.get("family"), "config": meta.get("config", {}),
            "steps": meta.get("step"), "wall_time_s": meta.get("wall_time_s")}


def _header_family(path):
    try:
        return checkpoint.read_meta(path).get("family")
    except ValueError:
        return None


def checkpoint_choices(family: str) -> list[tuple[str, str]]:
    choices = []
    for name, path in checkpoint_paths(family).items():
        card = read_card(path)
        where = "shipped" if path.parent == training.SHIPPED else "yours"
        choices.append((f"{name} ({describe(card) or 'card unreadable'}; {where})", name))
    return choices


def family_of(families, name: str, what: str = "") -> str:
    """Which of ``families`` has a checkpoint called ``name``."""
    for family in families:
        if name and name in checkpoint_paths(family):
            return family
    raise ValueError(f"No {what + ' ' if what else ''}checkpoint named {name!r}." if name
                     else "Choose a checkpoint first.")


def resolve(family: str, name: str) -> Path:
    if not name:
        raise ValueError("Choose a checkpoint first.")
    paths = checkpoint_paths(family)
    if name not in paths:
        raise ValueError(f"No {family} checkpoint named {name!r}.")
    return paths[name]


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float):
    model, config, _ = checkpoint.load(path)
    return model, config, read_card(Path(path))


def load(family: str, name: str):
    """``(model, config, card)`` of a checkpoint, cached read-only (reloaded when the file changes)."""
    path = resolve(family, name)
    return _load(str(path), path.stat().st_mtime)


def config_dict(config) -> dict:
    from dataclasses import asdict

    return asdict(config)


def describe(card: dict, dataset: bool = True) -> str:
    """The settings that tell checkpoints of a family apart, in the family's own words."""
    cfg = card.get("config", {})
    fam = FAMILIES.get(card.get("family"))
    name = str(cfg.get("dataset", "?"))
    name = Path(name).stem if "/" in name else name  # an uploaded file: its name, not the server's path
    parts = [name] if dataset and "dataset" in cfg else []
    own = fam.summary(cfg) if fam else ""
    return ", ".join(parts + ([own] if own else []))


def score_text(s: dict) -> str:
    """One scorer result in words: confidence, coverage, inception score, Fréchet distance (when n allows)."""
    return (f"confidence {s['confidence']:.2f}, class coverage {s['class_coverage']:.0%}, "
            f"inception score {s['inception_score']:.2f}"
            + (f", Fréchet distance {s['frechet_distance']:.0f}" if "frechet_distance" in s else ""))


def calibration_lines(rows: dict | None) -> list[str]:
    """The same scorer on real held-out images, blurred real images and noise, so a reader can tell a
    good score from a bad one (nothing when a card predates the rows)."""
    if not rows:
        return []
    return ["For comparison, the same scorer at the same n: "
            + "; ".join(f"{name}: {score_text(r)}" for name, r in rows.items())]


def _sampled(n: int, sampler: dict) -> str:
    """"n=2000; steps 50, eta 0.0": how many samples were scored, with which sampler controls."""
    how = ", ".join(f"{k} {v}" for k, v in sampler.items())
    return f"n={n}" + (f"; {how}" if how else "")


def class_score_lines(c: dict | None) -> list[str]:
    """How often a class-conditional checkpoint draws the class it is asked for, beside the scorer's
    own figure on real held-out images (nothing for cards without class scores)."""
    if not c:
        return []
    real = c.get("real")
    return [f"Asked for every class in turn ({_sampled(c['n'], c.get('sampler', {}))}): drawn as that class "
            f"**{c['accuracy']:.1%}**, worst class {c['worst_class']} {c['worst']:.1%}"
            + (f"; real held-out images: {real['accuracy']:.1%}, worst {real['worst_class']} {real['worst']:.1%}"
               if real else "")
            + (f". Those samples: {score_text(c['scores'])}" if c.get("scores") else "")]


def card_markdown(card: dict) -> str:
    """A checkpoint's provenance and held-out metrics, for the panel next to its samples."""
    if "error" in card:
        return f"**{card['name']}**: {card['error']}"
    cfg = card.get("config", {})
    m = card.get("metrics", {})
    fam = FAMILIES.get(card.get("family"))
    own = describe(card, dataset=False)
    lines = [f"**{card.get('name')}**: {card.get('data', {}).get('title', cfg.get('dataset', ''))}"
             + (f", {own}" if own else "") + f", {card.get('steps')} steps"
             + (f" ({card['epochs']} epochs)" if card.get("epochs") else "")
             + (f", {card['wall_time_s']:.0f} s" if card.get("wall_time_s") is not None else "")
             + (f" on {card['hardware']}" if card.get("hardware") else "")]
    lines += fam.metric_lines(m) if fam else []
    s = m.get("sample_scores")
    if s:
        lines.append(f"Samples scored by the project's classifier ({_sampled(s['n'], s.get('sampler', {}))}): "
                     + score_text(s))
        lines += calibration_lines(m.get("calibration"))
    o = m.get("opening_scores")
    if o:
        lines.append(f"With the setting the page opens with ({o['setting']}; n={o['n']}): {score_text(o)}")
    lines += class_score_lines(m.get("class_scores"))
    if card.get("note"):
        lines.append(f"How it was trained: {card['note']}")
    if card.get("command"):
        lines.append(f"Reproduce: `{card['command']}`")
    elif card.get("imported"):
        imp = card["imported"]
        lines.append(f"Imported from {imp['file']} on {imp['at']} (sha256 {imp['sha256'][:12]}…): no held-out "
                     "metrics were recorded with it.")
    elif "metrics" not in card:
        lines.append("No card yet: this run was interrupted before it finished (resume it in Train).")
    return "  \n".join(lines)
