"""The music tab: generate Bach-like melodies from START, from a chorale's opening or from your own
MIDI, hear them in the page, download MIDI / MusicXML / WAV, and see why each note was chosen (the
distribution it was drawn from, and which earlier notes the model attended to); MuseGAN's four
voices with one latent group re-rolled; and training on the chorales and your MIDI files with live
loss and a playable sample.

Handlers are plain functions of plain values (tested directly and exposed through the API);
``build()`` only lays them out and wires them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from models import FAMILIES as REGISTRY
from models.core.family import seeded
from models.music import musegan as mg, music_transformer as mt, notes as music
from studio import parts, widgets
from studio.widgets import friendly, whole

TITLE = "Music"
DATA_NOTE = ("**Data.** Foster's music transformer (2nd ed.) and attention RNN (1st ed.) learn Bach's cello "
             "suites, which ship in no installable package; the top line of the Bach chorales in music21's corpus "
             "stands in (MuseGAN's chorales are the book's own data).")
FAMILIES = ("music_transformer", "music_rnn")  # the transformer and the attention RNN share data, sampler and views
MODELS = {"Transformer": "music_transformer", "Attention RNN": "music_rnn"}
DEFAULT = "music_chorales"
FROM_START, FROM_CHORALE, FROM_MIDI = "START (nothing)", "A chorale's opening", "Your MIDI file"
MIDI_SUFFIXES = (".mid", ".midi")
MAX_UI_NOTES = 500
REDRAW_S = 1.0  # redraw the growing piano roll at most this often (after the last drawing ends)
HELD_OUT = "held-out"
FIRST_CHORALE = f"bach/bwv269 ({HELD_OUT})"  # the page's default seed phrase (the corpus' first chorale)
PREVIEW_SOUND = (90, "Church organ")  # tempo and instrument of the training preview


def family_of(name: str) -> str:
    return widgets.family_of(FAMILIES, name, "music")


def loaded(name: str):
    return widgets.load(family_of(name), name)


def token_label(p: int, d: int) -> str:
    return f"{music.pitch_name(p)} {music.duration_name(d)}"


# --- pictures ---

def piano_roll(pitch, duration, prompt_length: int = 0, title: str = "") -> np.ndarray:
    """Notes as bars over time (quarter notes) and pitch; the seed phrase grey, new notes blue.
    One PolyCollection and fixed axes keep it fast enough to redraw while a piece streams in."""
    t = 0.0
    bars, colours = [], []
    for i, (p, d) in enumerate(zip(np.asarray(pitch).tolist(), np.asarray(duration).tolist())):
        if p == music.START or d == music.START:
            continue
        q = d / music.STEPS_PER_QUARTER
        if p != music.REST:
            m = music.token_midi(p)
            bars.append([(t, m - 0.4), (t + q * 0.97, m - 0.4), (t + q * 0.97, m + 0.4), (t, m + 0.4)])
            colours.append("0.6" if i <= prompt_length else "C0")
        t += q
    fig = Figure(figsize=(9, 3.0), dpi=90)
    ax = fig.add_axes((0.07, 0.16, 0.91, 0.74))
    ax.add_collection(PolyCollection(bars, facecolors=colours, edgecolors="none"))
    ax.set_xlim(0, max(t, 1))
    ax.vlines(np.arange(0, t + 1, 4), 0, 128, color="0.85", lw=0.6, zorder=0)
    if bars:
        lo = int(min(b[0][1] for b in bars)) - 2
        hi = int(max(b[2][1] for b in bars)) + 2
        ax.set_ylim(lo, hi)
        ticks = [m for m in range(lo, hi + 1) if m % 12 in (0, 4, 7)]  # C, E and G of each octave
        ax.set_yticks(ticks, [music.pretty_midi.note_number_to_name(m) for m in ticks], fontsize=7)
    ax.set_xlabel("time (quarter notes; grey lines every 4 beats)")
    ax.set_ylabel("pitch")
    if prompt_length:
        title = (title + "  " if title else "") + "(grey: seed phrase, blue: generated)"
    if title:
        ax.set_title(title, fontsize=9)
    return widgets.figure_to_array(fig)


def probability_heatmaps(run: dict) -> np.ndarray:
    """Pitch × generated step and duration × generated step: the distribution each new note was
    drawn from (after temperature), the sampled token circled."""
    probs_p, probs_d = run["note_probs"], run["duration_probs"]  # (k, 90), (k, 33)
    start = 1 + run["prompt_length"]
    chosen_p, chosen_d = run["pitch"][start:], run["duration"][start:]
    k = len(chosen_p)
    rows_p = np.flatnonzero((probs_p.max(0) > 0.01) | np.isin(np.arange(music.N_PITCH), chosen_p))
    notes = rows_p[rows_p >= 2]
    rows_p = ([music.REST] if music.REST in rows_p else []) + list(range(notes.min(), notes.max() + 1)) \
        if len(notes) else list(rows_p)
    rows_d = list(np.flatnonzero((probs_d.max(0) > 0.01) | np.isin(np.arange(music.N_DURATION), chosen_d)))
    hp, hd = 0.11 * len(rows_p) + 0.3, 0.11 * max(4, len(rows_d)) + 0.3  # inches per panel
    height = hp + hd + 1.6
    fig = Figure(figsize=(9, height), dpi=90)  # fixed axes: no layout engine, quick to redraw
    top = fig.add_axes((0.09, (hd + 1.15) / height, 0.84, hp / height))
    bottom = fig.add_axes((0.09, 0.45 / height, 0.84, hd / height))
    for ax, probs, rows, chosen, name, namer in (
            (top, probs_p, rows_p, chosen_p, "pitch", music.pitch_name),
            (bottom, probs_d, rows_d, chosen_d, "duration (quarters)", music.duration_name)):
        im = ax.imshow(probs[:, rows].T, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=1,
                       interpolation="nearest")
        where = {r: i for i, r in enumerate(rows)}
        ax.scatter(np.arange(k), [where[c] for c in chosen], s=18, facecolors="none", edgecolors="cyan", lw=1)
        step = max(1, len(rows) // 24)
        ax.set_yticks(range(0, len(rows), step), [namer(r) for r in rows[::step]], fontsize=6)
        ax.set_ylabel(name)
    bottom.set_xlabel("generated note (step)")
    fig.colorbar(im, cax=fig.add_axes((0.945, 0.45 / height, 0.015, (height - 1.0) / height)), label="probability")
    top.set_title("What the model could have played at each step (circled: what was drawn)", fontsize=9)
    return widgets.figure_to_array(fig)


def attention_heatmap(run: dict, name: str, layer: int, head, shown: int = 32) -> tuple[np.ndarray, str]:
    """One layer's (and head's, or the heads' mean) attention over the last ``shown`` steps."""
    model, config, _ = loaded(name)
    if not 2 <= shown <= config.seq_len:
        raise ValueError(f"Steps shown must be from 2 to {config.seq_len}; got {shown}.")
    w, lo = mt.attention_map(model, config, run["pitch"], run["duration"], layer, head)
    n_heads = mt.attention_shape(config)[1]
    if head != "mean":
        which = f"layer {layer}, head {int(head)}"
    else:
        which = f"layer {layer}, mean of {n_heads} heads" if n_heads > 1 else "the RNN's attention layer"
    labels = [token_label(p, d) for p, d in zip(run["pitch"][lo:], run["duration"][lo:])]
    cut = max(0, len(labels) - shown)
    w, labels = w[cut:, cut:], labels[cut:]
    T = len(labels)
    size = min(11, 3 + 0.13 * T)
    fig = Figure(figsize=(size + 1.2, size), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(w, cmap="viridis", vmin=0, interpolation="nearest")
    font = 7 if T <= 40 else 5
    ax.set_xticks(range(T), labels, rotation=90, fontsize=font)
    # row t predicts the note after it: label rows by the note they chose
    nxt = labels[1:] + ["(next)"]
    ax.set_yticks(range(T), [f"→ {n}" for n in nxt], fontsize=font)
    ax.set_xlabel("earlier note attended to (pitch, duration in quarters)")
    ax.set_ylabel("note being chosen")
    ax.set_title(f"Attention, {which}" + (f" (last {T} steps; earlier columns not shown)" if lo + cut else ""),
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, label="weight")
    caption = ("Each row is one prediction: the note it produced (→) and how much weight it gave each earlier "
               f"note (columns). Over the model's whole window of {config.seq_len} notes each row sums to 1; "
               "a bright column is a note many later choices looked back at.")
    return widgets.figure_to_array(fig), caption


def note_list(run: dict) -> str:
    start = 1 + run["prompt_length"]
    seed = [token_label(p, d) for p, d in zip(run["pitch"][1:start], run["duration"][1:start])]
    new = [token_label(p, d) for p, d in zip(run["pitch"][start:], run["duration"][start:])]
    return ("seed: " + ", ".join(seed) + "\n\n" if seed else "") + "generated: " + ", ".join(new)


def audio_of(pitch, duration, bpm, instrument) -> tuple[tuple[int, np.ndarray], str, object]:
    if instrument not in music.INSTRUMENTS:
        raise ValueError(f"Unknown instrument {instrument!r}.")
    midi = music.to_midi(pitch, duration, bpm=float(bpm), program=music.INSTRUMENTS[instrument])
    audio, engine = music.render(midi)
    return (music.SAMPLE_RATE, audio), engine, midi


def export(stem: str, midi, record: dict, audio: np.ndarray, score=None, contents: dict | None = None) -> list[str]:
    """One output's files in a folder of their own (two visitors never share one): the MIDI with its
    provenance in a text meta event, MusicXML (for a score), WAV, and the provenance JSON beside them
    (with ``contents``: the notes)."""
    midi_path = widgets.export_path(f"{stem}.mid")
    music.embed_text(midi, json.dumps(record)).write(str(midi_path))
    files = [midi_path]
    if score is not None:
        files.append(Path(score.write("musicxml", fp=str(midi_path.with_suffix(".musicxml")))))
    files.append(music.write_wav(midi_path.with_suffix(".wav"), audio))
    json_path = midi_path.with_suffix(".json")
    json_path.write_text(json.dumps({**record, **(contents or {})}, indent=1))
    return [str(f) for f in (*files, json_path)]


# --- generation ---

def seed_phrase(source: str, chorale: str, midi_file, length) -> tuple | None:
    if source == FROM_START:
        return None
    length = whole(length, "Seed phrase length (notes)", 1, 64)
    if source == FROM_CHORALE:
        if not chorale:
            raise ValueError("Choose a chorale to take the seed phrase from.")
        p, d = music.chorale(chorale.split(" ")[0])
    elif source == FROM_MIDI:
        if not midi_file:
            raise ValueError(f"Upload a MIDI file to take the seed phrase from (or start from "
                             f"{FROM_START!r} or {FROM_CHORALE!r}).")
        p, d = music.read_midi(midi_file)
    else:
        raise ValueError(f"Unknown seed source {source!r}; choose {FROM_START!r}, {FROM_CHORALE!r} or {FROM_MIDI!r}.")
    return p[:length], d[:length]


@friendly
def generate(checkpoint, start_from=FROM_CHORALE, chorale=FIRST_CHORALE, seed_phrase_notes=8, notes=64,
             pitch_temperature=1.0, duration_temperature=0.7, seed=0, tempo=90, instrument="Church organ",
             midi_file=None):
    """Stream the growing piano roll, then the sound, the explanations, the caption, the provenance
    record and the files (MIDI, MusicXML, WAV, JSON). ``midi_file`` is needed only when starting
    from your MIDI file."""
    model, config, _ = loaded(checkpoint)
    seed = widgets.seed_of(seed)
    notes = whole(notes, "Number of notes", 1, MAX_UI_NOTES)
    if not 20 <= float(tempo) <= 300:
        raise ValueError(f"Tempo must be between 20 and 300 bpm; got {tempo}.")
    prompt = seed_phrase(start_from, chorale, midi_file, seed_phrase_notes)
    samples = mt.sample(model, 1, seeded(seed), notes=notes, note_temperature=float(pitch_temperature),
                        duration_temperature=float(duration_temperature), prompt=prompt)
    t0 = drawn = time.time()
    out = None
    keep = gr.update()
    for i, out in enumerate(samples):
        if time.time() - drawn > REDRAW_S:
            roll = piano_roll(out["pitch"][0], out["duration"][0], out["prompt_length"])
            drawn = time.time()
            yield keep, roll, keep, keep, f"note {i + 1}/{notes}…", keep, keep, keep
    gen_s = max(time.time() - t0, 1e-3)
    controls = {"start_from": start_from, "chorale": chorale if start_from == FROM_CHORALE else None,
                "seed_phrase_notes": len(prompt[0]) if prompt else 0, "notes": notes,
                "pitch_temperature": float(pitch_temperature), "duration_temperature": float(duration_temperature),
                "tempo": float(tempo), "instrument": instrument}
    if start_from == FROM_MIDI:
        controls.update(midi_file=Path(midi_file).name, midi_file_sha256=parts.file_hash(midi_file))
    run = {"name": checkpoint, "seed": seed, "pitch": out["pitch"][0].numpy(), "duration": out["duration"][0].numpy(),
           "note_probs": out["note_probs"][0].numpy(), "duration_probs": out["duration_probs"][0].numpy(),
           "prompt_length": out["prompt_length"]}
    sound, engine, midi = audio_of(run["pitch"], run["duration"], tempo, instrument)
    seconds = midi.get_end_time()
    record = parts.provenance(family_of(checkpoint), checkpoint, seed, **controls)
    score = music.to_stream(run["pitch"], run["duration"])
    files = export(f"{checkpoint}_seed{seed}", midi, record, sound[1], score,
                   {"notes": [token_label(p, d) for p, d in zip(run["pitch"][1:], run["duration"][1:])]})
    synth = ("FluidSynth, TimGM6mb soundfont" if engine == "fluidsynth"
             else "sine synthesis: FluidSynth is not installed")
    caption = (f"{notes} notes in {gen_s:.1f} s ({notes / gen_s:.0f} notes/s); {seconds:.1f} s of music at "
               f"{float(tempo):g} bpm, {instrument} ({synth}). Seed {seed}, pitch temperature "
               f"{float(pitch_temperature):g}, duration temperature {float(duration_temperature):g}"
               + (f", seed phrase: {len(prompt[0])} notes ({start_from.lower()})" if prompt else ", from START") + ".")
    roll = piano_roll(run["pitch"], run["duration"], run["prompt_length"])
    yield sound, roll, probability_heatmaps(run), note_list(run), caption, record, files, run


@friendly
def rerender(run, bpm, instrument):
    """Play the last piece at another tempo or on another instrument (same notes)."""
    if not run:
        raise ValueError("Generate a piece first.")
    sound, _, _ = audio_of(run["pitch"], run["duration"], bpm, instrument)
    return sound


@friendly
def show_attention(run, layer, head, shown=32):
    if not run:
        raise ValueError("Generate a piece first: the attention map explains the last piece.")
    return attention_heatmap(run, run["name"], int(layer), head, int(shown))


def book_temperatures() -> tuple[float, float]:
    """Foster 2nd ed. ch. 11's sampling temperatures for the pitch and duration sliders."""
    return float(mt.BOOK_SAMPLING["note_temperature"]), float(mt.BOOK_SAMPLING["duration_temperature"])


@friendly
def select_checkpoint(checkpoint: str):
    """The attention controls follow the checkpoint's layers, heads and window (the header shows its card)."""
    _, config, _ = loaded(checkpoint)
    n_layers, n_heads = mt.attention_shape(config)
    heads = ["mean"] + [str(h) for h in range(1, n_heads + 1)]
    return (gr.update(maximum=max(2, n_layers), value=n_layers, interactive=n_layers > 1),
            gr.update(choices=heads, value="mean"), gr.update(maximum=config.seq_len))


def chorale_choices() -> list[str]:
    return [f"{n} ({HELD_OUT})" if i % 10 == 0 else n for i, n in enumerate(music.chorale_names())]


@friendly
def describe_upload(path):
    """What the model would read from an uploaded MIDI file."""
    if not path:
        return gr.update(value=None, visible=False), ""
    p, d = music.read_midi(path)
    s = music.line_summary(p, d)
    return (gr.update(value=piano_roll(p, d, title=f"top line read from {Path(path).name}"), visible=True),
            f"{Path(path).name}: {s['notes']} notes and {s['rests']} rests, {s['quarters']:g} quarter notes.")


# --- MuseGAN: four voices at once ---

GAN_DEFAULT = "musegan_chorales"
ENSEMBLES = {  # General MIDI programs for soprano, alto, tenor, bass
    "Wind quartet": (73, 68, 71, 70), "String quartet": (40, 40, 41, 42), "Church organ": (19, 19, 19, 19),
    "Choir": (52, 52, 52, 52), "Piano": (0, 0, 0, 0)}
BARS = {"every bar": -1, "bar 1": 0, "bar 2": 1}
VOICE_COLOURS = ("C3", "C1", "C2", "C0")


def gan_roll_image(roll, title: str = "") -> np.ndarray:
    """One panel per voice (soprano on top): pitch against sixteenth steps, bar lines dashed."""
    roll = np.asarray(roll)
    fig = Figure(figsize=(9, 4.6), dpi=80)
    for k, name in enumerate(mg.TRACKS):
        ax = fig.add_axes((0.09, 0.73 - 0.205 * k, 0.89, 0.18))
        steps, pitches = np.nonzero(roll[k])
        midi = pitches + mg.LOWEST
        ax.barh(midi, 0.95, left=steps, height=0.8, color=VOICE_COLOURS[k], align="center")
        lo, hi = (int(midi.min()) - 2, int(midi.max()) + 2) if len(midi) else (60, 72)
        ax.set_ylim(lo, hi)
        ax.set_xlim(0, roll.shape[1])
        ax.axvline(mg.N_STEPS, color="0.5", lw=0.8, ls="--")
        ax.set_xticks(range(0, roll.shape[1] + 1, 4), [] if k < 3 else range(0, roll.shape[1] + 1, 4), fontsize=7)
        ticks = [lo + 1, hi - 1]
        ax.set_yticks(ticks, [music.pretty_midi.note_number_to_name(m) for m in ticks], fontsize=7)
        ax.set_ylabel(name, fontsize=8)
    fig.axes[-1].set_xlabel("sixteenth step (dashed: bar line)")
    if title:
        fig.axes[0].set_title(title, fontsize=9)
    return widgets.figure_to_array(fig)


def gan_audio(roll, bpm, ensemble):
    if ensemble not in ENSEMBLES:
        raise ValueError(f"Unknown ensemble {ensemble!r}; choose from {', '.join(ENSEMBLES)}.")
    midi = mg.to_midi(roll, bpm=float(bpm), programs=dict(zip(mg.TRACKS, ENSEMBLES[ensemble])))
    audio, engine = music.render(midi)
    return (music.SAMPLE_RATE, audio), engine, midi


def gan_draw(name, seed, **controls):
    model, _, _ = widgets.load("musegan", name)
    return next(mg.sample(model, 1, seeded(widgets.seed_of(seed)), **controls))[0].numpy()


@friendly
def musegan_generate(checkpoint, seed=0, tempo=80, instruments="Wind quartet"):
    """A 2-bar, 4-voice phrase from one seed: piano roll per voice, audio, caption, provenance record
    and files (4-track MIDI with the record in a text event, WAV, JSON)."""
    seed = widgets.seed_of(seed)
    roll = gan_draw(checkpoint, seed)
    sound, engine, midi = gan_audio(roll, tempo, instruments)
    caption = (f"Seed {seed}: 2 bars, 4 voices, {sum(len(i.notes) for i in midi.instruments)} notes at "
               f"{float(tempo):g} bpm, {instruments} ({engine}).")
    record = parts.provenance("musegan", checkpoint, seed, tempo=float(tempo), instruments=instruments)
    files = export(f"{checkpoint}_seed{seed}", midi, record, sound[1], contents={"voices": mg.voice_notes(roll)})
    return gan_roll_image(roll, f"seed {seed}"), sound, caption, record, files


@friendly
def musegan_reroll(checkpoint, seed=0, tempo=80, group="melody", voice="Soprano", bar="every bar", reroll_seed=1,
                   instruments="Wind quartet"):
    """A (the seed's phrase) and B (the same latents but one group drawn afresh from ``reroll_seed``)."""
    if voice not in mg.TRACKS:
        raise ValueError(f"Unknown voice {voice!r}; choose from {', '.join(mg.TRACKS)}.")
    if bar not in BARS:
        raise ValueError(f"Unknown bar {bar!r}; choose from {', '.join(BARS)}.")
    reroll_seed = widgets.seed_of(reroll_seed)
    a = gan_draw(checkpoint, seed)
    b = gan_draw(checkpoint, seed, group=group, track=mg.TRACKS.index(voice), bar=BARS[bar], reroll_seed=reroll_seed)
    scope = {"style": "the whole piece", "groove": f"the {voice}", "chords": f"{bar}, all voices",
             "melody": f"the {voice}, {bar}"}[group]
    changed = mg.changed_voices(a, b)
    note = (f"B re-draws the **{group}** latent for {scope} from seed {reroll_seed}; everything else is A's. "
            f"Voices that changed: {', '.join(changed) or 'none (the generator ignores this change)'}.")
    return (gan_roll_image(a, "A: the seed's phrase"), gan_roll_image(b, f"B: {group} re-rolled ({scope})"),
            gan_audio(a, tempo, instruments)[0], gan_audio(b, tempo, instruments)[0], note)


# --- training ---

def keep_uploads(files) -> tuple[str, ...]:
    """Check each training MIDI file and keep it under a name with its content hash, so a resumed run
    trains on the files it started with even after someone uploads another file of the same name."""
    kept = []
    for f in files or []:
        f = getattr(f, "name", f)
        music.read_midi(f)  # refuses non-MIDI / empty files with the file's name
        kept.append(str(parts.store_upload(f, MIDI_SUFFIXES, "music")))
    return tuple(kept)


def train_config(model, midi_files, transpose, layers, *, steps, batch_size, lr):
    """The cpu preset of the chosen model with the Train section's settings and the user's MIDI files."""
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; choose {' or '.join(MODELS)}.")
    family = REGISTRY[MODELS[model]]
    depth = {"n_layers": int(layers)} if family.name == "music_transformer" else {"lstm_layers": int(layers)}
    return family.config("cpu", transpose=int(transpose), midi_files=keep_uploads(midi_files), steps=steps,
                         batch_size=batch_size, lr=lr, **depth)


def train_preview_views():
    with gr.Column():
        return (gr.Image(label="Sample from a fixed seed", format="png", interactive=False),
                gr.Audio(label="Hear the sample", type="numpy", interactive=False))


def train_preview(preview: dict):
    """The training preview (a 48-note piece from START) as a piano roll and its sound."""
    roll = piano_roll(preview["pitch"], preview["duration"], title="sample from a fixed seed")
    return roll, audio_of(preview["pitch"], preview["duration"], *PREVIEW_SOUND)[0]


# --- layout ---

def build(page: parts.Page):
    gr.Markdown("A transformer (Foster, *Generative Deep Learning* 2nd ed., ch. 11) or an attention RNN (1st ed., "
                "ch. 7) writes melodies one (pitch, duration) pair at a time, trained on the top line of Bach's "
                "chorales. Each note is drawn from a distribution over 88 pitches and rest, each duration from one "
                "over sixteenth-note multiples; attention decides which earlier notes matter.")
    gr.Markdown(DATA_NOTE)
    header = parts.checkpoint_header(page, FAMILIES, DEFAULT, "music")
    ckpt = header.dropdown
    run = parts.visitor_state()
    chorales = chorale_choices()
    with gr.Column():
        with gr.Accordion("Generate and listen", open=True):
            with gr.Row():
                source = gr.Radio([FROM_START, FROM_CHORALE, FROM_MIDI], value=FROM_CHORALE, label="Start from")
                chorale = gr.Dropdown(chorales, value=FIRST_CHORALE if FIRST_CHORALE in chorales else None,
                                      label="Chorale (held-out ones were never trained on)")
                phrase = gr.Slider(1, 64, value=8, step=1, label="Seed phrase (notes)")
            seed_midi = gr.File(label="Your MIDI file (its opening is the seed phrase)", file_types=list(MIDI_SUFFIXES),
                                height=90, visible=False)
            seed_roll = gr.Image(label="Your MIDI file's top line", format="png", interactive=False, visible=False)
            with gr.Row():
                notes = gr.Slider(1, MAX_UI_NOTES, value=64, step=1, label="Notes to generate")
                t_pitch = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Pitch temperature (0 = most likely)")
                t_dur = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Duration temperature")
                book = gr.Button("Book settings (Foster ch. 11: τ {note_temperature:g} / {duration_temperature:g})"
                                 .format(**mt.BOOK_SAMPLING), size="sm", elem_id="music-book-temperatures")
                seed = widgets.seed_box()
            with gr.Row():
                bpm = gr.Slider(40, 200, value=90, step=1, label="Tempo (quarter notes per minute)")
                instrument = gr.Dropdown(list(music.INSTRUMENTS), value="Church organ", label="Instrument")
                go = gr.Button("Generate", variant="primary", elem_id="music-generate")
                stop = gr.Button("Cancel", variant="stop")
            out = parts.output_panel("MIDI (provenance in a text event), MusicXML (open it in MuseScore), WAV and "
                                     "provenance JSON", file_count="multiple")
            audio = gr.Audio(label="Listen", type="numpy", interactive=False, elem_id="music-audio")
            roll = gr.Image(label="Piano roll", format="png", interactive=False, elem_id="music-roll")
            listing = gr.Textbox(label="Notes (pitch, duration in quarter notes)", lines=4, max_lines=8)
        with gr.Accordion("Why each note: probabilities", open=True):
            gr.Markdown("Every generated note was drawn from the distribution in its column (bright = likely). "
                        "Low temperature sharpens the columns, high temperature flattens them.")
            heat = gr.Image(label="Pitch and duration distributions per step", format="png", interactive=False,
                            elem_id="music-probs")
        with gr.Accordion("Why each note: attention", open=True):
            with gr.Row():
                layer = gr.Slider(1, 3, value=3, step=1, label="Layer (block)")
                head = gr.Radio(["mean", "1", "2", "3", "4"], value="mean", label="Head")
                shown = gr.Slider(2, 64, value=32, step=1, label="Steps shown (the latest)")
            att_caption = gr.Markdown(label="How to read the attention map")
            att = gr.Image(label="Attention over the last window of notes", format="png", interactive=False,
                           elem_id="music-attention")
        with gr.Accordion("MuseGAN: four voices at once", open=True):
            gr.Markdown("MuseGAN (Foster ch. 11) writes 2 bars for soprano, alto, tenor and bass at once. Its generator "
                        "gets four kinds of random vector: **style** (one per piece), **groove** (one per voice), "
                        "**chords** (one per bar, shared by the voices) and **melody** (one per voice per bar). "
                        "Re-roll one of them and hear what it controls.")
            gan_header = parts.checkpoint_header(page, "musegan", GAN_DEFAULT, "musegan", label="MuseGAN checkpoint")
            with gr.Row():
                gan_seed = widgets.seed_box()
                gan_bpm = gr.Slider(40, 200, value=80, step=1, label="Tempo (bpm)")
                gan_ens = gr.Dropdown(list(ENSEMBLES), value="Wind quartet", label="Instruments")
                gan_go = gr.Button("Generate", variant="primary", elem_id="musegan-generate")
            with gr.Row():
                gan_roll = gr.Image(label="Piano roll per voice", format="png", interactive=False, scale=2)
                gan_audio_out = gr.Audio(label="Listen", type="numpy", interactive=False)
            gan_out = parts.output_panel("MIDI (4 tracks, provenance in a text event), WAV and provenance JSON",
                                         file_count="multiple")
            with gr.Row():
                rr_group = gr.Radio(list(mg.GROUPS), value="melody", label="Re-roll latent group")
                rr_voice = gr.Dropdown(list(mg.TRACKS), value="Soprano", label="Voice (groove, melody)")
                rr_bar = gr.Dropdown(list(BARS), value="every bar", label="Bar (chords, melody)")
                rr_seed = widgets.seed_box(1, label="Re-roll seed")
                rr_go = gr.Button("Re-roll: compare A and B")
            rr_note = gr.Markdown(label="What changed")
            with gr.Row():
                with gr.Column():
                    rr_a = gr.Image(label="A (before)", format="png", interactive=False)
                    rr_a_audio = gr.Audio(label="A", type="numpy", interactive=False)
                with gr.Column():
                    rr_b = gr.Image(label="B (after)", format="png", interactive=False)
                    rr_b_audio = gr.Audio(label="B", type="numpy", interactive=False)
        with parts.TrainPanel(header, "Train a music transformer or an attention RNN on the chorales' melodies, plus "
                              "any MIDI files you add (their top line is used). On one CPU core a step at batch 32 "
                              "takes about 0.4 s: 500 steps give scales and cadences, 3,000 give chorale-like "
                              "phrases. Cancel keeps the checkpoint; Resume continues it on the same data.",
                              steps_default=500, batches=(8, 16, 32, 64, 128), batch_default=32, run_name="my_music",
                              preview=train_preview_views, elem_id="music-train") as train:
            t_model = gr.Radio(list(MODELS), value="Transformer", label="Model")
            with gr.Column():
                t_files = gr.File([], label="MIDI files (optional; their top line is added to the chorales)",
                                  file_count="multiple", file_types=list(MIDI_SUFFIXES), height=90)
                upload_note = gr.Markdown(label="What the model reads from your file")
                upload_roll = gr.Image(label="Your MIDI file's top line", format="png", interactive=False,
                                       visible=False)
            t_transpose = gr.Slider(0, 11, value=5, step=1, label="Transpose ± semitones (augmentation)")
            t_layers = gr.Slider(1, 6, value=3, step=1, label="Layers (transformer blocks or LSTM layers)")

    gen_inputs = [ckpt, source, chorale, phrase, notes, t_pitch, t_dur, seed, bpm, instrument, seed_midi]
    gen_outputs = [audio, roll, heat, listing, *out.outputs, run]
    attention_view = ([run, layer, head, shown], [att, att_caption])
    # a new checkpoint (or the page's first load) sets the attention controls and plays a piece from it
    header.then(select_checkpoint, ckpt, [layer, head, shown]) \
        .then(generate, gen_inputs, gen_outputs, show_progress_on=[out.caption]) \
        .then(show_attention, *attention_view)
    gen = page.action(go.click, generate, gen_inputs, gen_outputs, api_name="music_generate",
                      show_progress_on=[out.caption])
    gen.then(show_attention, *attention_view, api_name=False)
    stop.click(None, None, None, cancels=[gen], api_name=False)
    book.click(book_temperatures, None, [t_pitch, t_dur], api_name=False)
    for c in (bpm, instrument):
        c.input(rerender, [run, bpm, instrument], audio, api_name=False)
    for c in (layer, head, shown):
        c.change(show_attention, *attention_view, api_name=False, show_progress="hidden")
    source.change(lambda s: gr.update(visible=s == FROM_MIDI), source, seed_midi, api_name=False)
    seed_midi.change(describe_upload, seed_midi, [seed_roll, out.caption], api_name=False)
    t_files.change(lambda fs: describe_upload(fs[-1] if fs else None), t_files, [upload_roll, upload_note],
                   api_name=False)

    gan_in = [gan_header.dropdown, gan_seed, gan_bpm, gan_ens]
    gan_outputs = [gan_roll, gan_audio_out, *gan_out.outputs]
    gan_header.then(musegan_generate, gan_in, gan_outputs, show_progress_on=[gan_out.caption])
    page.action(gan_go.click, musegan_generate, gan_in, gan_outputs, api_name="musegan_generate",
                show_progress_on=[gan_out.caption])
    page.action(rr_go.click, musegan_reroll,
                [gan_header.dropdown, gan_seed, gan_bpm, rr_group, rr_voice, rr_bar, rr_seed, gan_ens],
                [rr_a, rr_b, rr_a_audio, rr_b_audio, rr_note], api_name="musegan_reroll", show_progress_on=[rr_note])
    train.wire(page, train_config, [t_model, t_files, t_transpose, t_layers], ["note_loss", "duration_loss"],
               render=train_preview, api_prefix="music", names=["model", "midi_files", "transpose", "layers"])
