"""Music as tokens: Bach chorales and MIDI files in, MIDI and audio out.

A piece becomes a sequence of (pitch, duration) token pairs, as in Foster's *Generative Deep
Learning* (2nd ed., ch. 11): every part is laid over the others and at each moment the **top note**
sounds (the "skyline", Foster's chord-as-its-top-note); a higher note held while lower voices move
carries on rather than being re-struck, so a chorale reads as its soprano melody. Silence is a
``REST`` token with its own duration, and each piece starts with a ``START`` pair.

Vocabularies (fixed, so uploaded MIDI and the chorales share them and transposing is adding):

* pitch: ``START`` = 0, ``REST`` = 1, MIDI notes 21..108 (the piano, A0..C8) = 2..89;
* duration: ``START`` = 0, then ``k`` = k sixteenths (k/4 quarter notes), k = 1..32 (up to two
  whole notes). Onsets and ends are rounded to the sixteenth grid first.

The 371 chorales come from music21's bundled corpus (``corpus.chorales.Iterator``). Parsing them
takes about a minute, so their tokens are cached in ``assets/data/bach-chorales.npz``; rebuild with
``python -m models.music.notes build``. Audio is rendered offline by pretty_midi: with FluidSynth
(Debian ``libfluidsynth3`` + PyPI ``pyfluidsynth``) and pretty_midi's bundled General MIDI
soundfont TimGM6mb.sf2 when available, else additive sine synthesis.
"""
from __future__ import annotations

import argparse
import io
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pretty_midi

from models.core import ASSETS

CHORALES = ASSETS / "data" / "bach-chorales.npz"

START, REST = 0, 1
LOWEST, HIGHEST = 21, 108  # piano range
N_PITCH = 2 + HIGHEST - LOWEST + 1  # 90
STEPS_PER_QUARTER = 4  # a sixteenth-note grid
MAX_STEPS = 32  # longest duration token: 8 quarter notes
N_DURATION = MAX_STEPS + 1  # 33
SAMPLE_RATE = 22_050
MAX_MIDI_BYTES = 5 * 1024 * 1024
MAX_NOTES_PER_FILE = 50_000

# General MIDI programs offered by the studio (name -> program number, 0-based)
INSTRUMENTS = {
    "Church organ": 19, "Acoustic grand piano": 0, "Harpsichord": 6, "Strings": 48,
    "Choir aahs": 52, "Flute": 73, "Oboe": 68, "Cello": 42, "Acoustic guitar": 24,
}


# --- tokens ---

def pitch_token(midi: int) -> int:
    return int(midi) - LOWEST + 2


def token_midi(token: int) -> int | None:
    """The MIDI note of a pitch token, None for REST/START."""
    return None if token < 2 else int(token) - 2 + LOWEST


def pitch_name(token: int) -> str:
    if token == START:
        return "START"
    if token == REST:
        return "rest"
    return pretty_midi.note_number_to_name(token_midi(token))


def duration_quarters(token: int) -> float:
    return 0.0 if token == START else token / STEPS_PER_QUARTER


def duration_name(token: int) -> str:
    """A duration token as quarter notes: '1', '0.5', '1.5', or 'START'."""
    return "START" if token == START else f"{duration_quarters(token):g}"


def skyline(events) -> list[tuple[int, int, int]]:
    """The top line of overlapping notes: ``events`` are ``(onset, end, midi)`` in sixteenths.

    At each onset the highest note starting there is taken, unless a note at least as high is still
    sounding, which then carries on (a held soprano over moving lower voices is one note).
    Returns ``(onset, end, midi)`` notes that do not overlap.
    """
    starts: dict[int, tuple[int, int]] = {}
    for onset, end, midi in events:
        if end <= onset:
            continue
        best = starts.get(onset)
        if best is None or (midi, end) > best:
            starts[onset] = (midi, end)
    line: list[list[int]] = []
    for onset in sorted(starts):
        midi, end = starts[onset]
        if line and line[-1][1] > onset:
            if line[-1][2] >= midi:
                continue  # the held note is higher: it carries on
            line[-1][1] = onset  # a higher note cuts the held one short
        line.append([onset, end, midi])
    return [tuple(n) for n in line]


def notes_to_tokens(line) -> tuple[np.ndarray, np.ndarray]:
    """A non-overlapping note line (sixteenths) -> pitch and duration tokens (no START).

    Gaps become rests; a note or rest longer than the longest duration token is split (a note into
    the longest note plus a rest), so every token pair covers exactly its time.
    """
    pitches, durations = [], []

    def emit(pitch, steps):
        while steps > 0:
            d = min(steps, MAX_STEPS)
            pitches.append(pitch)
            durations.append(d)
            steps -= d
            pitch = REST  # a too-long note is held for the longest value, then silence

    cursor = line[0][0] if line else 0
    for onset, end, midi in line:
        if onset > cursor:
            emit(REST, onset - cursor)
        if not LOWEST <= midi <= HIGHEST:
            raise ValueError(f"Note {midi} is outside the piano range {LOWEST}..{HIGHEST}.")
        emit(pitch_token(midi), end - onset)
        cursor = end
    return np.array(pitches, np.int64), np.array(durations, np.int64)


def tokens_to_notes(pitches, durations) -> list[tuple[int, int, int]]:
    """Tokens -> ``(onset, end, midi)`` in sixteenths, rests and START pairs skipped."""
    notes, t = [], 0
    for p, d in zip(np.asarray(pitches).tolist(), np.asarray(durations).tolist()):
        if p == START or d == START:
            continue
        if p != REST:
            notes.append((t, t + d, token_midi(p)))
        t += d
    return notes


def _grid(quarters) -> int:
    return int(round(float(quarters) * STEPS_PER_QUARTER))


def score_events(score) -> list[tuple[int, int, int]]:
    """Every note of a music21 score (all parts, ties merged) as (onset, end, midi) sixteenths."""
    events = []
    for part in score.parts:
        for el in part.stripTies().flatten().notes:
            if el.quarterLength == 0:  # grace notes
                continue
            onset, end = _grid(el.offset), _grid(el.offset + el.quarterLength)
            for p in el.pitches:
                events.append((onset, end, p.midi))
    return events


def tokenize_score(score) -> tuple[np.ndarray, np.ndarray]:
    return notes_to_tokens(skyline(score_events(score)))


# --- the chorales, cached ---

def build_chorales(path: Path = CHORALES) -> Path:
    """Parse every chorale in music21's corpus and save their tokens (about a minute)."""
    from music21 import corpus

    names, pitches, durations, lengths = [], [], [], []
    for name in corpus.chorales.Iterator(returnType="filename"):
        p, d = tokenize_score(corpus.parse(name))
        if len(p) < 8:
            continue
        names.append(name)
        pitches.append(p)
        durations.append(d)
        lengths.append(len(p))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, names=np.array(names), pitch=np.concatenate(pitches).astype(np.uint8),
                        duration=np.concatenate(durations).astype(np.uint8), lengths=np.array(lengths, np.int32))
    return path


@lru_cache(maxsize=1)
def chorales() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, pitch tokens, duration tokens)`` of every cached chorale, in corpus order."""
    if not CHORALES.exists():
        raise ValueError(f"{CHORALES.name} is missing; rebuild it with `python -m models.music.notes build`.")
    z = np.load(CHORALES)
    bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
    return [(str(n), z["pitch"][a:b].astype(np.int64), z["duration"][a:b].astype(np.int64))
            for n, a, b in zip(z["names"], bounds[:-1], bounds[1:])]


def chorale_split(split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every tenth chorale is held out for testing; the rest train."""
    if split not in ("train", "test"):
        raise ValueError(f"Split must be 'train' or 'test'; got {split!r}.")
    return [c for i, c in enumerate(chorales()) if (i % 10 == 0) == (split == "test")]


def chorale_names() -> list[str]:
    return [name for name, _, _ in chorales()]


@lru_cache(maxsize=1)
def baselines() -> dict:
    """Held-out cross-entropy (nats per note) of two models that ignore the context, the floor a trained
    model has to beat: ``*_uniform``, every token of the vocabulary equally likely (what an untrained
    network predicts), and ``*_unigram``, the training chorales' token frequencies (add-one smoothed),
    both scored on every note of the held-out chorales."""
    train, test = chorale_split("train"), chorale_split("test")
    out = {}
    for k, (key, n) in enumerate((("note", N_PITCH), ("duration", N_DURATION)), start=1):
        counts = 1.0 + np.bincount(np.concatenate([c[k] for c in train]), minlength=n)
        targets = np.concatenate([c[k] for c in test])
        out[f"{key}_uniform"] = math.log(n)
        out[f"{key}_unigram"] = float(-np.log(counts / counts.sum())[targets].mean())
    return out


def chorale(name: str) -> tuple[np.ndarray, np.ndarray]:
    for n, p, d in chorales():
        if n == name:
            return p, d
    raise ValueError(f"No chorale named {name!r} in the corpus.")


def transpose(pitches: np.ndarray, shift: int) -> np.ndarray:
    """Move every note ``shift`` semitones (rests and START stay); refuses leaving the piano."""
    out = pitches.copy()
    notes = out >= 2
    out[notes] += shift
    if notes.any() and (out[notes].min() < 2 or out[notes].max() >= N_PITCH):
        raise ValueError(f"Transposing by {shift} leaves the piano range.")
    return out


def windows(pieces, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Pieces joined with START pairs between them, cut into windows of ``length`` token pairs."""
    p = np.concatenate([np.concatenate([[START], pp]) for pp, _ in pieces])
    d = np.concatenate([np.concatenate([[START], dd]) for _, dd in pieces])
    if len(p) < length:
        raise ValueError(f"Not enough music for one window of {length} notes (have {len(p)}).")
    idx = np.arange(0, len(p) - length + 1, stride)[:, None] + np.arange(length)
    return p[idx], d[idx]


def line_summary(pitches, durations) -> dict:
    """How much music a token line holds: notes, rests and length in quarter notes (START pairs skipped)."""
    p, d = np.asarray(pitches), np.asarray(durations)
    return {"notes": int((p >= 2).sum()), "rests": int((p == REST).sum()),
            "quarters": float(d[(p != START) & (d != START)].sum()) / STEPS_PER_QUARTER}


# --- MIDI in ---

def read_midi(path) -> tuple[np.ndarray, np.ndarray]:
    """A user's MIDI file -> tokens of its top line; plain ValueErrors for anything unusable."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ValueError(f"No file at {path}.")
    size = path.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise ValueError(f"{name} is {size / 1e6:.1f} MB; MIDI files up to {MAX_MIDI_BYTES // 2**20} MB are accepted.")
    data = path.read_bytes()
    if data[:4] != b"MThd":
        raise ValueError(f"{name} is not a MIDI file (a .mid file starts with 'MThd').")
    try:
        midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as e:  # mido raises many kinds of errors for broken files
        raise ValueError(f"{name} looks like MIDI but could not be read ({type(e).__name__}: {e}).") from None
    events = []
    to_q = lambda t: midi.time_to_tick(t) / midi.resolution  # noqa: E731
    for inst in midi.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            pitch = n.pitch
            while pitch < LOWEST:  # fold into the piano range by octaves
                pitch += 12
            while pitch > HIGHEST:
                pitch -= 12
            events.append((_grid(to_q(n.start)), _grid(to_q(n.end)), pitch))
    if not events:
        raise ValueError(f"{name} has no notes (drum tracks are ignored).")
    if len(events) > MAX_NOTES_PER_FILE:
        raise ValueError(f"{name} has {len(events)} notes; files up to {MAX_NOTES_PER_FILE} notes are accepted.")
    pitches, durations = notes_to_tokens(skyline(events))
    if (pitches >= 2).sum() < 8:
        raise ValueError(f"{name} has fewer than 8 notes after quantising to sixteenths; too little to learn from.")
    return pitches, durations


# --- MIDI and audio out ---

def to_midi(pitches, durations, bpm: float = 90.0, program: int = 19, velocity: int = 90) -> pretty_midi.PrettyMIDI:
    """Tokens -> a one-track PrettyMIDI at ``bpm`` quarter notes a minute."""
    if not 20 <= bpm <= 300:
        raise ValueError(f"Tempo must be between 20 and 300 bpm; got {bpm}.")
    if not 0 <= program <= 127:
        raise ValueError(f"MIDI program must be between 0 and 127; got {program}.")
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program, name=pretty_midi.program_to_instrument_name(program))
    sec = 60.0 / bpm / STEPS_PER_QUARTER  # seconds per sixteenth
    for onset, end, note in tokens_to_notes(pitches, durations):
        # a hair of silence before the next note keeps repeated notes audible as two
        inst.notes.append(pretty_midi.Note(velocity, note, onset * sec, max(onset * sec + 0.02, end * sec - 0.01)))
    midi.instruments.append(inst)
    return midi


def embed_text(midi: pretty_midi.PrettyMIDI, text: str, time: float = 0.0) -> pretty_midi.PrettyMIDI:
    """Add a text meta event (how a MIDI file carries its provenance); ``midi.text_events`` reads it back."""
    midi.text_events.append(pretty_midi.Text(text, time))
    return midi


def midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    buf = io.BytesIO()
    midi.write(buf)
    return buf.getvalue()


def to_stream(pitches, durations):
    """Tokens -> a music21 stream (one part), for scores and MusicXML."""
    from music21 import meter, note, stream

    part = stream.Part()
    part.append(meter.TimeSignature("4/4"))
    for p, d in zip(np.asarray(pitches).tolist(), np.asarray(durations).tolist()):
        if p == START or d == START:
            continue
        el = note.Rest() if p == REST else note.Note(token_midi(p))
        el.quarterLength = d / STEPS_PER_QUARTER
        part.append(el)
    return part


def fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; needs the libfluidsynth3 shared library)
    except Exception:
        return False
    return True


def render(midi: pretty_midi.PrettyMIDI, sample_rate: int = SAMPLE_RATE, engine: str = "auto") -> tuple[np.ndarray, str]:
    """Audio of ``midi`` as int16 mono at ``sample_rate`` and the engine used ("fluidsynth" or "sine").

    The tail is cut at the last note's end plus half a second of release.
    """
    if engine not in ("auto", "fluidsynth", "sine"):
        raise ValueError(f"Audio engine must be 'auto', 'fluidsynth' or 'sine'; got {engine!r}.")
    if engine == "fluidsynth" and not fluidsynth_available():
        raise ValueError("FluidSynth is not installed (apt-get install libfluidsynth3; pip install pyfluidsynth).")
    if engine == "auto":
        engine = "fluidsynth" if fluidsynth_available() else "sine"
    if engine == "fluidsynth":
        audio = midi.fluidsynth(fs=sample_rate)  # pretty_midi's bundled TimGM6mb.sf2
    else:
        audio = midi.synthesize(fs=sample_rate)  # sine tones
    length = int(math.ceil((midi.get_end_time() + 0.5) * sample_rate))
    audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio = audio / peak * 0.9
    return (audio * 32767).astype(np.int16), engine


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    import soundfile

    soundfile.write(str(path), audio, sample_rate, subtype="PCM_16")
    return Path(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Cache the Bach chorales' tokens from music21's corpus.")
    p.add_argument("command", choices=["build"])
    p.parse_args(argv)
    path = build_chorales()
    pieces = chorales.__wrapped__()
    print(f"{len(pieces)} chorales, {sum(len(pp) for _, pp, _ in pieces)} tokens -> {path}")


if __name__ == "__main__":
    main()
