"""The Text tab: steer a language model token by token and look inside it.

Generation streams; every generated token can be clicked to see the distribution it was drawn from
(before and after temperature and truncation) and what else could have come; a predictive keyboard
offers the ten likeliest next tokens; temperatures are compared side by side from one seed; a
transformer's attention is drawn per layer and head; and models train in the page."""
from __future__ import annotations

import time

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure

from models import FAMILIES
from models.text import corpus as text
from models.core.family import seeded
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "Text"
FAMS = ("gpt", "lstm")
DEFAULT = "gpt_hamlet"
TOP = 15  # candidates kept per generated position (for the bar charts)
TEMPERATURES = (0.2, 0.5, 0.7, 1.0, 1.5)
KEYS = 10  # predictive keyboard buttons
BUCKETS = {"likely (p ≥ 0.5)": "#9be39b", "plausible (0.1–0.5)": "#ffe08a", "surprising (p < 0.1)": "#ffb0a8"}
LOOPING = 0.3  # share of repeated 4-grams above which the text is called looping
EXAMPLES = {"hamlet": "HAMLET\nTo be, or not to be", "reviews": "this movie", "kjv": "In the beginning"}


# --- checkpoints ---

def choices() -> list[tuple[str, str]]:
    """Checkpoints of both text families, labelled with their family."""
    out = []
    for fam in FAMS:
        for label, name in widgets.checkpoint_choices(fam):
            out.append((f"{fam.upper()} · {label}", name))
    return out


def family_of(name: str) -> str:
    for fam in FAMS:
        if name in widgets.checkpoint_paths(fam):
            return fam
    raise ValueError(f"No text checkpoint named {name!r}." if name else "Choose a checkpoint first.")


def loaded(name: str):
    return widgets.load(family_of(name), name)


def card_text(card: dict) -> str:
    cfg, m = card.get("config", {}), card.get("metrics", {})
    fam = card.get("family", "")
    if fam == "gpt":
        net = (f"{cfg.get('layers')} layers × {cfg.get('heads')} heads, width {cfg.get('d_model')}, "
               f"context {cfg.get('block')}, {cfg.get('positions')} positions")
    else:
        net = (f"{cfg.get('layers')} × {str(cfg.get('cell', '')).upper()} {cfg.get('hidden')}, "
               f"embedding {cfg.get('embedding')}")
    lines = [f"**{card.get('name')}** ({card.get('title', fam)}): {card.get('data', {}).get('title', cfg.get('dataset'))}, "
             f"{cfg.get('level')} level, vocabulary {len(cfg.get('vocab', ())):,}; {net}"]
    if card.get("steps") is not None:
        lines.append(f"{card['steps']} steps" + (f" ({card['epochs']} epochs)" if card.get("epochs") else "")
                     + (f", {card['wall_time_s'] / 60:.0f} min on {card.get('hardware', '?')}"
                        if card.get("wall_time_s") else ""))
    if "val_loss" in m:
        unit = "character" if cfg.get("level") == "char" else "word"
        lines.append(f"Held-out text: loss **{m['val_loss']:.3f} nats per {unit}**, perplexity "
                     f"**{m['val_perplexity']:.1f}** (an untrained model: {m['uniform_loss']:.2f} nats, "
                     f"perplexity {np.exp(m['uniform_loss']):.0f}"
                     + (f"; {unit} frequencies alone: {m['unigram_loss']:.2f}" if "unigram_loss" in m else "")
                     + f"), next-{unit} accuracy {m['val_accuracy']:.0%}")
    if card.get("command"):
        lines.append(f"Reproduce: `{card['command']}`")
    elif "metrics" not in card:
        lines.append("No card yet: this run was interrupted before it finished (resume it in Train).")
    return "  \n".join(lines)


@friendly
def select_checkpoint(name):
    """The card, an example prompt for the corpus, and the attention section for transformers."""
    if not name:
        return "No text checkpoint yet: train one below.", gr.update(), gr.update(), gr.update(), gr.update()
    model, config, card = loaded(name)
    is_gpt = family_of(name) == "gpt"
    prompt = EXAMPLES.get(config.dataset, "")
    if config.level == "word":
        prompt = prompt.lower().replace("\n", " ")
    if not is_gpt:
        return card_text(card), gr.update(value=prompt), gr.update(visible=False), gr.update(), gr.update()
    # a slider needs maximum > minimum, so one layer or head still gets a 1–2 slider (2 is refused clearly)
    return (card_text(card), gr.update(value=prompt), gr.update(visible=True),
            gr.update(maximum=max(2, config.layers), value=1), gr.update(maximum=max(2, config.heads), value=1))


# --- generation ---

def show(piece: str) -> str:
    """A token as a label: whitespace made visible."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥", text.SEP: "¶ (end)", text.UNK: "<unk>"}.get(piece, piece)


def bucket(p: float) -> str:
    names = list(BUCKETS)
    return names[0] if p >= 0.5 else names[1] if p >= 0.1 else names[2]



def _prompt(prompt) -> str:
    if not prompt or not prompt.strip():
        raise ValueError("Type a prompt: a few words (or characters) for the model to continue, e.g. 'this movie'.")
    return prompt


def _record(tok, step) -> dict:
    """What is kept of one generated position: the top candidates before and after."""
    top = torch.topk(step.before, min(TOP, len(step.before)))
    ids = top.indices.tolist()
    if step.token not in ids:
        ids[-1] = step.token
    return {"token": step.token, "piece": step.piece, "ids": ids,
            "pieces": [tok.piece(i) for i in ids],
            "before": [float(step.before[i]) for i in ids], "after": [float(step.after[i]) for i in ids],
            "p_before": float(step.before[step.token]), "p_after": float(step.after[step.token]),
            "h_before": float(text.entropy(step.before)), "h_after": float(text.entropy(step.after)),
            "kept": int((step.after > 0).sum())}


def highlighted(run) -> list[tuple[str, str | None]]:
    """Prompt tokens plain, generated tokens coloured by how likely the model thought them."""
    out = [(run["prompt"], None)] if run["prompt"] else []
    for r in run["steps"]:
        out.append((r["text"], bucket(r["p_after"])))
    return out


def repetition_note(ids: list[int], markdown: bool = True) -> str:
    rep = text.repetition(ids)
    looping = "**looping**" if markdown else "LOOPING"
    flag = f" — {looping} (low temperatures fall into cycles; raise τ or use top-p)" if rep > LOOPING else ""
    return f"repeated 4-grams {rep:.0%}{flag}"


@friendly
def generate(name, prompt, length, temperature, top_k, top_p, greedy, seed, stop):
    """Stream a continuation; keep each position's candidates for the distribution view."""
    model, config, _ = loaded(name)
    prompt = _prompt(prompt)
    seed = widgets.seed_of(seed)
    tok = model.tokenizer
    controls = dict(prompt=prompt, length=int(length), temperature=float(temperature), top_k=int(top_k),
                    top_p=float(top_p), greedy=bool(greedy), stop_at_sep=bool(stop))
    run = {"name": name, "prompt": tok.decode(tok.encode(prompt)), "steps": [], "seed": seed, "controls": controls}
    steps = text.decode(model, tok, 1, seeded(seed), **controls)
    start = last_yield = time.time()
    prev = (text.prompt_ids(tok, prompt))[-1]
    for k, step in enumerate(steps):
        r = _record(tok, step)
        r["text"] = tok.glue(prev, step.token)
        prev = step.token
        run["steps"].append(r)
        run["ids"] = step.ids
        if time.time() - last_yield > 0.15 or k + 1 == controls["length"]:
            last_yield = time.time()
            yield step.text[0], highlighted(run), f"{k + 1} tokens…", gr.update(), None, gr.update()
    n = len(run["steps"])
    how = "greedy" if greedy else (f"τ {float(temperature):g}, top-k {int(top_k) or 'off'}, top-p {float(top_p):g}")
    status = (f"{n} tokens in {time.time() - start:.1f} s ({n / max(time.time() - start, 1e-9):.0f}/s); seed {seed}, "
              f"{how}; {repetition_note(run['ids'])}. Click a coloured token to see what else could have come.")
    yield (step.text[0], highlighted(run), status, position_figure(run, n - 1), run,
           gr.update(maximum=max(2, n), value=n))


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
def predict(name, typed):
    """The ten likeliest next tokens after ``typed`` as buttons, with the model's probabilities."""
    model, _, _ = loaded(name)
    typed = _prompt(typed)
    tok = model.tokenizer
    ids = torch.tensor([text.prompt_ids(tok, typed)])
    with torch.no_grad():
        logits, _ = model.next_logits(ids)
    p = torch.softmax(logits[0].double(), -1)
    top = torch.topk(p, KEYS)
    pieces = [tok.piece(i) for i in top.indices.tolist()]
    buttons = [gr.update(value=f"{show(s)}  {q:.0%}") for s, q in zip(pieces, top.values.tolist())]
    caption = (f"Next-token entropy {float(text.entropy(p)):.2f} bits; the ten buttons hold "
               f"{float(top.values.sum()):.0%} of the probability. Click one to append it.")
    return [typed, pieces, caption, *buttons]


def press(i: int):
    @friendly
    def handler(name, typed, pieces):
        if not pieces:
            raise ValueError("Type a prompt and press Predict first.")
        model, _, _ = loaded(name)
        tok = model.tokenizer
        prev = text.prompt_ids(tok, typed)[-1]
        chosen = tok.index[pieces[i]]
        return predict(name, typed + tok.glue(prev, chosen))
    return handler


# --- temperature comparison ---

@friendly
def compare(name, prompt, length, top_k, top_p, seed, stop):
    """The five temperatures one after another, each shown as soon as it is done."""
    model, _, _ = loaded(name)
    prompt, seed = _prompt(prompt), widgets.seed_of(seed)
    outs = [gr.update(value="", label=f"τ = {t}") for t in TEMPERATURES]
    for j, t in enumerate(TEMPERATURES):
        steps = list(text.decode(model, model.tokenizer, 1, seeded(seed), prompt=prompt, length=int(length),
                                 temperature=t, top_k=int(top_k), top_p=float(top_p), stop_at_sep=bool(stop)))
        outs[j] = gr.update(value=steps[-1].text[0], label=f"τ = {t}: {repetition_note(steps[-1].ids, markdown=False)}")
        yield list(outs)


# --- attention ---

@friendly
def attention_view(run, layer, head, window):
    """One head's attention over the last ``window`` tokens of the generated text, and every head."""
    if not run:
        raise ValueError("Generate with a transformer checkpoint first.")
    model, config, _ = loaded(run["name"])
    if not hasattr(model, "attention"):
        raise ValueError("Attention maps need a transformer (GPT) checkpoint; an LSTM has no attention.")
    layer, head, window = int(layer), int(head), int(window)
    if not 1 <= layer <= config.layers:
        raise ValueError(f"Layer must be from 1 to {config.layers}.")
    if not 1 <= head <= config.heads:
        raise ValueError(f"Head must be from 1 to {config.heads}.")
    ids = run["ids"][-min(window, config.block):]
    w = model.attention(ids).numpy()  # (layers, heads, T, T)
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
    ent = -(w * np.log2(np.clip(w, 1e-12, 1))).sum(-1).mean(-1)  # (L, H) mean row entropy
    caption = (f"{len(ids)} tokens. Mean entropy of each head's rows (bits; low = sharp, focused heads): "
               + "; ".join(f"L{i + 1}: " + " ".join(f"{e:.1f}" for e in ent[i]) for i in range(L)))
    return big, overview, caption


def attention_after(run, layer, head, window):
    """After a generation: the attention maps of a transformer, nothing for an LSTM."""
    if not run or family_of(run["name"]) != "gpt":
        return None, None, ""
    return attention_view(run, layer, head, window)


# --- training ---

@friendly
def upload_corpus(file):
    if not file:
        return gr.update(), ""
    name = text.save_upload(file)
    docs = text.documents(name)
    size = sum(len(d) for d in docs)
    return (gr.update(choices=corpus_choices(), value=name),
            f"Added {text.title(name)}: {len(docs):,} paragraphs, {size:,} characters.")


def corpus_choices():
    out = [(v["title"], k) for k, v in text.CORPORA.items()]
    if text.UPLOADS.exists():
        out += [(text.title(str(p)), str(p)) for p in sorted(text.UPLOADS.glob("*.txt"))]
    return out


SIZES = {  # what "size" means for each family in the Train section
    "gpt": {"small": {"d_model": 64, "heads": 4, "layers": 2, "ff": 256},
            "medium": {"d_model": 128, "heads": 4, "layers": 4, "ff": 512}},
    "lstm": {"small": {"embedding": 64, "hidden": 128}, "medium": {"embedding": 100, "hidden": 256}},
}


@friendly
def train_start(family, dataset, level, size, cell, layers, steps, batch, lr, run_name, current):
    fam = FAMILIES[family]
    extra = {"cell": cell, "layers": int(layers)} if family == "lstm" else {}
    config = fam.config("cpu", dataset=dataset, level=level, steps=int(steps), batch_size=int(batch),
                        lr=float(lr), **SIZES[family][size], **extra)
    job = JOBS.start(family, (run_name or "").strip(), config)
    yield from stream(job, family, ["loss"], current, render=lambda s: s)


@friendly
def train_resume(family, run_name, steps, current):
    job = JOBS.resume(family, run_name, steps)
    yield from stream(job, family, ["loss"], current, render=lambda s: s)


def refresh(current):
    return gr.update(choices=choices(), value=current)


# --- layout ---

def build(page):
    demo = page.demo
    options = choices()
    names = [v for _, v in options]
    default = DEFAULT if DEFAULT in names else (names[0] if names else None)
    gr.Markdown("A language model predicts the next token from the ones before it; text is written by "
                "drawing a token, appending it, and asking again. **Temperature** reshapes the distribution "
                "(low: safe and repetitive; high: adventurous), **top-k** and **top-p** cut off its unlikely "
                "tail, **greedy** always takes the top token. An LSTM carries a memory state along the text; "
                "a transformer (GPT) attends to every earlier token at once. (Foster ch. 5 and 9, Chollet ch. 12.)")
    with gr.Row():
        ckpt = gr.Dropdown(options, value=default, label="Checkpoint", scale=2, elem_id="text-checkpoint")
        card = gr.Markdown()
    run = gr.State(None)
    with gr.Column():
        with gr.Accordion("Generate", open=True):
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="text-prompt")
            with gr.Row():
                length = gr.Slider(1, 1000, value=200, step=1, label="Length (tokens)")
                temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature τ")
                top_k = gr.Slider(0, 100, value=0, step=1, label="top-k (0 = off)")
                top_p = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="top-p (1 = off)")
            with gr.Row():
                greedy = gr.Checkbox(value=False, label="Greedy (always the likeliest)")
                stop = gr.Checkbox(value=False, label="Stop at the end of a document")
                seed = gr.Number(value=0, precision=0, label="Seed")
                go = gr.Button("Generate", variant="primary", elem_id="text-generate")
                cancel = gr.Button("Cancel", variant="stop")
            plain = gr.Textbox(label="Generated text", lines=6, interactive=False, elem_id="text-plain")
            out = gr.HighlightedText(label="Tokens (colour = probability of the drawn token; click one)",
                                     color_map=BUCKETS, show_legend=True, show_inline_category=False,
                                     combine_adjacent=False, elem_id="text-output")
            status = gr.Markdown(elem_id="text-status")
            position = gr.Slider(1, 200, value=1, step=1, label="Generated position")
            dist = gr.Image(label="Next-token distribution at that position", format="png", interactive=False)
        with gr.Accordion("Predictive keyboard", open=True):
            gr.Markdown("The model's ten likeliest next tokens; click one to append it and predict again.")
            with gr.Row():
                typed = gr.Textbox(label="Text", scale=4, elem_id="text-keyboard")
                predict_btn = gr.Button("Predict", scale=1, elem_id="text-predict")
            pieces = gr.State([])
            with gr.Row():
                keys = [gr.Button("…", size="sm", min_width=60) for _ in range(KEYS)]
            key_caption = gr.Markdown()
        with gr.Accordion("Compare temperatures", open=True):
            gr.Markdown("The same prompt, seed, top-k and top-p at five temperatures (length and stop from above).")
            cmp_btn = gr.Button("Compare", elem_id="text-compare")
            with gr.Row():
                cmp_out = [gr.Textbox(label=f"τ = {t}", lines=8, interactive=False) for t in TEMPERATURES]
        with gr.Accordion("Attention (transformer)", open=True, visible=True) as att_section:
            gr.Markdown("Which earlier tokens each position of the generated text looks at, per layer and head.")
            with gr.Row():
                a_layer = gr.Slider(1, 8, value=1, step=1, label="Layer")
                a_head = gr.Slider(1, 8, value=1, step=1, label="Head")
                a_window = gr.Slider(8, 128, value=48, step=1, label="Last tokens shown")
                a_btn = gr.Button("Show attention")
            a_caption = gr.Markdown()
            with gr.Row():
                a_img = gr.Image(label="One head (rows: query token, columns: key token)", format="png",
                                 interactive=False)
                a_all = gr.Image(label="All heads (rows: layers, columns: heads)", format="png", interactive=False)
        with gr.Accordion("Train", open=True):
            gr.Markdown("Train a language model here. On 2 CPU cores a small GPT reads ~5k characters a second: "
                        "after a few hundred steps the words take shape. A sample from a fixed seed is printed "
                        "every 50 steps. Upload a UTF-8 .txt file to train on your own text.")
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
                t_steps = gr.Slider(10, 20000, value=500, step=10, label="Steps")
            with gr.Row():
                t_batch = gr.Dropdown([8, 16, 32, 64], value=32, label="Batch size")
                t_lr = gr.Number(value=2e-3, label="Learning rate")
                t_name = gr.Textbox(value="my_text_model", label="Run name")
                t_start = gr.Button("Start", variant="primary")
                t_resume = gr.Button("Resume")
                t_cancel = gr.Button("Cancel", variant="stop")
            t_status = gr.Markdown()
            with gr.Row():
                t_curves = gr.Plot(show_label=False)
                t_preview = gr.Textbox(label="Sample from a fixed seed (τ 0.8)", lines=10, interactive=False)

    for event in (ckpt.change, demo.load):
        event(select_checkpoint, ckpt, [card, prompt, att_section, a_layer, a_head], api_name=False
              ).then(lambda p: p, prompt, typed, api_name=False)
    gen = go.click(generate, [ckpt, prompt, length, temperature, top_k, top_p, greedy, seed, stop],
                   [plain, out, status, dist, run, position], show_progress_on=[status], api_name="generate_text")
    cancel.click(None, None, None, cancels=[gen])
    out.select(select_token, run, position, api_name=False)
    position.change(show_position, [run, position], dist, api_name=False, show_progress="hidden")
    predict_outs = [typed, pieces, key_caption, *keys]
    predict_btn.click(predict, [ckpt, typed], predict_outs, api_name=False)
    typed.submit(predict, [ckpt, typed], predict_outs, api_name=False)
    for i, k in enumerate(keys):
        k.click(press(i), [ckpt, typed, pieces], predict_outs, api_name=False)
    cmp_btn.click(compare, [ckpt, prompt, length, top_k, top_p, seed, stop], cmp_out, api_name=False,
                  show_progress_on=cmp_out[-1:])
    a_btn.click(attention_view, [run, a_layer, a_head, a_window], [a_img, a_all, a_caption], api_name=False)
    gen.then(attention_after, [run, a_layer, a_head, a_window], [a_img, a_all, a_caption], api_name=False)
    t_upload.upload(upload_corpus, t_upload, [t_data, t_upload_msg], api_name=False)
    train_outs = [t_status, t_curves, t_preview, ckpt]
    t_start.click(train_start, [t_family, t_data, t_level, t_size, t_cell, t_layers, t_steps, t_batch, t_lr, t_name,
                                ckpt], train_outs, show_progress_on=[t_status], api_name=False
                  ).then(refresh, ckpt, ckpt, api_name=False)
    t_resume.click(train_resume, [t_family, t_name, t_steps, ckpt], train_outs, show_progress_on=[t_status],
                   api_name=False).then(refresh, ckpt, ckpt, api_name=False)
    t_cancel.click(JOBS.cancel, None, t_status, api_name=False)
