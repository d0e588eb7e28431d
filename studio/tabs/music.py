"""The music tab: generate Bach-like melodies from START, from a chorale's opening or from your own
MIDI, hear them in the page, download MIDI / MusicXML / WAV, and see why each note was chosen (the
distribution it was drawn from, and which earlier notes the model attended to); plus training on
the chorales and your MIDI files with live loss and a playable sample."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import gradio as gr
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from models.core import checkpoint
from models.music import musegan as mg, music_rnn, music_transformer as mt, notes as music
from models.core.family import seeded
from models.core.train import RUNS
from studio import widgets
from studio.jobs import JOBS, stream
from studio.widgets import friendly

TITLE = "Music"
FAMILIES = ("music_transformer", "music_rnn")  # the transformer and the attention RNN share data, sampler and views
MODELS = {"Transformer": "music_transformer", "Attention RNN": "music_rnn"}
DEFAULT = "music_chorales"
FROM_START, FROM_CHORALE, FROM_MIDI = "START (nothing)", "A chorale's opening", "Your MIDI file"
UPLOADS = RUNS / "music_midi"  # the user's training MIDI files, kept so runs can be resumed
MAX_UI_NOTES = 500
REDRAW_S = 1.0  # redraw the growing piano roll at most this often (after the last drawing ends)
HELD_OUT = "held-out"


def family_of(name: str) -> str:
    for family in FAMILIES:
        if name in widgets.checkpoint_paths(family):
            return family
    raise ValueError(f"No music checkpoint named {name!r}." if name else "Choose a checkpoint first.")


def loaded(name: str):
    return widgets.load(family_of(name), name)


def all_choices() -> list[tuple[str, str]]:
    return [c for family in FAMILIES for c in widgets.checkpoint_choices(family)]


def attention_shape(config) -> tuple[int, int]:
    """(layers, heads) of attention maps: the transformer's blocks and heads; the RNN has one of each."""
    return (config.n_layers, config.n_heads) if isinstance(config, mt.MusicConfig) else (1, 1)


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
    n_layers, n_heads = attention_shape(config)
    if not 1 <= layer <= n_layers:
        raise ValueError(f"Layer must be from 1 to {n_layers}; got {layer}.")
    weights, lo = mt.attention(model, run["pitch"], run["duration"])  # (L, H, T, T)
    if head == "mean":
        w = weights[layer - 1].mean(0)
        which = f"layer {layer}, mean of {n_heads} heads" if n_heads > 1 else "the RNN's attention layer"
    else:
        if not 1 <= int(head) <= n_heads:
            raise ValueError(f"Head must be from 1 to {n_heads}; got {head}.")
        w = weights[layer - 1, int(head) - 1]
        which = f"layer {layer}, head {int(head)}"
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


# --- generation ---


def seed_phrase(source: str, chorale: str, midi_file, length) -> tuple | None:
    if source == FROM_START:
        return None
    length = int(length)
    if not 1 <= length <= 64:
        raise ValueError(f"Seed phrase length must be from 1 to 64 notes; got {length}.")
    if source == FROM_CHORALE:
        p, d = music.chorale((chorale or "").split(" ")[0])
    elif source == FROM_MIDI:
        if not midi_file:
            raise ValueError("Upload a MIDI file to take the seed phrase from.")
        p, d = music.read_midi(midi_file)
    else:
        raise ValueError(f"Unknown seed source {source!r}.")
    return p[:length], d[:length]


@friendly
def generate(name, source, chorale, midi_file, phrase_len, notes, t_pitch, t_duration, seed, bpm, instrument):
    """Stream the growing piano roll, then sound, files and the explanations."""
    model, config, _ = loaded(name)
    seed = widgets.seed_of(seed)
    notes = int(notes)
    if not 1 <= notes <= MAX_UI_NOTES:
        raise ValueError(f"Number of notes must be from 1 to {MAX_UI_NOTES}; got {notes}.")
    if not 20 <= float(bpm) <= 300:
        raise ValueError(f"Tempo must be between 20 and 300 bpm; got {bpm}.")
    prompt = seed_phrase(source, chorale, midi_file, phrase_len)
    samples = mt.sample(model, 1, seeded(seed), notes=notes, note_temperature=float(t_pitch),
                        duration_temperature=float(t_duration), prompt=prompt)
    t0 = drawn = time.time()
    out = None
    for i, out in enumerate(samples):
        if time.time() - drawn > REDRAW_S:
            roll = piano_roll(out["pitch"][0], out["duration"][0], out["prompt_length"])
            drawn = time.time()
            yield gr.update(), gr.update(), roll, f"note {i + 1}/{notes}…", gr.update(), gr.update(), gr.update()
    gen_s = time.time() - t0
    run = {"name": name, "seed": seed, "pitch": out["pitch"][0].numpy(), "duration": out["duration"][0].numpy(),
           "note_probs": out["note_probs"][0].numpy(), "duration_probs": out["duration_probs"][0].numpy(),
           "prompt_length": out["prompt_length"], "bpm": float(bpm), "instrument": instrument,
           "controls": {"source": source, "chorale": chorale if source == FROM_CHORALE else None, "notes": notes,
                        "pitch_temperature": float(t_pitch), "duration_temperature": float(t_duration)}}
    sound, engine, midi = audio_of(run["pitch"], run["duration"], bpm, instrument)
    stem = f"{name}_seed{seed}"
    widgets.EXPORTS.mkdir(parents=True, exist_ok=True)
    midi_path = widgets.EXPORTS / f"{stem}.mid"
    midi.write(str(midi_path))
    xml_path = music.to_stream(run["pitch"], run["duration"]).write("musicxml",
                                                                    fp=str(widgets.EXPORTS / f"{stem}.musicxml"))
    json_path = widgets.EXPORTS / f"{stem}.json"  # provenance: what made this piece, and its tokens
    json_path.write_text(json.dumps({"checkpoint": name, "family": family_of(name), "seed": seed, **run["controls"],
                                     "bpm": float(bpm), "instrument": instrument,
                                     "seed_phrase_notes": run["prompt_length"],
                                     "notes": [token_label(p, d) for p, d in zip(run["pitch"][1:], run["duration"][1:])]},
                                    indent=1))
    seconds = midi.get_end_time()
    gen_s = max(gen_s, 1e-3)
    status = (f"{notes} notes in {gen_s:.1f} s ({notes / gen_s:.0f} notes/s); {seconds:.1f} s of music at "
              f"{float(bpm):g} bpm, {instrument} ({'FluidSynth, TimGM6mb soundfont' if engine == 'fluidsynth' else 'sine synthesis: FluidSynth is not installed'}). "
              f"Seed {seed}, pitch temperature {float(t_pitch):g}, duration temperature {float(t_duration):g}"
              + (f", seed phrase: {len(prompt[0])} notes ({source.lower()})" if prompt else ", from START") + ".")
    roll = piano_roll(run["pitch"], run["duration"], run["prompt_length"])
    yield (sound, [str(midi_path), str(xml_path), str(json_path)], roll, status, run, probability_heatmaps(run), note_list(run))


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


@friendly
def select_checkpoint(name: str):
    if not name:
        return "No music checkpoint yet: train one below.", gr.update(), gr.update(), gr.update()
    _, config, card = loaded(name)
    n_layers, n_heads = attention_shape(config)
    heads = ["mean"] + [str(h) for h in range(1, n_heads + 1)]
    return (card_text(card), gr.update(maximum=max(2, n_layers), value=n_layers, interactive=n_layers > 1),
            gr.update(choices=heads, value="mean"), gr.update(maximum=config.seq_len))


def card_text(card: dict) -> str:
    """The checkpoint's provenance and its held-out losses for pitch and duration."""
    if "error" in card:
        return f"**{card['name']}**: {card['error']}"
    cfg, m = card.get("config", {}), card.get("metrics", {})
    lines = [f"**{card.get('name')}**: {card.get('data', {}).get('title', 'Bach chorales')}; {card.get('steps')} steps"
             + (f" ({card['epochs']} epochs)" if card.get("epochs") else "")
             + (f", {card['wall_time_s']:.0f} s" if card.get("wall_time_s") is not None else "")
             + (f" on {card['hardware']}" if card.get("hardware") else "")]
    if cfg:
        shape = (f"transformer: {cfg['n_layers']} blocks × {cfg['n_heads']} heads, embedding {cfg['d_model']}"
                 if "n_heads" in cfg else f"attention RNN: {cfg['lstm_layers']} LSTM layers × {cfg['hidden']} units")
        lines.append(f"{shape}, window {cfg['seq_len']} notes, transposed ±{cfg['transpose']}"
                     + (f", plus {len(cfg['midi_files'])} of your MIDI files" if cfg.get("midi_files") else ""))
    if "note_loss" in m:
        lines.append(f"Held-out chorales: pitch loss **{m['note_loss']:.2f} nats** (perplexity "
                     f"{m['note_perplexity']:.1f}, next pitch right {m['note_accuracy']:.0%}), duration loss "
                     f"**{m['duration_loss']:.2f} nats** (right {m['duration_accuracy']:.0%}). Untrained: about "
                     "4.5 and 3.5; the plain frequencies of pitches and durations: 2.9 and 1.2.")
    if card.get("command"):
        lines.append(f"Reproduce: `{card['command']}`")
    elif "metrics" not in card:
        lines.append("No card yet: this run was interrupted before it finished (resume it in Train).")
    return "  \n".join(lines)


def chorale_choices() -> list[str]:
    return [f"{n} ({HELD_OUT})" if i % 10 == 0 else n for i, n in enumerate(music.chorale_names())]


@friendly
def describe_upload(path):
    """What the model would read from an uploaded MIDI file."""
    if not path:
        return gr.update(value=None, visible=False), ""
    p, d = music.read_midi(path)
    n = int((p >= 2).sum())
    return (gr.update(value=piano_roll(p, d, title=f"top line read from {Path(path).name}"), visible=True),
            f"{Path(path).name}: {n} notes and {int((p == music.REST).sum())} rests, {d.sum() / 4:g} quarter notes.")


# --- MuseGAN: four voices at once ---

GAN_DEFAULT = "musegan_chorales"
ENSEMBLES = {  # General MIDI programs for soprano, alto, tenor, bass
    "Wind quartet": (73, 68, 71, 70), "String quartet": (40, 40, 41, 42), "Church organ": (19, 19, 19, 19),
    "Choir": (52, 52, 52, 52), "Piano": (0, 0, 0, 0)}
BARS = {"every bar": -1, "bar 1": 0, "bar 2": 1}
VOICE_COLOURS = ("C3", "C1", "C2", "C0")


def gan_choices() -> list[tuple[str, str]]:
    return widgets.checkpoint_choices("musegan")


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
        ax.set_yticks(ticks, [pretty_midi_name(m) for m in ticks], fontsize=7)
        ax.set_ylabel(name, fontsize=8)
    fig.axes[-1].set_xlabel("sixteenth step (dashed: bar line)")
    if title:
        fig.axes[0].set_title(title, fontsize=9)
    return widgets.figure_to_array(fig)


def pretty_midi_name(m: int) -> str:
    return music.pretty_midi.note_number_to_name(int(m))


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
def musegan_generate(name, seed, bpm, ensemble="Wind quartet"):
    """A 2-bar, 4-voice phrase from one seed: piano roll per voice, audio and a MIDI file."""
    roll = gan_draw(name, seed)
    sound, engine, midi = gan_audio(roll, bpm, ensemble)
    widgets.EXPORTS.mkdir(parents=True, exist_ok=True)
    path = widgets.EXPORTS / f"{name}_seed{int(seed)}.mid"
    midi.write(str(path))
    prov = path.with_suffix(".json")  # provenance: what made this phrase, and its notes per voice
    prov.write_text(json.dumps({"checkpoint": name, "family": "musegan", "seed": int(seed), "bpm": float(bpm),
                                "ensemble": ensemble, "voices": {v: [pretty_midi_name(p + mg.LOWEST) for p in
                                                                     roll[k].argmax(1).tolist()]
                                                                 for k, v in enumerate(mg.TRACKS)}}, indent=1))
    status = (f"Seed {int(seed)}: 2 bars, 4 voices, {sum(len(i.notes) for i in midi.instruments)} notes at "
              f"{float(bpm):g} bpm, {ensemble} ({engine}).")
    return gan_roll_image(roll, f"seed {int(seed)}"), sound, [str(path), str(prov)], status


@friendly
def musegan_card(name) -> str:
    """The MuseGAN checkpoint's provenance and held-out figures."""
    if not name:
        return "No MuseGAN checkpoint yet: train one with `python -m models.train musegan`."
    card = widgets.load("musegan", name)[2]
    text = widgets.card_markdown(card).replace(", , ", ", ")  # no latent or schedule to describe
    m = card.get("metrics", {})
    if "in_key_samples" in m:
        text += (f"  \nSamples: {m['in_key_samples']:.0%} of steps in the best-fitting key (Bach's held-out "
                 f"phrases: {m['in_key_bach']:.0%}); each voice changes pitch {m['voice_changes_per_bar_samples']:g} "
                 f"times a bar (Bach: {m['voice_changes_per_bar_bach']:g}). Critic's Wasserstein estimate, held-out "
                 f"Bach vs samples: {m['wasserstein_held_out']:g}.")
    return text


@friendly
def musegan_reroll(name, seed, bpm, group, voice, bar, reroll_seed, ensemble="Wind quartet"):
    """A (the seed's phrase) and B (the same latents but one group drawn afresh from ``reroll_seed``)."""
    if voice not in mg.TRACKS:
        raise ValueError(f"Unknown voice {voice!r}; choose from {', '.join(mg.TRACKS)}.")
    if bar not in BARS:
        raise ValueError(f"Unknown bar {bar!r}; choose from {', '.join(BARS)}.")
    a = gan_draw(name, seed)
    b = gan_draw(name, seed, group=group, track=mg.TRACKS.index(voice), bar=BARS[bar],
                 reroll_seed=widgets.seed_of(reroll_seed))
    scope = {"style": "the whole piece", "groove": f"the {voice}", "chords": f"{bar}, all voices",
             "melody": f"the {voice}, {bar}"}[group]
    changed = [v for k, v in enumerate(mg.TRACKS) if not np.array_equal(a[k], b[k])]
    note = (f"B re-draws the **{group}** latent for {scope} from seed {int(reroll_seed)}; everything else is A's. "
            f"Voices that changed: {', '.join(changed) or 'none (the generator ignores this change)'}.")
    return (gan_roll_image(a, "A: the seed's phrase"), gan_roll_image(b, f"B: {group} re-rolled ({scope})"),
            gan_audio(a, bpm, ensemble)[0], gan_audio(b, bpm, ensemble)[0], note)


# --- training ---

def keep_uploads(files) -> tuple[str, ...]:
    """Check each training MIDI file and keep a copy beside the user's runs (for resuming)."""
    kept = []
    for f in files or []:
        f = getattr(f, "name", f)
        music.read_midi(f)  # refuses non-MIDI / empty files with the file's name
        UPLOADS.mkdir(parents=True, exist_ok=True)
        dest = UPLOADS / Path(f).name
        shutil.copyfile(f, dest)
        kept.append(str(dest))
    return tuple(kept)


def _train_stream(job, current, bpm=90, instrument="Church organ"):
    latest = {}

    def render(preview):
        latest["preview"] = preview
        return piano_roll(preview["pitch"], preview["duration"], title="sample from a fixed seed")

    played = None
    for status, curves, roll, choices in stream(job, job.family, ["note_loss", "duration_loss"], current, render):
        if isinstance(choices, dict) and "choices" in choices:  # the end: list both families' checkpoints
            choices = gr.update(choices=all_choices(), value=current)
        sound = gr.update()
        if latest.get("preview") is not None and latest["preview"] is not played:
            played = latest["preview"]
            sound = audio_of(played["pitch"], played["duration"], bpm, instrument)[0]
        yield status, curves, roll, sound, choices


@friendly
def train_start(model, transpose, files, steps, batch, lr, layers, run_name, current):
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; choose {' or '.join(MODELS)}.")
    family = MODELS[model]
    fam = mt.FAMILY if family == "music_transformer" else music_rnn.FAMILY
    depth = {"n_layers": int(layers)} if family == "music_transformer" else {"lstm_layers": int(layers)}
    config = fam.config("cpu", transpose=int(transpose), midi_files=keep_uploads(files), steps=int(steps),
                        batch_size=int(batch), lr=float(lr), **depth)
    job = JOBS.start(family, (run_name or "").strip(), config)
    yield from _train_stream(job, current)


@friendly
def train_resume(run_name, steps, current):
    path = widgets.USER_CHECKPOINTS / f"{(run_name or '').strip()}.safetensors"
    family = checkpoint.read_meta(path)["family"] if path.exists() else "music_transformer"  # resume() explains a missing run
    job = JOBS.resume(family, run_name, steps)
    yield from _train_stream(job, current)


# --- layout ---

def build(page):
    demo = page.demo
    choices = all_choices()
    names = [v for _, v in choices]
    default = DEFAULT if DEFAULT in names else (names[0] if names else None)
    gr.Markdown("A transformer (Foster, *Generative Deep Learning* 2nd ed., ch. 11) or an attention RNN (1st ed., "
                "ch. 7) writes melodies one (pitch, duration) pair at a time, trained on the top line of Bach's "
                "chorales. Each note is drawn from a distribution over 88 pitches and rest, each duration from one "
                "over sixteenth-note multiples; attention decides which earlier notes matter.")
    with gr.Row():
        ckpt = gr.Dropdown(choices, value=default, label="Checkpoint", scale=2, elem_id="music-checkpoint")
        card = gr.Markdown()
    run = gr.State(None)
    chorales = chorale_choices()
    with gr.Column():
        with gr.Accordion("Generate and listen", open=True):
            with gr.Row():
                source = gr.Radio([FROM_START, FROM_CHORALE, FROM_MIDI], value=FROM_CHORALE, label="Start from")
                chorale = gr.Dropdown(chorales, value=chorales[0] if chorales else None,
                                      label="Chorale (held-out ones were never trained on)")
                phrase = gr.Slider(1, 64, value=8, step=1, label="Seed phrase (notes)")
            seed_midi = gr.File(label="Your MIDI file (its opening is the seed phrase)", file_types=[".mid", ".midi"],
                                height=90, visible=False)
            seed_roll = gr.Image(label="Your MIDI file's top line", format="png", interactive=False, visible=False)
            with gr.Row():
                notes = gr.Slider(1, MAX_UI_NOTES, value=64, step=1, label="Notes to generate")
                t_pitch = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Pitch temperature (0 = most likely)")
                t_dur = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Duration temperature")
                seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Row():
                bpm = gr.Slider(40, 200, value=90, step=1, label="Tempo (quarter notes per minute)")
                instrument = gr.Dropdown(list(music.INSTRUMENTS), value="Church organ", label="Instrument")
                go = gr.Button("Generate", variant="primary", elem_id="music-generate")
                stop = gr.Button("Cancel", variant="stop")
            status = gr.Markdown(elem_id="music-status")
            audio = gr.Audio(label="Listen (WAV download in the player)", type="numpy", interactive=False,
                             elem_id="music-audio")
            roll = gr.Image(label="Piano roll", format="png", interactive=False, elem_id="music-roll")
            with gr.Row():
                files = gr.File(label="MIDI, MusicXML (open it in MuseScore for a score) and provenance JSON",
                                file_count="multiple", height=110)
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
            att_caption = gr.Markdown()
            att = gr.Image(label="Attention over the last window of notes", format="png", interactive=False,
                           elem_id="music-attention")
        with gr.Accordion("MuseGAN: four voices at once", open=True):
            gr.Markdown("MuseGAN (Foster ch. 11) writes 2 bars for soprano, alto, tenor and bass at once. Its generator "
                        "gets four kinds of random vector: **style** (one per piece), **groove** (one per voice), "
                        "**chords** (one per bar, shared by the voices) and **melody** (one per voice per bar). "
                        "Re-roll one of them and hear what it controls.")
            gan_names = [v for _, v in gan_choices()]
            with gr.Row():
                gan_ckpt = gr.Dropdown(gan_choices(), value=GAN_DEFAULT if GAN_DEFAULT in gan_names else
                                       (gan_names[0] if gan_names else None), label="MuseGAN checkpoint", scale=2)
                gan_seed = gr.Number(value=0, precision=0, label="Seed")
                gan_bpm = gr.Slider(40, 200, value=80, step=1, label="Tempo (bpm)")
                gan_ens = gr.Dropdown(list(ENSEMBLES), value="Wind quartet", label="Instruments")
                gan_go = gr.Button("Generate", variant="primary", elem_id="musegan-generate")
            gan_card = gr.Markdown()
            gan_status = gr.Markdown(elem_id="musegan-status")
            with gr.Row():
                gan_roll = gr.Image(label="Piano roll per voice", format="png", interactive=False, scale=2)
                with gr.Column():
                    gan_audio_out = gr.Audio(label="Listen", type="numpy", interactive=False)
                    gan_file = gr.File(label="MIDI (4 tracks) and provenance JSON", file_count="multiple",
                                       height=110)
            with gr.Row():
                rr_group = gr.Radio(list(mg.GROUPS), value="melody", label="Re-roll latent group")
                rr_voice = gr.Dropdown(list(mg.TRACKS), value="Soprano", label="Voice (groove, melody)")
                rr_bar = gr.Dropdown(list(BARS), value="every bar", label="Bar (chords, melody)")
                rr_seed = gr.Number(value=1, precision=0, label="Re-roll seed")
                rr_go = gr.Button("Re-roll: compare A and B")
            rr_note = gr.Markdown()
            with gr.Row():
                with gr.Column():
                    rr_a = gr.Image(label="A (before)", format="png", interactive=False)
                    rr_a_audio = gr.Audio(label="A", type="numpy", interactive=False)
                with gr.Column():
                    rr_b = gr.Image(label="B (after)", format="png", interactive=False)
                    rr_b_audio = gr.Audio(label="B", type="numpy", interactive=False)
        with gr.Accordion("Train", open=True):
            gr.Markdown("Train a music transformer or an attention RNN on the chorales' melodies, plus any MIDI "
                        "files you add (their top line is used). On one CPU core a step at batch 32 takes about "
                        "0.4 s: 500 steps give scales and cadences, 3,000 give chorale-like phrases. Cancel keeps "
                        "the checkpoint; Resume continues it.")
            with gr.Row():
                t_model = gr.Radio(list(MODELS), value="Transformer", label="Model")
                t_files = gr.File(label="Your MIDI files (optional)", file_count="multiple",
                                  file_types=[".mid", ".midi"], height=90)
                t_transpose = gr.Slider(0, 11, value=5, step=1, label="Transpose ± semitones (augmentation)")
                t_layers = gr.Slider(1, 6, value=3, step=1, label="Layers (transformer blocks or LSTM layers)")
                t_steps = gr.Slider(10, 20000, value=500, step=10, label="Steps")
            with gr.Row():
                t_batch = gr.Dropdown([8, 16, 32, 64, 128], value=32, label="Batch size")
                t_lr = gr.Number(value=1e-3, label="Learning rate")
                t_name = gr.Textbox(value="my_music", label="Run name")
                t_start = gr.Button("Start", variant="primary")
                t_resume = gr.Button("Resume")
                t_cancel = gr.Button("Cancel", variant="stop")
            upload_note = gr.Markdown()
            t_status = gr.Markdown()
            with gr.Row():
                t_curves = gr.Plot(show_label=False)
                with gr.Column():
                    t_roll = gr.Image(label="Sample from a fixed seed", format="png", interactive=False)
                    t_audio = gr.Audio(label="Hear the sample", type="numpy", interactive=False)
            upload_roll = gr.Image(label="Your MIDI file's top line", format="png", interactive=False, visible=False)

    for event in (ckpt.change, demo.load):
        event(select_checkpoint, ckpt, [card, layer, head, shown], api_name=False)
    gen_inputs = [ckpt, source, chorale, seed_midi, phrase, notes, t_pitch, t_dur, seed, bpm, instrument]
    gen_outputs = [audio, files, roll, status, run, heat, listing]
    gen = go.click(generate, gen_inputs, gen_outputs, show_progress_on=[status], api_name="generate")
    gen.then(show_attention, [run, layer, head, shown], [att, att_caption], api_name=False)
    if default:  # a piece to hear and explain as soon as the page opens
        demo.load(generate, gen_inputs, gen_outputs, show_progress_on=[status], api_name=False).then(
            show_attention, [run, layer, head, shown], [att, att_caption], api_name=False)
    stop.click(None, None, None, cancels=[gen])
    for c in (bpm, instrument):
        c.input(rerender, [run, bpm, instrument], audio, api_name=False)
    for c in (layer, head, shown):
        c.change(show_attention, [run, layer, head, shown], [att, att_caption], api_name=False,
                 show_progress="hidden")
    source.change(lambda s: gr.update(visible=s == FROM_MIDI), source, seed_midi, api_name=False)
    seed_midi.change(describe_upload, seed_midi, [seed_roll, status], api_name=False)
    t_files.change(lambda fs: describe_upload(fs[-1] if fs else None), t_files, [upload_roll, upload_note],
                   api_name=False)
    t_start.click(train_start, [t_model, t_transpose, t_files, t_steps, t_batch, t_lr, t_layers, t_name, ckpt],
                  [t_status, t_curves, t_roll, t_audio, ckpt], show_progress_on=[t_status], api_name=False)
    t_resume.click(train_resume, [t_name, t_steps, ckpt], [t_status, t_curves, t_roll, t_audio, ckpt],
                   show_progress_on=[t_status], api_name=False)
    t_cancel.click(JOBS.cancel, None, t_status, api_name=False)
    for event in (gan_ckpt.change, demo.load):
        event(musegan_card, gan_ckpt, gan_card, api_name=False)
    gan_in, gan_out = [gan_ckpt, gan_seed, gan_bpm, gan_ens], [gan_roll, gan_audio_out, gan_file, gan_status]
    gan_go.click(musegan_generate, gan_in, gan_out, show_progress_on=[gan_status], api_name="musegan_generate")
    if gan_names:  # a phrase to hear as soon as the page opens
        demo.load(musegan_generate, gan_in, gan_out, show_progress_on=[gan_status], api_name=False)
    rr_go.click(musegan_reroll, [gan_ckpt, gan_seed, gan_bpm, rr_group, rr_voice, rr_bar, rr_seed, gan_ens],
                [rr_a, rr_b, rr_a_audio, rr_b_audio, rr_note], show_progress_on=[rr_note], api_name="musegan_reroll")
