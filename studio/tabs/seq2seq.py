"""The Encoder–decoder & QA tab: Foster's question generator (1st ed. ch. 6).

Paste a passage; the answer tagger colours each word by its probability of belonging to an answer
and lists the candidate spans; pick one (or type an answer) and the decoder writes questions for it,
by beam search or by sampling; the attention over the passage is drawn for each generated word, with
how much of each word was copied by the pointer rather than generated.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from models.core.family import seeded
from models.text import seq2seq
from studio import parts, widgets
from studio.widgets import friendly

TITLE = "Encoder–decoder & QA"
FAMS = ("seq2seq",)
DEFAULT = "qa_kjv"
EXAMPLE = ("And Mahalaleel lived sixty and five years, and begat Jared: and Jared begat Enoch, "
           "and Enoch walked with God.")
BUCKETS = {"answer (p ≥ 0.5)": "#9be39b", "maybe (0.2–0.5)": "#ffe08a"}
DATA_NOTE = ("**Data.** Foster trains on NewsQA with GloVe vectors; neither can be had offline. This model's "
             "questions and answers were made from King James verses (the bundled corpus) by a handful of "
             "sentence templates (\"Adam knew Eve\" → \"Whom did Adam know?\" / \"Eve\"), about 2,800 pairs for "
             "training and 450 held out; its word embeddings were trained here from scratch. So it asks "
             "Bible-style *who / whom / whose son / where / how old* questions, and names it has never "
             "seen are copied from the passage by the pointer.")


def loaded(name: str):
    return widgets.load(widgets.family_of(FAMS, name, "encoder–decoder"), name)


def _model(checkpoint):
    model, _, _ = loaded(checkpoint)
    if model.config.task != "questions":
        raise ValueError(f"{checkpoint} was trained on the {model.config.task} task; pick a question checkpoint.")
    return model


def _bucket(p: float) -> str | None:
    return list(BUCKETS)[0] if p >= 0.5 else list(BUCKETS)[1] if p >= 0.2 else None


@friendly
def tag_passage(checkpoint, passage):
    """The tagger's view: each word coloured by its answer probability, and the candidate spans."""
    model = _model(checkpoint)
    tokens, probs, spans = seq2seq.tag(model, passage)
    marked = [(w + " ", _bucket(p)) for w, p in zip(tokens, probs)]
    rows = "\n".join(f"| {s.text} | words {s.start}–{s.end - 1} | {s.probability:.2f} |" for s in spans[:8])
    table = ("| candidate answer | position | span probability (mean of its words) |\n|---|---|---|\n" + rows)
    choices = [s.text for s in spans[:8]]
    return marked, table, gr.update(choices=choices, value=choices[0])


def attention_figure(tokens: list[str], out: seq2seq.Output, span) -> np.ndarray:
    """Rows: generated words (with the pointer's copy share); columns: passage words (answer in red)."""
    att = out.attention.numpy()
    fig = Figure(figsize=(max(6, 0.32 * len(tokens) + 2), max(2.5, 0.35 * len(out.tokens) + 1.5)), dpi=90,
                 layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(att, cmap="magma", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    for i, lab in enumerate(ax.get_xticklabels()):
        if span[0] <= i < span[1]:
            lab.set_color("red")
    ax.set_yticks(range(len(out.tokens)), [f"{t}  (copy {1 - g:.0%})" for t, g in zip(out.tokens, out.p_gen)],
                  fontsize=8)
    ax.set_title("attention of each generated word over the passage (each row sums to 1)", fontsize=9)
    return widgets.figure_to_array(fig)


@friendly
def ask_questions(checkpoint, passage, answer, beam, sampled, temperature, n, seed):
    """Questions for the chosen answer (blank: the tagger's best span); the attention of the first."""
    model = _model(checkpoint)
    tokens = seq2seq.check_passage(passage)
    start = end = None
    if answer and str(answer).strip():
        span = seq2seq.find_span(tokens, str(answer))
        if span is None:
            raise ValueError(f"The answer {str(answer).strip()!r} is not in the passage: pick words of the passage "
                             "(or leave it blank for the tagger's best span).")
        start, end = span
    seed = widgets.seed_of(seed)
    beam_width = 1 if sampled else int(beam)
    tokens, span, outs = seq2seq.ask(model, passage, start, end, n=int(n), generator=seeded(seed),
                                     beam=beam_width, temperature=float(temperature))
    how = f"sampled at τ {float(temperature):g}, seed {seed}" if sampled else f"beam search, width {beam_width}"
    lines = [f"{i + 1}. **{o.text}**  (log-probability {o.log_prob:.2f})" for i, o in enumerate(outs)]
    text = f"Answer: **{span.text}** (words {span.start}–{span.end - 1}); {how}.\n\n" + "\n".join(lines)
    copied = [t for t, g in zip(outs[0].tokens, outs[0].p_gen) if g < 0.5]
    caption = (f"Question 1: the pointer copied {', '.join(repr(c) for c in copied) or 'nothing'} "
               f"(copy share above one half).")
    return text, attention_figure(tokens, outs[0], (span.start, span.end)), caption


def build(page: parts.Page):
    gr.Markdown("An **encoder–decoder** reads a whole source with a bidirectional GRU, then a GRU decoder writes "
                "the output word by word, looking back at the source through **attention** (trained with "
                "teacher forcing). Foster's **question generator** adds an **answer tagger** that marks the "
                "words likely to be answers, and a **pointer** that copies passage words the vocabulary "
                "lacks (his fix for `<UNK>`). (Foster 1st ed. ch. 6.)")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMS, DEFAULT, "qa")
    ckpt = header.dropdown
    passage = gr.Textbox(value=EXAMPLE, label="Passage", lines=3, elem_id="qa-passage")
    with gr.Row():
        tag_btn = gr.Button("Tag answers", variant="primary", elem_id="qa-tag")
    marked = gr.HighlightedText(label="Answer probability of each word", color_map=BUCKETS, show_legend=True,
                                show_inline_category=False, combine_adjacent=False, elem_id="qa-marked")
    spans = gr.Markdown(label="Candidate answers", elem_id="qa-spans")
    with gr.Row():
        answer = gr.Dropdown([], value=None, allow_custom_value=True, label="Answer (a candidate, words of the "
                             "passage, or blank for the best span)", elem_id="qa-answer")
        beam = gr.Slider(1, 8, value=3, step=1, label="Beam width")
        sampled = gr.Checkbox(value=False, label="Sample instead of beam search")
        temperature = gr.Slider(0.1, 2.0, value=0.8, step=0.05, label="Temperature (sampling)")
        n = gr.Slider(1, 5, value=3, step=1, label="Questions")
        seed = widgets.seed_box()
    ask_btn = gr.Button("Ask", variant="primary", elem_id="qa-ask")
    questions = gr.Markdown(label="Questions", elem_id="qa-questions")
    caption = gr.Markdown(label="Pointer note")
    heat = gr.Image(label="Attention over the passage, per generated word", format="png", interactive=False)
    page.action(tag_btn.click, tag_passage, [ckpt, passage], [marked, spans, answer], api_name="qa_tag")
    page.action(ask_btn.click, ask_questions, [ckpt, passage, answer, beam, sampled, temperature, n, seed],
                [questions, heat, caption], api_name="qa_ask", example={"answer": ""})
