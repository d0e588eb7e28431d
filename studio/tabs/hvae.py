"""The hierarchical VAE, a section of the VAE tab: redraw one latent level while the other is held, to
see which level holds which attribute, and its ELBO beside the one-level VAE's at the same latent size.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from models.core.family import seeded
from models.image import hvae
from studio import parts, widgets
from studio.widgets import friendly, whole

FAMILY = "hvae"


@friendly
def resample(checkpoint: str, seed, rows, columns):
    """Two grids from one seed: each row holds one level's draw and redraws the other along the row."""
    model, config, _ = widgets.load(FAMILY, checkpoint)
    seed = widgets.seed_of(seed)
    r, c = whole(rows, "Rows"), whole(columns, "Columns")
    pictures = []
    for level in ("top", "bottom"):
        images = hvae.resample_level(model, level, r, c, seeded(seed))
        pictures.append(widgets.mosaic(images, c, pad=1, scale=3))
    record = parts.provenance(FAMILY, checkpoint, seed, rows=r, columns=c)
    md = (f"seed {seed}, {r}×{c}, checkpoint {checkpoint}. Left: each row keeps its bottom noise ε₁ and redraws the "
          "top z₂; right: each row keeps its z₂ and redraws ε₁.")
    both = np.concatenate([pictures[0], np.full((pictures[0].shape[0], 12), 255, np.uint8), pictures[1]], 1)
    return pictures[0], pictures[1], *parts.publish(both, record, md, f"{checkpoint}_levels_seed{seed}.png")


def comparison() -> str:
    """Every hierarchical-family checkpoint's held-out bounds, from their cards (one-level ones included)."""
    rows = []
    for name, path in widgets.checkpoint_paths(FAMILY).items():
        card = widgets.read_card(path)
        m = card.get("metrics", {})
        if "neg_elbo_nats" not in m:
            continue
        cfg = card.get("config", {})
        rows.append((m["neg_elbo_nats"], f"| {name} | {widgets.describe(card, dataset=False)} | "
                     f"{cfg.get('top_dim', 0) + cfg.get('bottom_dim', 0)} | **{m['neg_elbo_nats']:.2f}** | "
                     f"{m['reconstruction']:.1f} | {m['kl_bottom']:.1f} | {m['kl_top']:.1f} | "
                     f"{m.get('neg_iwae50_nats', float('nan')):.2f} | {card.get('steps')} |"))
    if not rows:
        return "No hierarchical VAE checkpoint has held-out figures yet."
    head = ("| checkpoint | levels | latent size | −ELBO (nats, a bound) | reconstruction | KL bottom | KL top | "
            "−IWAE k=50 | steps |\n|---|---|---|---|---|---|---|---|---|")
    return (head + "\n" + "\n".join(r for _, r in sorted(rows)) +
            f"\n\nAll on binarised MNIST ({hvae.PREPROCESSING}), the 10,000 test images; lower is better. "
            "Both are lower bounds on log p(x), so −ELBO over-states the true negative log-likelihood.")


def train_config(top, bottom, decoder_reads_both, *, steps, batch_size, lr):
    return hvae.FAMILY.config("cpu", top_dim=whole(top, "Top latent size"), bottom_dim=whole(bottom, "Bottom latent size"),
                              skip=bool(decoder_reads_both), steps=steps, batch_size=batch_size, lr=lr)


def build_section(page: parts.Page):
    with gr.Accordion("Hierarchical VAE (two latent levels)", open=True):
        gr.Markdown("Two levels: a top code z₂ ~ N(0, I) sets a learned prior for the bottom code, "
                    "z₁ = μ(z₂) + σ(z₂)·ε₁, and the decoder reads both. Its ELBO has one KL per level. Redraw one "
                    "level with the other held to see what each holds. (Deep Learning from Scratch 5; Sønderby "
                    "et al. 2016.) Trained on binarised MNIST, like PixelCNN and NADE in the Likelihoods tab.")
        header = parts.checkpoint_header(page, FAMILY, "hvae_mnist", "hvae", label="Hierarchical VAE checkpoint")
        ckpt = header.dropdown
        with gr.Row():
            seed = widgets.seed_box()
            rows = gr.Slider(1, 16, value=6, step=1, label="Rows")
            columns = gr.Slider(1, 16, value=8, step=1, label="Columns")
            btn = gr.Button("Resample", variant="primary")
        with gr.Row():
            top_img = gr.Image(label="Top z₂ redrawn along each row (bottom ε₁ held)", format="png",
                               interactive=False)
            bottom_img = gr.Image(label="Bottom ε₁ redrawn along each row (top z₂ held)", format="png",
                                  interactive=False)
        out = parts.output_panel()
        table = gr.Markdown(comparison(), label="Bounds compared", elem_id="hvae-compare")
        compare_btn = gr.Button("Refresh the comparison")
        with parts.TrainPanel(header, "Train a hierarchical VAE (or a one-level one: top size 0) on binarised MNIST. "
                              "About 4,000 steps in a few minutes on 2 CPU cores.", steps_default=1000,
                              run_name="my_hvae", elem_id="hvae-train") as train:
            t_top = gr.Slider(0, 32, value=8, step=1, label="Top latent size")
            t_bottom = gr.Slider(1, 32, value=8, step=1, label="Bottom latent size")
            t_skip = gr.Checkbox(value=True, label="Decoder reads both levels")
    header.then(resample, [ckpt, seed, rows, columns], [top_img, bottom_img, *out.outputs])
    page.action(btn.click, resample, [ckpt, seed, rows, columns], [top_img, bottom_img, *out.outputs],
                api_name="hvae_resample")
    page.action(compare_btn.click, comparison, None, table, api_name="hvae_compare", names=[])
    train.wire(page, train_config, [t_top, t_bottom, t_skip], ["loss", "reconstruction", "kl_bottom", "kl_top"],
               api_prefix="hvae", names=["top_latent_size", "bottom_latent_size", "decoder_reads_both"])
