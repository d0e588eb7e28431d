"""The Likelihoods tab: one table ranking every shipped model that gives a likelihood, on the same
held-out images, grouped by preprocessing, with the caveat beside it. The stored table (written by
``python -m models.density.likelihood``) is shown without recomputing; "Recompute" scores the first N
test images here.
"""
from __future__ import annotations

import json

import gradio as gr

from models.density import likelihood
from studio import parts, widgets
from studio.widgets import friendly, whole

TITLE = "Likelihoods"
MAX_RECOMPUTE = 5_000  # every likelihood checkpoint on 5,000 images: about 30 s on 2 CPU cores (10,000 took a minute)


def markdown(result: dict | None) -> str:
    """The table as markdown: one block per preprocessing group, ranked, bounds marked."""
    if not result or not result.get("rows"):
        return ("No likelihood table yet: run `python -m models.density.likelihood` (or Recompute below). "
                "It lists every shipped checkpoint whose family has a `log_likelihood` hook.")
    out = [f"**Caveat.** {result['caveat']}", ""]
    for group in result["groups"]:
        rows = [r for r in result["rows"] if r["group"] == group]
        out.append(f"#### {rows[0]['preprocessing']}")
        if group in result.get("published", {}):
            out.append(f"*For orientation, {result['published'][group]}.*")
        out.append("\n| rank | model | checkpoint | estimate | nats / image | bits / dim | test images |\n"
                   "|---|---|---|---|---|---|---|")
        for r in rows:
            what = {"bound": f"{r['estimate']} (**bound**: true −log p is lower)",
                    "estimate": f"{r['estimate']} (**estimate**: log Z by annealed importance sampling)"}.get(r["kind"], "exact")
            summary = f" ({r['summary']})" if r.get("summary") else ""
            out.append(f"| {r['rank']} | {r['title']}{summary} | {r['checkpoint']} | {what} | {r['nats']:.2f} | "
                       f"{r['bits_per_dim']:.4f} | {r['test_examples']:,} |")
        out.append("")
    out.append(f"Scored {result['created']}. Lower is better inside a group; rows of different groups are not "
               "compared.")
    return "\n".join(out)


def stored():
    """The table written by the CLI, shown without recomputing."""
    result = likelihood.load_table()
    return markdown(result), result


@friendly
def recompute(test_images):
    """Score every shipped likelihood checkpoint on the first N test images, here and now."""
    n = whole(test_images, "Test images")
    if not 1 <= n <= MAX_RECOMPUTE:
        raise ValueError(f"Test images must be from 1 to {MAX_RECOMPUTE}; got {n}.")
    result = likelihood.table(n)
    record = parts.provenance("likelihood-table", None, test_images=n)
    path = widgets.export_path(f"likelihood_table_{n}.json")
    path.write_text(json.dumps({**result, "provenance": record}, indent=1, ensure_ascii=False))
    return markdown(result), result, str(path)


def build(page: parts.Page):
    gr.Markdown("Every shipped model that gives a likelihood, scored on the same held-out MNIST test images: exact "
                "log-likelihoods (flows, autoregressive models) and lower bounds (VAEs' ELBO, and the tighter "
                "importance-weighted bound). Each row says its preprocessing; rows are ranked only against rows "
                "with the same one. (Goodfellow et al. §20.14; reproduce with `python -m models.density.likelihood`.)")
    table = gr.Markdown(label="Likelihood table", elem_id="likelihoods-table")
    with gr.Row():
        n = gr.Number(value=100, precision=0, label=f"Test images (1–{MAX_RECOMPUTE:,})")
        btn = gr.Button("Recompute on N test images", variant="primary")
        show_btn = gr.Button("Show the stored table")
    download = gr.File(label="Download (JSON)", interactive=False, height=90)
    with gr.Accordion("The table as data", open=False):
        raw = gr.JSON(label="The table as data")
    page.on_load(stored, None, [table, raw])
    page.action(show_btn.click, stored, None, [table, raw], api_name="likelihoods_table", names=[])
    page.action(btn.click, recompute, n, [table, raw, download], api_name="likelihoods_recompute",
                names=["test_images"], show_progress_on=[table])
