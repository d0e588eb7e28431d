"""The Text tab: steer a language model token by token and look inside it.

Generation streams; every generated token can be clicked to see the distribution it was drawn from
(before and after temperature and truncation) and what else could have come; a predictive keyboard
offers the ten likeliest next tokens; temperatures are compared side by side from one seed; a
transformer's attention is drawn per layer and head; and models train in the page.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import html
import re
import time

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from models import FAMILIES
from models.core.family import seeded
from models.text import corpus, gpt, lstm
from studio import parts, widgets
from studio.widgets import friendly

TITLE = "Text"
DATA_NOTE = ("**Data.** Foster's LSTMs learn Aesop's fables (1st ed.) and Epicurious recipes (2nd ed.), Chollet's "
             "review transformer IMDB; none ships offline, so Hamlet, the King James Bible and Rotten Tomatoes "
             "review snippets stand in.")
FAMS = ("gpt", "lstm")
DEFAULT = "gpt_hamlet"
TOP = 15  # candidates kept per generated position (for the bar charts)
TEMPERATURES = (0.2, 0.5, 0.7, 1.0, 1.5)
KEYS = 10  # predictive keyboard buttons
BUCKETS = {"likely (p ≥ 0.5)": "#9be39b", "plausible (0.1–0.5)": "#ffe08a", "surprising (p < 0.1)": "#ffb0a8"}
LOOPING = 0.3  # share of repeated 4-grams above which the text is called looping
EXAMPLES = {"hamlet": "HAMLET\nTo be, or not to be", "reviews": "this movie", "kjv": "In the beginning"}
UPLOAD_FOLDER = "corpora"  # under parts.UPLOADS, each file named by its content hash
SIZES = {  # what "size" means for each family in the Train section
    "gpt": {"small": {"d_model": 64, "heads": 4, "layers": 2, "ff": 256},
            "medium": {"d_model": 128, "heads": 4, "layers": 4, "ff": 512}},
    "lstm": {"small": {"embedding": 64, "hidden": 128}, "medium": {"embedding": 100, "hidden": 256}},
}
STATE_TOKENS = 1500  # tokens the recurrent-state view reads at most
HEAT_TOKENS = 80  # the heatmap draws the first ones read (labels stay legible)
SHOWN_UNITS = 6  # units drawn at most
RECURRENT_EXAMPLE = "lstm_hamlet"  # the state view of an API caller's bare call: Hamlet, character level


# --- checkpoints ---

def family_of(name: str) -> str:
    return widgets.family_of(FAMS, name, "text")


def loaded(name: str):
    return widgets.load(family_of(name), name)


def example_prompt(dataset, level) -> str:
    """A prompt the corpus's vocabulary knows (blank for an uploaded corpus)."""
    prompt = EXAMPLES.get(dataset, "")
    return prompt.lower().replace("\n", " ") if level == "word" else prompt


def default_prompt() -> str:
    """The example prompt of the checkpoint the page opens on, read from its card (no weights loaded),
    so an API caller's default prompt is a real one."""
    name = parts.default_checkpoint(FAMS, DEFAULT)
    if name is None:
        return ""
    cfg = widgets.read_card(widgets.resolve(family_of(name), name)).get("config", {})
    return example_prompt(cfg.get("dataset"), cfg.get("level"))


@friendly
def select_checkpoint(checkpoint):
    """An example prompt for the corpus (generation and keyboard), and the attention section for
    transformers (the header shows the card)."""
    if not checkpoint:
        return (gr.update(),) * 6
    _, config, _ = loaded(checkpoint)
    prompt = example_prompt(config.dataset, config.level)
    # a slider needs maximum > minimum, so one layer or head still gets a 1–2 slider (2 is refused clearly)
    layers = gr.update(maximum=max(2, config.layers), value=1)
    if family_of(checkpoint) != "gpt":
        return prompt, prompt, gr.update(visible=False), gr.update(), gr.update(), layers
    return (prompt, prompt, gr.update(visible=True), layers, gr.update(maximum=max(2, config.heads), value=1),
            gr.update())


# --- generation ---

def show(piece: str) -> str:
    """A token as a label: whitespace made visible."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥", corpus.SEP: "¶ (end)", corpus.UNK: "<unk>"}.get(piece, piece)


def bucket(p: float) -> str:
    names = list(BUCKETS)
    return names[0] if p >= 0.5 else names[1] if p >= 0.1 else names[2]


def _prompt(prompt) -> str:
    if not prompt or not prompt.strip():
        raise ValueError("Type a prompt: a few words (or characters) for the model to continue, e.g. 'this movie'.")
    return prompt


def highlighted(run) -> list[tuple[str, str | None]]:
    """Prompt tokens plain, generated tokens coloured by how likely the model thought them."""
    out = [(run["prompt"], None)] if run["prompt"] else []
    for r in run["steps"]:
        out.append((r["text"], bucket(r["p_after"])))
    return out


def repetition_note(ids: list[int], markdown: bool = True) -> str:
    rep = corpus.repetition(ids)
    looping = "**looping**" if markdown else "LOOPING"
    flag = f" — {looping} (low temperatures fall into cycles; raise τ or use top-p)" if rep > LOOPING else ""
    return f"repeated 4-grams {rep:.0%}{flag}"


@friendly
def generate(checkpoint, prompt, length, temperature, top_k, top_p, greedy, seed, stop_at_end):
    """Stream a continuation; keep each position's candidates for the distribution view; at the end,
    the text and its provenance as a download."""
    model, _, _ = loaded(checkpoint)
    prompt = _prompt(prompt)
    seed = widgets.seed_of(seed)
    tok = model.tokenizer
    controls = dict(prompt=prompt, length=int(length), temperature=float(temperature), top_k=int(top_k),
                    top_p=float(top_p), greedy=bool(greedy), stop_at_sep=bool(stop_at_end))
    run = {"name": checkpoint, "prompt": tok.decode(tok.encode(prompt)), "steps": [], "seed": seed}
    steps = corpus.decode(model, tok, 1, seeded(seed), **controls)
    start = last_yield = time.time()
    prev = corpus.prompt_ids(tok, prompt)[-1]
    keep = [gr.update()] * 3  # the output panel fills in at the end
    pending = []  # steps not yet recorded: recorded together, so the loop runs at the model's speed

    def record():
        run["steps"] += corpus.position_records(tok, run["steps"][-1]["token"] if run["steps"] else prev, pending, TOP)
        pending.clear()

    for k, step in enumerate(steps):
        pending.append(step)
        if time.time() - last_yield > 0.15:
            record()
            run["ids"] = step.ids
            last_yield = time.time()
            yield step.text[0], highlighted(run), f"{k + 1} tokens…", gr.update(), None, gr.update(), *keep
    record()
    run["ids"] = step.ids
    n = len(run["steps"])
    how = "greedy" if greedy else (f"τ {float(temperature):g}, top-k {int(top_k) or 'off'}, top-p {float(top_p):g}")
    seconds = time.time() - start
    status = (f"{n} tokens in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f}/s); seed {seed}, "
              f"{how}; {repetition_note(run['ids'])}. Click a coloured token to see what else could have come.")
    record = parts.provenance(family_of(checkpoint), checkpoint, seed, **controls)
    caption = f"seed {seed}, {n} tokens, {how}, checkpoint {checkpoint}"
    files = parts.save_text(step.text[0], record, f"{checkpoint}_seed{seed}.txt")
    yield (step.text[0], highlighted(run), status, position_figure(run, n - 1), run,
           gr.update(maximum=max(2, n), value=n), caption, record, files)


def position_figure(run, k: int) -> np.ndarray:
    """Bar charts of the candidates at generated position k: the model's distribution and the one
    the token was drawn from."""
    r = run["steps"][k]
    labels = [show(p) for p in r["pieces"]]
    fig = Figure(figsize=(9, 3.6), dpi=90, layout="constrained")
    for j, (key, title) in enumerate([("before", f"model (τ = 1): entropy {r['h_before']:.2f} bits"),
                                      ("after", f"after τ / top-k / top-p: entropy {r['h_after']:.2f} bits, "
                                                f"{r['kept']:,} tokens kept")]):
        ax = fig.add_subplot(1, 2, j + 1)
        colors = ["C3" if i == r["token"] else ("C0" if key == "before" else "C2") for i in r["ids"]]
        y = np.arange(len(labels))[::-1]
        ax.barh(y, r[key], color=colors)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"position {k + 1}: drew {show(r['piece'])!r} (red), p = {r['p_after']:.3f} "
                 f"(model {r['p_before']:.3f})", fontsize=10)
    return widgets.figure_to_array(fig)


@friendly
def show_position(run, k):
    if not run:
        raise ValueError("Generate first: then pick a position to see its alternatives.")
    k = int(k)
    if not 1 <= k <= len(run["steps"]):
        raise ValueError(f"Position must be from 1 to {len(run['steps'])}.")
    return position_figure(run, k - 1)


def select_token(run, evt: gr.SelectData):
    """A click on the output: the position of the clicked generated token (the prompt is item 0)."""
    if not run:
        return gr.update()
    k = evt.index - (1 if run["prompt"] else 0)
    if not 0 <= k < len(run["steps"]):
        return gr.update()
    return k + 1


# --- predictive keyboard ---

@friendly
def predict(checkpoint, text):
    """The ten likeliest next tokens after ``text`` with the model's probabilities, a caption, and the
    keys (token, probability) for the buttons."""
    model, _, _ = loaded(checkpoint)
    text = _prompt(text)
    tok = model.tokenizer
    top = corpus.next_token_top(model, corpus.prompt_ids(tok, text), KEYS)
    keyset = [(tok.piece(i), q) for i, q in zip(top.ids, top.probs)]
    caption = (f"Next-token entropy {top.entropy:.2f} bits; the {len(keyset)} keys hold {top.mass:.0%} of the "
               "probability. Click one to append it.")
    return {show(piece): q for piece, q in keyset}, caption, keyset


def show_keys(keyset):
    """The keyboard's buttons: one per offered token, labelled with its probability."""
    keyset = keyset or []
    return [gr.update(value=f"{show(keyset[i][0])}  {keyset[i][1]:.0%}", visible=True) if i < len(keyset)
            else gr.update(value="…", visible=not keyset) for i in range(KEYS)]


def press(i: int):
    @friendly
    def handler(checkpoint, text, keyset):
        if not keyset or i >= len(keyset):
            raise ValueError("Type a prompt and press Predict first.")
        tok = loaded(checkpoint)[0].tokenizer
        piece = keyset[i][0]
        if piece not in tok.index:
            raise ValueError(f"{piece!r} is not in this checkpoint's vocabulary: press Predict again.")
        typed = text + tok.glue(corpus.prompt_ids(tok, text)[-1], tok.index[piece])
        return typed, *predict(checkpoint, typed)
    return handler


# --- temperature comparison ---

@friendly
def compare(checkpoint, prompt, length, top_k, top_p, seed, stop_at_end):
    """The five temperatures one after another, each shown as soon as it is done; then all five
    texts with their provenance as a download."""
    model, _, _ = loaded(checkpoint)
    prompt, seed = _prompt(prompt), widgets.seed_of(seed)
    controls = dict(prompt=prompt, length=int(length), top_k=int(top_k), top_p=float(top_p),
                    stop_at_sep=bool(stop_at_end))
    texts, labels = [""] * len(TEMPERATURES), [f"τ = {t}" for t in TEMPERATURES]
    # fresh update dicts every time: Gradio consumes the value of an update it has sent
    outs = lambda: [gr.update(value=v, label=label) for v, label in zip(texts, labels)]  # noqa: E731
    for j, t in enumerate(TEMPERATURES):
        steps = list(corpus.decode(model, model.tokenizer, 1, seeded(seed), temperature=t, **controls))
        texts[j] = steps[-1].text[0]
        labels[j] = f"τ = {t}: {repetition_note(steps[-1].ids, markdown=False)}"
        yield *outs(), *[gr.update()] * 3
    record = parts.provenance(family_of(checkpoint), checkpoint, seed, temperatures=list(TEMPERATURES), **controls)
    joined = "\n\n".join(f"=== temperature {t} ===\n{s}" for t, s in zip(TEMPERATURES, texts)) + "\n"
    files = parts.save_text(joined, record, f"{checkpoint}_seed{seed}_temperatures.txt")
    caption = f"seed {seed}, temperatures {', '.join(map(str, TEMPERATURES))}, checkpoint {checkpoint}"
    yield *outs(), caption, record, files


# --- attention ---

@friendly
def attention_view(checkpoint, generated_text, layer, head, last_tokens):
    """One head's attention over the last tokens of ``generated_text`` (blank: the corpus's example
    prompt), and every head, with each head's mean entropy."""
    model, config, _ = loaded(checkpoint)
    if family_of(checkpoint) != "gpt":
        raise ValueError("Attention maps need a transformer (GPT) checkpoint; an LSTM has no attention.")
    layer, head, window = int(layer), int(head), int(last_tokens)
    if not 1 <= layer <= config.layers:
        raise ValueError(f"Layer must be from 1 to {config.layers}.")
    if not 1 <= head <= config.heads:
        raise ValueError(f"Head must be from 1 to {config.heads}.")
    if window < 1:
        raise ValueError(f"Last tokens shown must be at least 1; got {window}.")
    text = generated_text if generated_text and generated_text.strip() else example_prompt(config.dataset, config.level)
    ids = corpus.prompt_ids(model.tokenizer, text)[-min(window, config.block):]  # <sep> first: a document starts
    weights = model.attention(ids)  # (layers, heads, T, T)
    ent = gpt.head_entropy(weights).numpy()  # (layers, heads)
    w = weights.numpy()
    labels = [show(model.tokenizer.piece(i)) for i in ids]
    fig = Figure(figsize=(8.5, 7.5), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(w[layer - 1, head - 1], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(ids)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ids)), labels, fontsize=7)
    ax.set_xlabel("attended-to token (key)")
    ax.set_ylabel("attending token (query)")
    ax.set_title(f"layer {layer}, head {head}: each row sums to 1; above the diagonal is masked")
    fig.colorbar(im, ax=ax, shrink=0.7, label="attention weight")
    big = widgets.figure_to_array(fig)
    L, H = w.shape[:2]
    fig = Figure(figsize=(1.9 * H + 0.6, 1.9 * L + 0.4), dpi=80, layout="constrained")
    for i in range(L):
        for j in range(H):
            a = fig.add_subplot(L, H, i * H + j + 1)
            a.imshow(w[i, j], cmap="viridis", vmin=0, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(f"L{i + 1} H{j + 1}", fontsize=8)
    overview = widgets.figure_to_array(fig)
    caption = (f"{len(ids)} tokens. Mean entropy of each head's rows (bits; low = sharp, focused heads): "
               + "; ".join(f"L{i + 1}: " + " ".join(f"{e:.1f}" for e in ent[i]) for i in range(L)))
    return big, overview, caption


@friendly
def attention_after(checkpoint, generated_text, layer, head, last_tokens):
    """After a generation: the attention maps of a transformer, nothing for an LSTM."""
    if not checkpoint or family_of(checkpoint) != "gpt":
        return None, None, ""
    return attention_view(checkpoint, generated_text, layer, head, last_tokens)


# --- recurrent state ---

def corpus_excerpt(dataset) -> str:
    """The end of a corpus (its held-out part): blank lines between documents, about 800 characters."""
    if dataset not in corpus.CORPORA:
        return ""
    docs, picked = corpus.documents(dataset), []
    while sum(len(d) for d in picked) < 600 and len(picked) < len(docs):
        picked.insert(0, docs[-1 - len(picked)])
    return "\n\n".join(picked)[-800:].lstrip()


def parse_units(units, hidden: int) -> list[int]:
    """'12, 40' -> [12, 40]; blank -> []."""
    try:
        chosen = [int(u) for u in str(units or "").replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"Units must be whole numbers from 0 to {hidden - 1}, separated by commas; "
                         f"got {units!r}.") from None
    bad = [u for u in chosen if not 0 <= u < hidden]
    if bad:
        raise ValueError(f"This model has {hidden} units per layer (0 to {hidden - 1}); {bad} are out of range.")
    if len(chosen) > SHOWN_UNITS:
        raise ValueError(f"Pick at most {SHOWN_UNITS} units at a time; got {len(chosen)}.")
    return list(dict.fromkeys(chosen))


def state_html(pieces: list[str], shown: np.ndarray, raw: np.ndarray, units: list[int]) -> str:
    """The text once per unit, each token's background red (positive) or blue (negative) by the
    unit's activation after reading it (Karpathy et al. 2015's pictures); ``shown`` (T, U) is in [-1, 1],
    ``raw`` holds the values themselves (shown on hover)."""
    blocks = []
    for j, u in enumerate(units):
        spans = []
        for piece, v, r in zip(pieces, shown[:, j], raw[:, j]):
            rgb = "220,50,40" if v > 0 else "40,90,220"
            text = html.escape(piece).replace("\n", "⏎\n")
            spans.append(f'<span title="{r:+.2f}" style="background:rgba({rgb},{min(abs(v), 1):.2f})">{text}</span>')
        blocks.append(f"<p><b>unit {u}</b></p><div style='white-space:pre-wrap;font-family:monospace;"
                      f"line-height:1.5;border:1px solid #ddd;padding:6px'>{''.join(spans)}</div>")
    return "\n".join(blocks)


def state_figure(pieces: list[str], shown: np.ndarray, units: list[int], what: str, title: str):
    """Heatmap: the chosen units (rows) over the first tokens read (columns); ``shown`` (T, U) in [-1, 1]."""
    n = min(len(pieces), HEAT_TOKENS)
    fig = Figure(figsize=(min(16, 2.5 + 0.13 * n), 1.6 + 0.45 * len(units)), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown[:n].T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n), [show(p.strip(" ") or p) for p in pieces[:n]], rotation=90, fontsize=7,
                  fontfamily="monospace")
    ax.set_yticks(range(len(units)), [f"unit {u}" for u in units], fontsize=8)
    ax.set_xlabel("token read (the state after it)")
    ax.set_title(title + (f" (first {n} of {len(pieces)} tokens)" if n < len(pieces) else ""), fontsize=9)
    fig.colorbar(im, ax=ax, label=what, fraction=0.03, pad=0.01)
    return widgets.figure_to_array(fig)


@friendly
def recurrent_view(checkpoint, generated_text, text, layer, kind, units):
    """Read a text with a recurrent model and show chosen units' h or c at every step, plus the units
    that correlate most with inside quotes, stage directions, line ends, speaker names and the
    position in the line. Text: the box, else the generated text, else the end of the corpus."""
    model, config, _ = loaded(checkpoint)
    if family_of(checkpoint) != "lstm":
        raise ValueError("The recurrent state view is for recurrent models (LSTM / GRU checkpoints such as "
                         "lstm_hamlet or lstm_reviews): a transformer carries no state from token to token; its Attention "
                         "section shows what it reads instead.")
    layer = int(layer)
    if not 1 <= layer <= config.layers:
        raise ValueError(f"Layer must be from 1 to {config.layers}.")
    if kind not in ("h", "c"):
        raise ValueError(f"State must be 'h' or 'c'; got {kind!r}.")
    if kind == "c" and config.cell != "lstm":
        raise ValueError("A GRU has no cell state c (its state is h alone): choose h.")
    chosen = parse_units(units, config.hidden)
    source = next((t for t in (text, generated_text) if t and t.strip()), "") or corpus_excerpt(config.dataset)
    if not source.strip():
        raise ValueError("Paste a text (or generate one) for the model to read.")
    tok = model.tokenizer
    ids = [1]  # documents (split at blank lines) between <sep>s, as in training; unknown tokens read as <unk>
    for doc in re.split(r"\n\s*\n", source.strip()):
        ids += tok.encode(doc, strict=False) + [1]
    ids = ids[:-1]
    cut = len(ids) > STATE_TOKENS + 1
    ids = ids[:STATE_TOKENS + 1]
    st = lstm.states(model, ids)
    acts = (st.h if kind == "h" else st.c)[layer - 1, 1:].cpu().numpy()  # (T, hidden), the <sep> step dropped
    _, spans = lstm.token_spans(tok, ids)
    s = tok.decode(ids)
    pieces = [s[a:b] for a, b in spans[1:]]
    feats = {k: v[1:] for k, v in lstm.text_features(tok, ids).items()}
    top = lstm.feature_units(acts, feats, k=3)
    rows = []
    for name, found in top.items():
        rows += [[name, u, round(r, 3)] for u, r in found] or [[name, None, None]]
    chosen = chosen or list(dict.fromkeys(found[0][0] for found in top.values() if found))[:SHOWN_UNITS]
    raw = acts[:, chosen]  # (T, units)
    # h = o·tanh(c) lies in (-1, 1) and is drawn as it is; c is unbounded: each unit over its own largest |c|
    scale = np.ones(len(chosen)) if kind == "h" else np.maximum(np.abs(raw).max(0), 1e-6)
    shown = raw / scale
    absent = [name for name, found in top.items() if not found]
    caption = (f"Read {len(pieces):,} tokens{f' (the first {STATE_TOKENS:,})' if cut else ''} with {checkpoint} "
               f"({config.level} level, {config.cell.upper()} {config.hidden}); red = positive, blue = negative"
               + ("" if kind == "h" else "; c is drawn divided by each unit's largest |c| ("
                  + ", ".join(f"unit {u}: {v:.2f}" for u, v in zip(chosen, scale)) + ")")
               + ". The table ranks units by |correlation| with each feature"
               + (f"; not in this text: {', '.join(absent)}" if absent else "") + ".")
    what = "h" if kind == "h" else "c ÷ the unit's largest |c|"
    return (state_figure(pieces, shown, chosen, what, f"{kind}, layer {layer}: each unit after every token read"),
            state_html(pieces, shown, raw, chosen), rows, caption)


# --- training ---

def corpus_choices() -> list[tuple[str, str]]:
    """The shipped corpora, then every uploaded one (each stored under its content hash)."""
    uploaded = sorted((parts.UPLOADS / UPLOAD_FOLDER).glob("*.txt"))
    return [(v["title"], k) for k, v in corpus.CORPORA.items()] + [(corpus.title(str(p)), str(p)) for p in uploaded]


@friendly
def upload_corpus(file):
    """Check an uploaded text, then keep it under a name that includes its content hash: a later file
    with the same name gets its own copy, so a run resumes on the text it started with."""
    if not file:
        return gr.update(), ""
    corpus.read_text_file(file)  # refuse binaries, other encodings, tiny and huge files before keeping anything
    name = str(parts.store_upload(file, (".txt",), UPLOAD_FOLDER, max_bytes=corpus.MAX_UPLOAD))
    docs = corpus.documents(name)
    size = sum(len(d) for d in docs)
    return (gr.update(choices=corpus_choices(), value=name),
            f"Added {corpus.title(name)}: {len(docs):,} paragraphs, {size:,} characters.")


def train_config(model, dataset, level, size, cell, layers, *, steps, batch_size, lr):
    """The chosen family's ``cpu`` preset with the Train section's corpus, tokens and size."""
    if model not in FAMS:
        raise ValueError(f"Model must be one of {FAMS}; got {model!r}.")
    if dataset not in [v for _, v in corpus_choices()]:
        raise ValueError(f"Unknown corpus {dataset!r}: choose one from the list, or upload a .txt file.")
    if size not in SIZES[model]:
        raise ValueError(f"Size must be one of {sorted(SIZES[model])}; got {size!r}.")
    extra = {"cell": cell, "layers": int(layers)} if model == "lstm" else {}
    return FAMILIES[model].config("cpu", dataset=dataset, level=level, steps=steps, batch_size=batch_size, lr=lr,
                                  **SIZES[model][size], **extra)


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A language model predicts the next token from the ones before it; text is written by "
                "drawing a token, appending it, and asking again. **Temperature** reshapes the distribution "
                "(low: safe and repetitive; high: adventurous), **top-k** and **top-p** cut off its unlikely "
                "tail, **greedy** always takes the top token. An LSTM carries a memory state along the text; "
                "a transformer (GPT) attends to every earlier token at once. (Foster ch. 5 and 9, Chollet ch. 12.)")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMS, DEFAULT, "text")
    ckpt = header.dropdown
    run = parts.visitor_state(None)  # the last generation: each position's candidates
    keyset = parts.visitor_state([])  # the keyboard's offered (token, probability)
    prompt0 = default_prompt()
    with gr.Column():
        with gr.Accordion("Generate", open=True):
            prompt = gr.Textbox(value=prompt0, label="Prompt", lines=2, elem_id="text-prompt")
            with gr.Row():
                length = gr.Slider(1, 1000, value=200, step=1, label="Length (tokens)")
                temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature τ")
                top_k = gr.Slider(0, 100, value=0, step=1, label="top-k (0 = off)")
                top_p = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="top-p (1 = off)")
            with gr.Row():
                greedy = gr.Checkbox(value=False, label="Greedy (always the likeliest)")
                stop = gr.Checkbox(value=False, label="Stop at the end of a document")
                seed = widgets.seed_box()
                go = gr.Button("Generate", variant="primary", elem_id="text-generate")
                cancel = gr.Button("Cancel", variant="stop")
            plain = gr.Textbox(value="", label="Generated text", lines=6, interactive=False, elem_id="text-plain")
            out = gr.HighlightedText(label="Tokens (colour = probability of the drawn token; click one)",
                                     color_map=BUCKETS, show_legend=True, show_inline_category=False,
                                     combine_adjacent=False, elem_id="text-output")
            status = gr.Markdown(label="Status", elem_id="text-status")
            gen_out = parts.output_panel("Download: the text (.txt) and its provenance (.json)", "multiple")
            position = gr.Slider(1, 200, value=1, step=1, label="Generated position")
            dist = gr.Image(label="Next-token distribution at that position", format="png", interactive=False)
        with gr.Accordion("Predictive keyboard", open=True):
            gr.Markdown("The model's ten likeliest next tokens; click one to append it and predict again.")
            with gr.Row():
                typed = gr.Textbox(value=prompt0, label="Text", scale=4, elem_id="text-keyboard")
                predict_btn = gr.Button("Predict", scale=1, elem_id="text-predict")
            with gr.Row():
                keys = [gr.Button("…", size="sm", min_width=60) for _ in range(KEYS)]
            key_caption = gr.Markdown(label="Keyboard note")
            top = gr.Label(num_top_classes=KEYS, label="Likeliest next tokens (model, τ = 1)")
        with gr.Accordion("Temperatures side by side", open=True):
            gr.Markdown("The same prompt, seed, top-k and top-p at five temperatures (length and stop from above): "
                        "Chollet's ch. 12 demo with the review transformer **gpt_reviews** and the prompt "
                        "'this movie'.")
            cmp_btn = gr.Button("Compare", elem_id="text-compare")
            with gr.Row():
                cmp_out = [gr.Textbox(label=f"τ = {t}", lines=8, interactive=False) for t in TEMPERATURES]
            cmp_panel = parts.output_panel("Download: the five texts (.txt) and their provenance (.json)",
                                          "multiple")
        with gr.Accordion("Attention (transformer)", open=True, visible=True) as att_section:
            gr.Markdown("Which earlier tokens each position of the generated text looks at, per layer and head "
                        "(before a generation: the example prompt).")
            with gr.Row():
                a_layer = gr.Slider(1, 8, value=1, step=1, label="Layer")
                a_head = gr.Slider(1, 8, value=1, step=1, label="Head")
                a_window = gr.Slider(8, 128, value=48, step=1, label="Last tokens shown")
                a_btn = gr.Button("Show attention")
            a_caption = gr.Markdown(label="Head entropies")
            with gr.Row():
                a_img = gr.Image(label="One head (rows: query token, columns: key token)", format="png",
                                 interactive=False)
                a_all = gr.Image(label="All heads (rows: layers, columns: heads)", format="png", interactive=False)
        with gr.Accordion("Recurrent state (LSTM / GRU)", open=False):
            gr.Markdown("An LSTM carries a hidden state h and a cell state c from token to token. Read a text "
                        "and watch single units: some switch on inside quotes or stage directions, at line "
                        "ends, on speaker names, or count along the line (Karpathy et al. 2015). The table "
                        "ranks units by their correlation with each feature; blank units show the top ones. "
                        "Text: the box below, else the generated text, else the end of the corpus. The "
                        "character-level lstm_hamlet shows the clearest units (word-level models lower-case "
                        "the text and see no line lengths in characters).")
            r_text = gr.Textbox(value="", label="Text to read (blank: the generated text)", lines=4,
                                elem_id="text-state-text")
            with gr.Row():
                r_kind = gr.Radio([("hidden state h", "h"), ("cell state c (LSTM)", "c")], value="h", label="State")
                r_layer = gr.Slider(1, 2, value=1, step=1, label="Layer")
                r_units = gr.Textbox(value="", label="Units (e.g. 12, 40; blank: the top unit of each feature)")
                r_btn = gr.Button("Read the state", elem_id="text-state")
            r_caption = gr.Markdown(label="State note")
            r_img = gr.Image(label="Units (rows) over the tokens read (columns)", format="png", interactive=False)
            r_table = gr.Dataframe(headers=["feature", "unit", "correlation r"], label="Top units per feature",
                                   interactive=False)
            r_html = gr.HTML(label="The text coloured by each unit")
        with parts.TrainPanel(header, "Train a language model here. On 2 CPU cores a small GPT reads ~5k characters "
                              "a second: after a few hundred steps the words take shape. A sample from a fixed seed "
                              "is printed every 50 steps. Upload a UTF-8 .txt file to train on your own text.",
                              steps_default=500, batches=(8, 16, 32, 64), batch_default=32, lr_default=2e-3,
                              run_name="my_text_model", elem_id="text-train",
                              preview=lambda: gr.Textbox(label="Sample from a fixed seed (τ 0.8)", lines=10,
                                                         interactive=False)) as train:
            with gr.Column():
                with gr.Row():
                    t_family = gr.Radio([("GPT", "gpt"), ("LSTM", "lstm")], value="gpt", label="Model")
                    t_data = gr.Dropdown(corpus_choices(), value="hamlet", label="Corpus")
                    t_upload = gr.File(label="Your .txt", file_types=[".txt"], height=90)
                    t_level = gr.Radio([("characters", "char"), ("words", "word")], value="char", label="Tokens")
                t_upload_msg = gr.Markdown()
                with gr.Row():
                    t_size = gr.Radio(["small", "medium"], value="small", label="Size")
                    t_cell = gr.Radio(["lstm", "gru"], value="lstm", label="Cell (LSTM model)")
                    t_layers = gr.Slider(1, 2, value=1, step=1, label="Layers (LSTM model)")

    header.then(select_checkpoint, ckpt, [prompt, typed, att_section, a_layer, a_head, r_layer])
    gen = page.action(go.click, generate, [ckpt, prompt, length, temperature, top_k, top_p, greedy, seed, stop],
                      [plain, out, status, dist, run, position, *gen_out.outputs], api_name="text_generate",
                      show_progress_on=[status])
    cancel.click(None, None, None, cancels=[gen], api_name=False)
    out.select(select_token, run, position, api_name=False)
    position.change(show_position, [run, position], dist, api_name=False, show_progress="hidden")
    predicted = [top, key_caption, keyset]
    page.action(predict_btn.click, predict, [ckpt, typed], predicted, api_name="text_predict"
                ).then(show_keys, keyset, keys, api_name=False)
    typed.submit(predict, [ckpt, typed], predicted, api_name=False).then(show_keys, keyset, keys, api_name=False)
    for i, k in enumerate(keys):
        k.click(press(i), [ckpt, typed, keyset], [typed, *predicted], api_name=False
                ).then(show_keys, keyset, keys, api_name=False)
    page.action(cmp_btn.click, compare, [ckpt, prompt, length, top_k, top_p, seed, stop],
                [*cmp_out, *cmp_panel.outputs], api_name="text_compare", show_progress_on=cmp_out[-1:])
    attention_in, attention_out = [ckpt, plain, a_layer, a_head, a_window], [a_img, a_all, a_caption]
    page.action(a_btn.click, attention_view, attention_in, attention_out, api_name="text_attention")
    gen.then(attention_after, attention_in, attention_out, api_name=False)
    page.action(r_btn.click, recurrent_view, [ckpt, plain, r_text, r_layer, r_kind, r_units],
                [r_img, r_html, r_table, r_caption], api_name="text_recurrent_state",
                example={"checkpoint": RECURRENT_EXAMPLE})  # the page opens on a GPT, which has no state
    t_upload.upload(friendly(upload_corpus), t_upload, [t_data, t_upload_msg], api_name=False)
    train.wire(page, train_config, [t_family, t_data, t_level, t_size, t_cell, t_layers], ["loss"],
               render=lambda sample: sample, api_prefix="text")
