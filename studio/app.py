"""build_app(): the studio page, one tab per family, with a shared header."""
from __future__ import annotations

import gradio as gr

from studio import parts
from studio.tabs import autoregressive, diffusion, gan, gan_lab, latent, music, paint, text, vae

TABS = [vae, gan, gan_lab, diffusion, latent, text, music, paint, autoregressive]  # one module per tab: TITLE and build(demo)

HEADER = """# Generative Deep Learning Studio
Explore generative models by clicking: every tab has a shipped checkpoint trained by this project,
live controls, the views that show how the model works, and training in the page. Runs offline."""


def build_app() -> gr.Blocks:
    """The page; ``demo.studio_actions`` lists every named action (the API a script can call)."""
    with gr.Blocks(title="Generative Deep Learning Studio") as demo:
        page = parts.Page(demo)
        gr.Markdown(HEADER)
        with gr.Tabs():
            for tab in TABS:
                page.tab = tab.TITLE
                with gr.Tab(tab.TITLE):
                    tab.build(page)
    demo.queue(default_concurrency_limit=4)
    demo.studio_actions = page.actions
    return demo
