"""build_app(): the studio page, one tab per family, with a shared header."""
from __future__ import annotations

import gradio as gr

from studio.tabs import diffusion, gan, gan_lab, latent, music, paint, text, vae

TABS = [vae, gan, gan_lab, diffusion, latent, text, music, paint]  # one module per tab: TITLE and build(demo)

HEADER = """# Generative Deep Learning Studio
Explore generative models by clicking: every tab has a shipped checkpoint trained by this project,
live controls, the views that show how the model works, and training in the page. Runs offline."""


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Generative Deep Learning Studio") as demo:
        gr.Markdown(HEADER)
        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(tab.TITLE):
                    tab.build(demo)
    demo.queue(default_concurrency_limit=4)
    return demo
