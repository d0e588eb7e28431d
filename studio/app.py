"""build_app(): the studio page, one tab per family, with a shared header; serving(): how it is served."""
from __future__ import annotations

import math
import re
import types

import gradio as gr
import pydantic
from PIL import Image
from gradio.exceptions import ComponentProcessingError, InvalidPathError

from models.core import RUNS
from studio import lanes, parts, widgets
from studio.tabs import (autoregressive, basics, boltzmann, diffusion, ebm, flows, gan, gan_lab, gmmn, latent,
                         likelihoods, map, music, paint, polyphony, seq2seq, text, vae, workshop, world)

TABS = [map, vae, gan, gan_lab, diffusion, latent, text, seq2seq, music, polyphony, paint,  # one module per tab
        basics, autoregressive, flows, likelihoods, ebm, gmmn, boltzmann, world, workshop]  # TITLE and build(page)

HEADER = """# Generative Deep Learning Studio
Explore generative models by clicking: every tab has a shipped checkpoint trained by this project,
live controls, the views that show how the model works, and training in the page. Runs offline."""

STATE_SESSIONS = 256  # visitors whose per-session state is kept at once (the oldest is dropped first)


def build_app() -> gr.Blocks:
    """The page; ``demo.studio_actions`` lists every named action (the API a script can call)."""
    with gr.Blocks(title="Generative Deep Learning Studio") as demo:
        page = parts.Page(demo)
        with gr.Row(elem_id="studio-header"):
            gr.Markdown(HEADER)
            drop = workshop.drop_zone()  # drop a studio output or a scene: its tab opens and re-runs it
        bars = []
        with gr.Tabs(overflow_behavior="wrap", elem_id="studio-tabs") as tabs:  # every tab stays visible
            for tab in TABS:
                page.tab = tab.TITLE
                with gr.Tab(tab.TITLE, id=tab.TITLE):
                    tab.build(page)
                    if getattr(tab, "SCENES", True):  # save / compare the tab's state (generic, from page.actions)
                        bars.append(workshop.scene_bar(page, tab))
        workshop.wire(page, tabs, bars, drop)
    # named actions run in lanes (studio.lanes); the page's own events (cards, views chained after a
    # checkpoint choice) keep Gradio's per-event limit; the whole queue is bounded
    demo.queue(max_size=lanes.QUEUE_MAX, default_concurrency_limit=4)
    demo.studio_actions = page.actions
    demo.studio_page = page
    demo.preprocess_data = types.MethodType(_checked_preprocess, demo)
    return demo


_gradio_preprocess = gr.Blocks.preprocess_data


def _refuse(block, value, why: str):
    label = getattr(block, "label", None) or (type(block).__name__ if block is not None else "A value")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "…"
    raise gr.Error(f"{label}: {shown} {why}", print_exception=False)


async def _checked_preprocess(demo, block_fn, inputs, state, explicit_call=False):
    """Gradio's own reading of the values sent to an event, with a clear message (not a bare "error")
    when a value is not of the kind its control takes (a word for a slider, NaN for a number, a number
    for a file) or names a file on the server that the visitor did not upload."""
    for block, value in zip(block_fn.inputs, inputs):
        if isinstance(block, (gr.Slider, gr.Number)) and isinstance(value, float) and not math.isfinite(value):
            _refuse(block, value, "is not a number this control takes (it must be finite).")
    try:
        return await _gradio_preprocess(demo, block_fn, inputs, state, explicit_call)
    except InvalidPathError:
        raise gr.Error("A file must be uploaded to the studio before it is used: the studio never opens a path "
                       "on the server that a visitor names.", print_exception=False) from None
    except (ComponentProcessingError, pydantic.ValidationError) as e:
        where = re.search(r"at index (\d+)", str(e))
        i = int(where[1]) if where else -1
        block = block_fn.inputs[i] if 0 <= i < len(block_fn.inputs) else None
        value = inputs[i] if block is not None and i < len(inputs) else None
        if isinstance(e.__cause__, Image.DecompressionBombError):
            _refuse(block, value, "is an image far too large to open (a decompression bomb?): the studio takes "
                    f"images up to {widgets.MAX_UPLOAD_PIXELS // 1_000_000} megapixels.")
        _refuse(block, value, "is not a value this control takes"
                + (f" ({type(block).__name__.lower()})." if block is not None else "."))


def serving(auth: tuple[str, str] | None = None) -> dict:
    """``launch()`` settings: uploads bounded in size, files served only from Gradio's own cache (never
    the user's runs, checkpoints and uploads), bounded threads and per-visitor state, optional login."""
    return {"max_file_size": parts.MAX_UPLOAD_BYTES, "max_threads": lanes.THREADS, "allowed_paths": [],
            "blocked_paths": [str(RUNS)], "state_session_capacity": STATE_SESSIONS, "auth": auth,
            "show_error": False}
