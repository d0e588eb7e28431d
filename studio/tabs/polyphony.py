"""The four-voice chorales tab: a transformer writes soprano, alto, tenor and bass together, in either of
the book's tokenisations (grid or events); the piano roll colours the voices, the audio plays them, MIDI
and MusicXML keep the four parts, and the piece is scored beside Bach's held-out chorales (in key, in
voice range, parallel fifths and octaves). It can start from nothing, from a held-out chorale's opening
or from your own four-part MIDI file; a chorale's own tokens show what the model reads.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from models.core.family import seeded
from models.music import chorales as ch, notes as music, polyphony as poly
from studio import parts, widgets
from studio.tabs.music import ENSEMBLES, MIDI_SUFFIXES, VOICE_COLOURS, export
from studio.widgets import friendly, whole

TITLE = "Chorales (4 voices)"
FAMILIES = ("polyphony",)
CHECKPOINTS = {"grid": "chorales_grid", "events": "chorales_events"}
DEFAULT = CHECKPOINTS["grid"]
FROM_START, FROM_CHORALE, FROM_MIDI = "nothing (BOS)", "the opening of a held-out chorale", "your four-part MIDI file"
REDRAW_S = 2.0  # redraw the growing piano roll at most this often (a drawing takes a fair part of a second)
SHOWN_TOKENS = 96  # tokens listed in the token view


def loaded(name: str):
    return widgets.load(widgets.family_of(FAMILIES, name, "four-voice"), name)


def default_chorale() -> str | None:
    names = ch.held_out_names()
    return names[0] if names else None


# --- pictures and words ---

def voices_roll(voices, prompt_steps: int = 0, title: str = "") -> np.ndarray:
    """The four voices as coloured bars over time (quarter notes) and pitch, bar lines grey; the seed
    bars shaded. One PolyCollection per voice keeps it quick to redraw while a piece streams in."""
    fig = Figure(figsize=(9, 3.4), dpi=90)
    ax = fig.add_axes((0.07, 0.15, 0.78, 0.75))
    end = max(ch.length_of(voices), prompt_steps, ch.BAR) / music.STEPS_PER_QUARTER
    pitches = [m for line in voices for _, _, m in line]
    for name, line, colour in zip(ch.VOICES, voices, VOICE_COLOURS):
        q = music.STEPS_PER_QUARTER
        bars = [[(a / q, m - 0.4), ((b - 0.15) / q, m - 0.4), ((b - 0.15) / q, m + 0.4), (a / q, m + 0.4)]
                for a, b, m in line]
        ax.add_collection(PolyCollection(bars, facecolors=colour, edgecolors="none", label=name))
    if prompt_steps:
        ax.axvspan(0, prompt_steps / music.STEPS_PER_QUARTER, color="0.92", zorder=0, label="seed bars")
    ax.set_xlim(0, end)
    ax.vlines(np.arange(0, end + 1, 4), 0, 128, color="0.8", lw=0.6, zorder=0)
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (40, 80)
    ax.set_ylim(lo, hi)
    ticks = [m for m in range(lo, hi + 1) if m % 12 in (0, 7)]  # every C and G
    ax.set_yticks(ticks, [music.pretty_midi.note_number_to_name(m) for m in ticks], fontsize=7)
    ax.set_xlabel("time (quarter notes; grey lines are bar lines)")
    ax.set_ylabel("pitch")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return widgets.figure_to_array(fig)


def token_name(tok: int, tokenisation: str) -> str:
    """One token in words: ``BOS``, ``rest``, ``hold``, ``C4`` (grid); ``shift 2``, ``off A``, ``on T:G3`` (events)."""
    if tok == ch.BOS:
        return "BOS"
    name = music.pretty_midi.note_number_to_name
    if tokenisation == "grid":
        return {ch.REST: "rest", ch.HOLD: "hold"}.get(tok) or name(tok - 3 + ch.LOWEST)
    if tok < ch.OFF0:
        return f"shift {tok - ch.SHIFT0 + 1}"
    if tok < ch.ON0:
        return f"off {ch.VOICES[tok - ch.OFF0][0]}"
    v, p = divmod(tok - ch.ON0, ch.N_PITCHES)
    return f"on {ch.VOICES[v][0]}:{name(p + ch.LOWEST)}"


def token_text(tokens, tokenisation: str, start: int = 0, n: int = SHOWN_TOKENS) -> str:
    """Tokens ``start .. start + n`` in words; the grid one sixteenth (S A T B) a line."""
    toks = [int(t) for t in np.asarray(tokens)[start:start + n]]
    if tokenisation == "grid":
        lines, i = [], 0
        if toks and toks[0] == ch.BOS:
            lines.append("BOS")
            i = 1
        for k in range(i, len(toks), ch.N_VOICES):
            lines.append("  ".join(f"{v[0]} {token_name(t, 'grid'):>4}" for v, t in zip(ch.VOICES, toks[k:k + 4])))
        return "\n".join(lines)
    return ", ".join(token_name(t, "events") for t in toks)


def score_table(piece: dict, card: dict | None, bars: int) -> str:
    """This piece's scores beside the checkpoint's card samples, Bach's held-out chorales (their first
    ``bars`` bars) and noise with Bach's rhythm."""
    ref = ch.reference(bars)
    cols = [("this piece", piece)]
    samples = (card or {}).get("metrics", {}).get("four_voice_scores")
    if samples:
        cols.append((f"the card's {samples['pieces']} samples", samples))
    cols += [(f"Bach, {ref['bach_held_out']['pieces']} held-out chorales", ref["bach_held_out"]),
             ("noise", ref["noise"])]
    rows = [("notes in key", "in_key", "{:.1%}"), ("notes in voice range", "in_range", "{:.1%}"),
            ("soprano in range", "in_range_soprano", "{:.0%}"), ("alto in range", "in_range_alto", "{:.0%}"),
            ("tenor in range", "in_range_tenor", "{:.0%}"), ("bass in range", "in_range_bass", "{:.0%}"),
            ("parallel 5ths/8ves per bar", "parallels_per_bar", "{:.2f}"), ("notes per bar", "notes_per_bar", "{:.1f}")]
    head = "| | " + " | ".join(c for c, _ in cols) + " |\n|---|" + "---|" * len(cols)
    body = "\n".join(f"| {label} | " + " | ".join(fmt.format(s[key]) for _, s in cols) + " |"
                     for label, key, fmt in rows)
    return (head + "\n" + body + f"\n\nBach and noise over the first {bars} bars of each held-out chorale; noise "
            "keeps Bach's rhythm and draws every pitch near its voice's range.")


# --- generation ---

def prompt_of(source: str, chorale: str, midi_file):
    """The four voices to continue, or None to start from BOS; clear messages for anything unusable."""
    if source == FROM_START:
        return None
    if source == FROM_CHORALE:
        if not chorale:
            raise ValueError("Choose a held-out chorale to take the opening from.")
        return ch.chorale(chorale)
    if source == FROM_MIDI:
        if not midi_file:
            raise ValueError(f"Upload a four-part MIDI file to continue (or start from {FROM_START!r} or "
                             f"{FROM_CHORALE!r}).")
        return ch.read_midi(midi_file)
    raise ValueError(f"Unknown start {source!r}; choose {FROM_START!r}, {FROM_CHORALE!r} or {FROM_MIDI!r}.")


def ensemble(name: str) -> dict:
    if name not in ENSEMBLES:
        raise ValueError(f"Unknown ensemble {name!r}; choose from {', '.join(ENSEMBLES)}.")
    return dict(zip(ch.VOICES, ENSEMBLES[name]))


def audio_of(voices, bpm, instruments) -> tuple[tuple[int, np.ndarray], str, object]:
    if not 20 <= float(bpm) <= 300:
        raise ValueError(f"Tempo must be between 20 and 300 bpm; got {bpm}.")
    midi = ch.to_midi(voices, bpm=float(bpm), programs=ensemble(instruments))
    audio, engine = music.render(midi)
    return (music.SAMPLE_RATE, audio), engine, midi


@friendly
def generate(checkpoint=DEFAULT, start_from=FROM_START, chorale=None, seed_bars=2, bars=8,
             temperature=poly.TEMPERATURE, seed=0, tempo=80, instruments="Church organ", midi_file=None):
    """Stream the growing four-voice piano roll, then the sound, the scores beside Bach's, the tokens, the
    caption, the provenance record and the files (4-part MIDI, MusicXML, WAV, JSON). ``midi_file`` is
    needed only when continuing your own four-part MIDI file."""
    model, config, card = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    bars = whole(bars, "Bars to generate", 1, poly.MAX_BARS)
    seed_bars = whole(seed_bars, "Seed bars", 1, 8)
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"Temperature must be a number from 0 to 2; got {temperature!r}.") from None
    if not 0 <= temperature <= 2:
        raise ValueError(f"Temperature must be between 0 and 2; got {temperature}.")
    ensemble(instruments)
    if not 20 <= float(tempo) <= 300:
        raise ValueError(f"Tempo must be between 20 and 300 bpm; got {tempo}.")
    prompt = prompt_of(start_from, chorale, midi_file)
    prompt_steps = seed_bars * ch.BAR if prompt is not None else 0
    keep = gr.update()
    t0 = drawn = time.time()
    out = None
    for out in poly.sample(model, 1, seeded(seed), bars=bars, temperature=temperature, prompt=prompt,
                           prompt_bars=seed_bars):
        if time.time() - drawn > REDRAW_S:
            done = (out.steps - prompt_steps) // ch.BAR
            yield keep, voices_roll(out.voices[0], prompt_steps), keep, keep, f"bar {done}/{bars}…", keep, keep
            drawn = time.time()
    gen_s = max(time.time() - t0, 1e-3)
    voices, tokens = out.voices[0], out.tokens[0].numpy()
    new = [[n for n in line if n[0] >= prompt_steps] for line in voices]
    sound, engine, midi = audio_of(voices, tempo, instruments)
    controls = {"start_from": start_from, "chorale": chorale if start_from == FROM_CHORALE else None,
                "seed_bars": seed_bars if prompt is not None else 0, "bars": bars, "temperature": temperature,
                "tempo": float(tempo), "instruments": instruments, "tokenisation": config.tokenisation}
    if start_from == FROM_MIDI:
        controls.update(midi_file=Path(midi_file).name, midi_file_sha256=parts.file_hash(midi_file))
    record = parts.provenance("polyphony", checkpoint, seed, **controls)
    score = ch.to_score(voices, title=f"{checkpoint}, seed {seed}")
    files = export(f"{checkpoint}_seed{seed}", midi, record, sound[1], score,
                   {"voices": dict(zip(ch.VOICES, voices)), "tokens": tokens.tolist()})
    synth = ("FluidSynth, TimGM6mb soundfont" if engine == "fluidsynth"
             else "sine synthesis: FluidSynth is not installed")
    n_notes = sum(len(line) for line in new)
    caption = (f"{bars} bars, {n_notes} new notes in four voices from {len(tokens)} {config.tokenisation} tokens in "
               f"{gen_s:.1f} s ({len(tokens) / gen_s:.0f} tokens/s); {midi.get_end_time():.1f} s of music at "
               f"{float(tempo):g} bpm, {instruments} ({synth}). Seed {seed}, temperature {temperature:g}"
               + (f", continuing {seed_bars} bars of {chorale if start_from == FROM_CHORALE else Path(midi_file).name}"
                  if prompt is not None else ", from BOS") + ".")
    table = score_table(ch.score([new]), card, bars)
    yield (sound, voices_roll(voices, prompt_steps), table, token_text(tokens, config.tokenisation), caption, record,
           files)


@friendly
def show_tokens(chorale=None, tokenisation="grid", start_bar=1):
    """A held-out chorale in one tokenisation: its tokens from ``start_bar`` in words, how many it takes
    in each, and the round trip back to notes (it is exact)."""
    ch.check_tokenisation(tokenisation)
    if not chorale:
        raise ValueError("Choose a held-out chorale.")
    voices = ch.chorale(chorale)
    n_bars = -(-ch.length_of(voices) // ch.BAR)
    start_bar = whole(start_bar, "Start bar", 1, n_bars)
    tokens = poly.stream(voices, tokenisation)[0]
    grid, events = ch.to_grid(voices), ch.to_events(voices)
    back = ch.decode(tokens, tokenisation)
    if tokenisation == "grid":
        start = 1 + (start_bar - 1) * ch.BAR * ch.N_VOICES
    else:
        times = np.cumsum([0] + [t - ch.SHIFT0 + 1 if ch.SHIFT0 <= t < ch.OFF0 else 0 for t in tokens[:-1]])
        start = int(np.searchsorted(times, (start_bar - 1) * ch.BAR))
    note = (f"**{chorale}**: {n_bars} bars, {sum(len(line) for line in voices)} notes; **{len(grid)}** grid tokens "
            f"(64 a bar), **{len(events)}** event tokens. Detokenised, the {tokenisation} tokens give back "
            + ("exactly the same notes." if back == voices else "different notes (a bug: please report it)."))
    return token_text(tokens, tokenisation, start), note, voices_roll(voices, title=chorale)


@friendly
def choose_tokenisation(tokenisation: str, current: str):
    """The shipped checkpoint of a tokenisation (the dropdown keeps a checkpoint of your own if chosen)."""
    ch.check_tokenisation(tokenisation)
    return gr.update(value=CHECKPOINTS[tokenisation])


@friendly
def tokenisation_of(checkpoint: str):
    """The tokenisation radio follows the checkpoint chosen (yours too)."""
    return gr.update(value=loaded(checkpoint)[1].tokenisation)


@friendly
def describe_upload(path):
    """What the four-voice models would read from an uploaded MIDI file (or why they cannot)."""
    if not path:
        return gr.update(value=None, visible=False), ""
    voices = ch.read_midi(path)
    n = sum(len(line) for line in voices)
    return (gr.update(value=voices_roll(voices, title=f"four voices read from {Path(path).name}"), visible=True),
            f"{Path(path).name}: four voices, {n} notes, {ch.length_of(voices) / ch.BAR:g} bars.")


# --- layout ---

# --- training ---

def train_config(tokenisation, transpose, layers, *, steps, batch_size, lr):
    """The cpu preset (the shipped checkpoints' layout) with the chosen tokenisation and the Train settings."""
    if tokenisation not in ch.TOKENISATIONS:
        raise ValueError(f"Tokenisation must be one of {', '.join(ch.TOKENISATIONS)}; got {tokenisation!r}.")
    return poly.FAMILY.config("cpu", tokenisation=tokenisation, transpose=whole(transpose, "Transpose", 0, 11),
                              n_layers=whole(layers, "Layers", 1, 6), steps=steps, batch_size=batch_size, lr=lr)


def train_views():
    with gr.Column():
        return (gr.Image(label="Two bars from a fixed seed (the four voices in colour)", format="png",
                         interactive=False),
                gr.Audio(label="Hear them", type="numpy", interactive=False))


def train_preview(preview: dict):
    """The training preview (two bars from BOS, the same seed every time) as a piano roll and its sound:
    "Replay training" plays them in order, so the progress can be heard."""
    voices = preview["voices"]
    return voices_roll(voices, title="two bars from a fixed seed"), audio_of(voices, 80, "Church organ")[0]


def build(page: parts.Page):
    gr.Markdown("Four voices at once (Foster, *Generative Deep Learning* 2nd ed., ch. 11): a transformer reads "
                "the chorale as one token stream and writes soprano, alto, tenor and bass together. **Grid** tokens "
                "give each voice one token per sixteenth (a pitch, *hold* or *rest*); **event** tokens are note-on "
                "with its voice, note-off and time-shift, as MIDI is. The book describes both tokenisations but "
                "trains no polyphonic transformer and uses other data; these models train here on the four-part "
                "4/4 chorales of music21's corpus (every tenth held out).")
    header = parts.checkpoint_header(page, FAMILIES, DEFAULT, "chorales")
    ckpt = header.dropdown
    held_out = ch.held_out_names()
    with gr.Column():
        with gr.Accordion("Generate four voices", open=True):
            with gr.Row():
                kind = gr.Radio(list(ch.TOKENISATIONS), value="grid", label="Tokenisation (picks its checkpoint)")
                source = gr.Radio([FROM_START, FROM_CHORALE, FROM_MIDI], value=FROM_START, label="Start from")
                chorale = gr.Dropdown(held_out, value=default_chorale(), label="Held-out chorale")
                seed_bars = gr.Slider(1, 8, value=2, step=1, label="Seed bars")
            midi_in = gr.File(label="Your four-part MIDI file (one instrument per voice)",
                              file_types=list(MIDI_SUFFIXES), height=90, visible=False)
            midi_roll = gr.Image(label="Your MIDI file's four voices", format="png", interactive=False, visible=False)
            with gr.Row():
                bars = gr.Slider(1, poly.MAX_BARS, value=8, step=1, label="Bars to generate")
                temperature = gr.Slider(0.0, 2.0, value=poly.TEMPERATURE, step=0.05,
                                        label="Temperature (0 = most likely)")
                seed = widgets.seed_box()
            with gr.Row():
                bpm = gr.Slider(40, 200, value=80, step=1, label="Tempo (quarter notes per minute)")
                instruments = gr.Dropdown(list(ENSEMBLES), value="Church organ", label="Instruments")
                go = gr.Button("Generate", variant="primary", elem_id="chorales-generate")
                stop = gr.Button("Cancel", variant="stop")
            out = parts.output_panel("MIDI (four named parts, provenance in a text event), MusicXML (four parts), WAV "
                                     "and provenance JSON", file_count="multiple")
            audio = gr.Audio(label="Listen (all four voices)", type="numpy", interactive=False,
                             elem_id="chorales-audio")
            roll = gr.Image(label="Piano roll (soprano, alto, tenor, bass in colour)", format="png", interactive=False,
                            elem_id="chorales-roll")
            scores = gr.Markdown(label="Scores beside Bach's", elem_id="chorales-scores")
            tokens = gr.Textbox(label=f"The piece's first {SHOWN_TOKENS} tokens", lines=6, max_lines=12)
        with gr.Accordion("How a chorale becomes tokens", open=False):
            with gr.Row():
                t_chorale = gr.Dropdown(held_out, value=default_chorale(), label="Held-out chorale")
                t_kind = gr.Radio(list(ch.TOKENISATIONS), value="grid", label="Tokenisation")
                t_bar = gr.Number(value=1, precision=0, label="From bar")
                t_go = gr.Button("Show tokens")
            t_note = gr.Markdown(label="Token counts and round trip")
            t_text = gr.Textbox(label="Tokens", lines=8, max_lines=16)
            t_roll = gr.Image(label="The chorale's four voices", format="png", interactive=False)
        with parts.TrainPanel(header, "Train a four-voice transformer here on the chorales (the shipped models' "
                              "layout: 2 blocks, embedding 128). On one CPU core a step at batch 16 takes about "
                              "0.3–1 s; the shipped ones took 1,200 (grid) and 4,000 (events) steps. A sample of two "
                              "bars is kept every few steps: Replay training plays them in order.",
                              steps_default=300, batches=(8, 16, 32, 64), batch_default=16, run_name="my_chorales",
                              preview=train_views, elem_id="chorales-train") as train:
            tr_kind = gr.Radio(list(ch.TOKENISATIONS), value="grid", label="Tokenisation")
            tr_transpose = gr.Slider(0, 11, value=3, step=1, label="Transpose ± semitones (augmentation)")
            tr_layers = gr.Slider(1, 6, value=2, step=1, label="Transformer blocks")

    gen_inputs = [ckpt, source, chorale, seed_bars, bars, temperature, seed, bpm, instruments, midi_in]
    gen_outputs = [audio, roll, scores, tokens, *out.outputs]
    header.then(tokenisation_of, ckpt, kind).then(generate, gen_inputs, gen_outputs, show_progress_on=[out.caption])
    gen = page.action(go.click, generate, gen_inputs, gen_outputs, api_name="chorales_generate",
                      show_progress_on=[out.caption])
    stop.click(None, None, None, cancels=[gen], api_name=False)
    page.action(t_go.click, show_tokens, [t_chorale, t_kind, t_bar], [t_text, t_note, t_roll],
                api_name="chorales_tokens")
    kind.input(choose_tokenisation, [kind, ckpt], ckpt, api_name=False)
    source.change(lambda s: gr.update(visible=s == FROM_MIDI), source, midi_in, api_name=False)
    midi_in.change(describe_upload, midi_in, [midi_roll, out.caption], api_name=False)
    train.wire(page, train_config, [tr_kind, tr_transpose, tr_layers], ["loss", "accuracy"], render=train_preview,
               api_prefix="chorales", names=["tokenisation", "transpose", "layers"])
