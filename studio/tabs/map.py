"""The Map tab (the landing page): every registered family sorted the way Goodfellow, Bengio & Courville's
*Deep Learning* ch. 20 sorts deep generative models — energy-based models (Boltzmann machines, sampled by
Gibbs/MCMC), differentiable generator networks (VAEs, GANs: one pass through a generator), autoregressive
networks (one token or pixel at a time) — plus the two families that came after the book, flows and
diffusion. Each row says how the family samples, whether it gives an exact likelihood, a bound or none
(read from the family's ``log_likelihood`` hook), and which tab it lives in; "Draw live thumbnails" samples
every family's first checkpoint.

Built from the registry: a family added later appears by itself. Its group and sampling words come from
an optional ``MAP = {"group": ..., "sampling": ...}`` in its model file, else from the table below, else
from its name.
"""
from __future__ import annotations

import functools
import re
import sys
import textwrap

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from studio import parts, widgets

TITLE = "Map"
SCENES = False

GROUPS = {  # Goodfellow ch. 20's order, then what came after the book
    "energy": ("Energy-based models", "§20.1–20.4: Boltzmann machines; an energy E(x) with p(x) ∝ exp(−E(x))"),
    "generator": ("Differentiable generator networks", "§20.10: a network g(z) turns noise into a sample"),
    "autoregressive": ("Autoregressive networks", "§20.10.7–10: p(x) = Π p(xᵢ | x₍<ᵢ₎), one part at a time"),
    "flow": ("Normalizing flows", "after the book: an invertible g with an exact change of variables"),
    "diffusion": ("Diffusion models", "after the book: learn to undo gradual noising, step by step"),
    "other": ("Other models", "image-to-image and more"),
}
SAMPLING = {
    "energy": "Gibbs sampling / MCMC (Langevin) on the energy",
    "generator": "one pass through a generator",
    "autoregressive": "one token (pixel, note, character) at a time",
    "flow": "one pass through the inverse flow",
    "diffusion": "denoising, step by step",
    "other": "one pass through a network",
}
KNOWN = {  # family -> group, for the families registered when this tab was written
    "vae": "generator", "hvae": "generator", "gan": "generator", "musegan": "generator", "cyclegan": "other",
    "diffusion": "diffusion", "latent_diffusion": "diffusion",
    "lstm": "autoregressive", "gpt": "autoregressive", "music_transformer": "autoregressive",
    "music_rnn": "autoregressive", "pixelcnn": "autoregressive", "nade": "autoregressive",
    "realnvp": "flow",
}
GUESS = [(r"energy|ebm|rbm|boltzmann|hopfield|langevin", "energy"), (r"diffusion|ddpm|score|ldm", "diffusion"),
         (r"flow|nvp|glow|maf", "flow"), (r"gpt|lstm|rnn|pixelcnn|nade|transformer|autoregress", "autoregressive"),
         (r"vae|gan|gmmn|generator|world", "generator")]


def placement(family) -> dict:
    """Group and sampling words of a family: its model file's MAP, else KNOWN, else a guess from its name."""
    declared = getattr(sys.modules.get(getattr(family.build, "__module__", ""), None), "MAP", None) or {}
    group = declared.get("group") or KNOWN.get(family.name)
    if group is None:
        group = next((g for pattern, g in GUESS if re.search(pattern, family.name + " " + family.title, re.I)), "other")
    group = group if group in GROUPS else "other"
    return {"group": group, "sampling": declared.get("sampling") or SAMPLING[group]}


def likelihood_of(family) -> str:
    if family.log_likelihood is None:
        return "none"
    return "exact" if family.likelihood == "exact" else "bound (ELBO)"


def rows(headers) -> list[dict]:
    """One row per registered family, in the map's order, with the tab that shows it."""
    from models import FAMILIES

    tab_of = {}
    for tab, header in headers:
        for f in header.families:
            tab_of.setdefault(f, tab)
    out = []
    for name, fam in FAMILIES.items():
        where = placement(fam)
        out.append({"family": name, "title": fam.title, "kind": fam.kind, **where, "likelihood": likelihood_of(fam),
                    "tab": tab_of.get(name, "—"), "checkpoints": len(widgets.checkpoint_paths(name))})
    order = list(GROUPS)
    return sorted(out, key=lambda r: order.index(r["group"]))


def map_markdown(headers) -> str:
    lines, group = [], None
    for r in rows(headers):
        if r["group"] != group:
            group = r["group"]
            title, what = GROUPS[group]
            lines += ["", f"### {title}", f"*{what}*", "",
                      "| Family | Samples by | Likelihood | Tab | Checkpoints |", "|---|---|---|---|---|"]
        lines.append(f"| **{r['title']}** (`{r['family']}`) | {r['sampling']} | {r['likelihood']} | {r['tab']} | "
                     f"{r['checkpoints']} |")
    return "\n".join(lines)


# --- live thumbnails -------------------------------------------------------------------------------------

def _text_picture(text: str, size=(224, 112)) -> np.ndarray:
    im = Image.new("L", size, 255)
    draw = ImageDraw.Draw(im)
    draw.multiline_text((4, 4), "\n".join(textwrap.wrap(" ".join(str(text).split())[:160], 34)[:7]), fill=0)
    return np.asarray(im)


def _roll_picture(pitch, duration) -> np.ndarray:
    pitch, duration = np.asarray(pitch).ravel(), np.asarray(duration).ravel()
    im = np.full((90, 224), 255, np.uint8)
    t = 0.0
    total = max(float(np.maximum(duration, 1).sum()), 1.0)
    for p, d in zip(pitch, np.maximum(duration, 1)):
        x0, x1 = int(t / total * 223), int((t + d) / total * 223)
        if 0 < p < 89:
            y = 89 - int(p)
            im[max(y - 1, 0):y + 1, x0:max(x1, x0 + 1)] = 0
        t += d
    return im


def thumbnail_of(preview) -> np.ndarray | None:
    """A family's preview (images, text, notes or a piano roll) as a small picture."""
    import torch

    if isinstance(preview, str):
        return _text_picture(preview)
    if isinstance(preview, dict) and "pitch" in preview:
        return _roll_picture(preview["pitch"], preview["duration"])
    if torch.is_tensor(preview) or isinstance(preview, np.ndarray):
        x = np.asarray(preview.detach().cpu() if torch.is_tensor(preview) else preview, np.float32)
        if x.ndim == 4 and x.shape[1] in (1, 3):  # (N, C, H, W) images
            x = x[:16]
            if x.shape[1] == 3:
                x = x.mean(1, keepdims=True)
            return widgets.mosaic(x, 4, pad=1, scale=2)
        if x.ndim == 3:  # (tracks, steps, pitches) piano roll
            return (255 - (x.max(0).T[::-1] > 0.5) * 255).astype(np.uint8).repeat(3, 0).repeat(3, 1)
    return None


@functools.lru_cache(maxsize=32)
def _thumbnail(family: str, path: str, mtime: float):
    from models import FAMILIES
    from models.core import train as training

    fam = FAMILIES[family]
    model, _, _ = widgets.load(family, re.sub(r"\.safetensors$", "", path.rsplit("/", 1)[-1]))
    if fam.preview is None and fam.kind == "image":
        from models.core.family import last, seeded

        preview = last(fam.sample(model, 8, generator=seeded(0), **fam.score_kwargs))
    else:
        preview = training.preview(fam, model)
    return thumbnail_of(preview)


def thumbnails(headers):
    """Stream (picture, caption) pairs, one per family with a checkpoint here."""
    from models import FAMILIES

    shown = []
    for r in rows(headers):
        paths = widgets.checkpoint_paths(r["family"])
        if not paths:
            continue
        name, path = next(iter(paths.items()))
        try:
            picture = _thumbnail(r["family"], str(path), path.stat().st_mtime)
        except (ValueError, RuntimeError, KeyError) as e:
            picture = _text_picture(f"{FAMILIES[r['family']].title}: no thumbnail ({e})")
        if picture is not None:
            shown.append((picture, f"{r['title']} ({GROUPS[r['group']][0].lower()}; {name})"))
            yield shown, f"Drew {len(shown)} families…"
    yield shown, f"{len(shown)} families drawn live from their first checkpoint (seed 0 / the training preview seed)."


def build(page: parts.Page):
    gr.Markdown("## A map of the families\nEvery family in the studio, sorted as Goodfellow et al. (*Deep Learning*, "
                "ch. 20) sort deep generative models, plus flows and diffusion. *Likelihood*: **exact** (the model "
                "gives log p(x)), **bound** (a lower bound, the ELBO), or **none** (samples only: judge them with "
                "the classifier scores, and see the arena in the Workshop).")
    table = gr.Markdown(label="Families", elem_id="map-table")
    with gr.Row():
        draw = gr.Button("Draw live thumbnails", variant="primary", elem_id="map-draw")
        with gr.Column():
            go = gr.Dropdown([], label="Open a family's tab", elem_id="map-go")
            go_button = gr.Button("Open tab")
    note = gr.Markdown(label="Thumbnails status")
    gallery = gr.Gallery(label="One live sample per family", columns=4, height="auto", format="png")
    headers = page.headers  # filled as the other tabs are built; read when the handlers run

    def refresh():
        tabs = sorted({t for t, _ in headers}) + ["Workshop"]
        return map_markdown(headers), gr.update(choices=tabs, value=tabs[0] if tabs else None)

    page.action(page.demo.load, refresh, None, [table, go], api_name="map_table", names=[])
    page.action(draw.click, widgets.friendly(lambda: (yield from thumbnails(headers))), None, [gallery, note],
                api_name="map_thumbnails", names=[], show_progress_on=[note])
    page.demo.studio_map = {"go": go, "button": go_button}
