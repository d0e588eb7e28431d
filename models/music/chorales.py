"""Four-part Bach chorales as tokens, the two ways Foster's *Generative Deep Learning* (2nd ed., ch. 11,
"polyphonic music") writes them, and the scores that tell a chorale from noise.

**The four voices.** Each chorale of music21's corpus that has exactly four parts (soprano, alto, tenor,
bass) in 4/4 becomes four note lines ``(onset, end, midi)`` on a sixteenth-note grid (the grid and the
tie merging of :mod:`models.music.notes`). Time 0 is a bar line: a pick-up starts after the rests that
fill its bar, so bar ``b`` is always sixteenths ``16b .. 16b + 15``. A voice sings one note at a time
(a rare chord inside one part keeps its top note; a note that overlaps the next in its voice ends where
the next starts). That is the *canonical* form both tokenisations round-trip exactly.

**Grid** (the book's first: one token per voice per sixteenth, the voices interleaved S, A, T, B):
each slot is ``REST``, ``HOLD`` (the voice's note carries on) or a pitch (a new note starts). The HOLD
token is what makes the grid lossless: without it a held half note and eight repeated sixteenths read
the same. A chorale of ``n`` bars is ``64 n`` tokens.

**Event-based** (the book's second, after MIDI: note-on / time-shift / note-off): ``ON(voice, pitch)``,
``OFF(voice)`` and ``SHIFT(k)``, k = 1..16 sixteenths. At each moment the offs come first, then the
ons, soprano to bass, then a shift to the next moment (longer gaps take several shifts). Music that
moves slowly takes few tokens; each note costs two.

Both vocabularies start with ``BOS``, the separator before every piece. The cache
``assets/data/chorales-voices.npz`` holds the voices (parsing takes about a minute); rebuild it with
``python -m models.music.chorales build``. Every tenth chorale of the corpus is held out (the split of
:mod:`models.music.notes` and MuseGAN).

**Scores** of four-voice music (:func:`score`), the same for Bach and for samples:

* *in key*: the fraction of notes whose pitch class lies in the piece's best-fitting major scale
  (natural minor shares it; the raised leading tone of a minor key counts as out);
* *voice ranges*: the fraction of each voice's notes inside its textbook range (S C4–G5, A G3–D5,
  T C3–G4, B E2–C4);
* *parallel fifths and octaves per bar*: two voices a perfect fifth (or octave, or unison) apart
  that both move, in the same direction, to another perfect fifth (octave) — what counterpoint
  forbids and Bach rarely writes.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.core import ASSETS
from models.music import musegan, notes as music

CACHE = ASSETS / "data" / "chorales-voices.npz"
VOICES = musegan.TRACKS  # ("Soprano", "Alto", "Tenor", "Bass")
N_VOICES = 4
BAR = 16  # sixteenths per 4/4 bar
LOWEST, HIGHEST = 28, 88  # MIDI pitches the vocabularies hold (E1..E6: the chorales ± a fourth)
N_PITCHES = HIGHEST - LOWEST + 1
MAX_SHIFT = 16  # the longest time-shift token: one bar
# textbook ranges of the four voices (inclusive MIDI): S C4–G5, A G3–D5, T C3–G4, B E2–C4
RANGES = {"Soprano": (60, 79), "Alto": (55, 74), "Tenor": (48, 67), "Bass": (40, 60)}
MAJOR = musegan.MAJOR

# grid vocabulary
BOS, REST, HOLD = 0, 1, 2
GRID_VOCAB = 3 + N_PITCHES
# event vocabulary
SHIFT0 = 1  # SHIFT(k) = k for k = 1..16
OFF0 = SHIFT0 + MAX_SHIFT  # OFF(v) = 17 + v
ON0 = OFF0 + N_VOICES  # ON(v, p) = 21 + v · N_PITCHES + (p - LOWEST)
EVENT_VOCAB = ON0 + N_VOICES * N_PITCHES
TOKENISATIONS = ("grid", "events")

Voices = list  # four lists of (onset, end, midi), soprano first


# --- parsing (music21) ---

def one_line(events) -> list[tuple[int, int, int]]:
    """``(onset, end, midi)`` events of one voice -> its canonical line: one note per onset (the top one
    of a chord), empty notes dropped, a note that overlaps the next ending where the next starts."""
    starts: dict[int, tuple[int, int]] = {}
    for onset, end, midi in events:
        if end > onset and (onset not in starts or (midi, end) > starts[onset]):
            starts[onset] = (midi, end)
    line: list[tuple[int, int, int]] = []
    for onset in sorted(starts):
        midi, end = starts[onset]
        if line and line[-1][1] > onset:
            line[-1] = (line[-1][0], onset, line[-1][2])
        line.append((onset, end, midi))
    return line


def score_voices(score) -> Voices | None:
    """A music21 chorale -> its four voices in canonical form, or None when it does not fit (not four
    parts, not all 4/4, notes outside the vocabulary)."""
    from music21 import meter

    if len(score.parts) != N_VOICES:
        return None
    sigs = list(score.recurse().getElementsByClass(meter.TimeSignature))
    if not sigs or any(s.ratioString != "4/4" for s in sigs):
        return None
    first = score.parts[0].measure(1)
    pad = (-music._grid(first.offset)) % BAR if first is not None else 0  # a pick-up fills its bar with rests
    voices = []
    for part in score.parts:
        line = one_line((music._grid(el.offset) + pad, music._grid(el.offset + el.quarterLength) + pad,
                         max(p.midi for p in el.pitches))
                        for el in part.stripTies().flatten().notes if el.quarterLength > 0)  # no grace notes
        if not line or not all(LOWEST <= m <= HIGHEST for _, _, m in line):
            return None
        voices.append(line)
    return voices


def build(path: Path = CACHE) -> Path:
    """Parse every chorale of music21's corpus and cache the four-part 4/4 ones (about a minute)."""
    from music21 import corpus

    names, index, rows = [], [], []
    for i, name in enumerate(corpus.chorales.Iterator(returnType="filename")):
        voices = score_voices(corpus.parse(name))
        if voices is None:
            continue
        k = len(names)
        names.append(name)
        index.append(i)
        rows += [(k, v, a, b, m) for v, line in enumerate(voices) for a, b, m in line]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, names=np.array(names), corpus_index=np.array(index, np.int16),
                        notes=np.array(rows, np.int16))
    return path


@lru_cache(maxsize=1)
def pieces() -> list[tuple[str, int, Voices]]:
    """``(name, corpus index, voices)`` of every cached chorale, in corpus order."""
    if not CACHE.exists():
        raise ValueError(f"{CACHE.name} is missing; rebuild it with `python -m models.music.chorales build`.")
    z = np.load(CACHE)
    rows = z["notes"].astype(np.int64)
    out = []
    for k, (name, i) in enumerate(zip(z["names"], z["corpus_index"])):
        mine = rows[rows[:, 0] == k]
        out.append((str(name), int(i), [[tuple(r[2:]) for r in mine[mine[:, 1] == v].tolist()]
                                         for v in range(N_VOICES)]))
    return out


def split(which: str) -> list[tuple[str, int, Voices]]:
    """Chorales whose corpus index ends in 0 are held out (as in :func:`notes.chorale_split`)."""
    if which not in ("train", "test"):
        raise ValueError(f"Split must be 'train' or 'test'; got {which!r}.")
    return [p for p in pieces() if (p[1] % 10 == 0) == (which == "test")]


def held_out_names() -> list[str]:
    return [name for name, _, _ in split("test")]


def chorale(name: str) -> Voices:
    for n, _, voices in pieces():
        if n == name:
            return voices
    raise ValueError(f"No four-part chorale named {name!r} in the corpus.")


def transpose(voices: Voices, shift: int) -> Voices:
    """Every note ``shift`` semitones up (down when negative); refuses leaving the vocabulary."""
    out = [[(a, b, m + shift) for a, b, m in line] for line in voices]
    if any(not LOWEST <= m <= HIGHEST for line in out for _, _, m in line):
        raise ValueError(f"Transposing by {shift} leaves the pitches {LOWEST}..{HIGHEST} the models know.")
    return out


def length_of(voices: Voices) -> int:
    """Sixteenths from time 0 to the last note's end."""
    return max((line[-1][1] for line in voices if line), default=0)


def check_voices(voices) -> Voices:
    """Four lines of non-overlapping ``(onset, end, midi)`` notes, each inside the vocabulary."""
    if len(voices) != N_VOICES:
        raise ValueError(f"Four-voice music needs {N_VOICES} voices (soprano, alto, tenor, bass); got {len(voices)}.")
    out = []
    for name, line in zip(VOICES, voices):
        line = [tuple(int(x) for x in n) for n in line]
        for (a, b, m), nxt in zip(line, line[1:] + [None]):
            if not (0 <= a < b and LOWEST <= m <= HIGHEST) or (nxt is not None and nxt[0] < b):
                raise ValueError(f"The {name.lower()} has a note ({a}, {b}, {m}) that is empty, overlaps the next "
                                 f"or lies outside MIDI {LOWEST}..{HIGHEST}.")
        out.append(line)
    return out


# --- grid tokens ---

def to_grid(voices: Voices, steps: int | None = None) -> np.ndarray:
    """Voices -> grid tokens (no BOS): slot ``4 t + v`` is voice v at sixteenth t (REST, HOLD or a pitch)."""
    steps = length_of(voices) if steps is None else steps
    grid = np.full((steps, N_VOICES), REST, np.int64)
    for v, line in enumerate(voices):
        for a, b, m in line:
            grid[a:b, v] = HOLD
            grid[a, v] = 3 + m - LOWEST
    return grid.reshape(-1)


def from_grid(tokens) -> Voices:
    """Grid tokens (BOS anywhere is skipped, a trailing partial step is dropped) -> voices; a HOLD after a
    rest is a rest (a generated grid need not be well formed)."""
    t = np.asarray(tokens, np.int64)
    t = t[t != BOS]
    grid = t[:len(t) // N_VOICES * N_VOICES].reshape(-1, N_VOICES)
    voices = []
    for v in range(N_VOICES):
        line, open_ = [], None
        for step, tok in enumerate(grid[:, v].tolist()):
            if tok == HOLD and open_ is not None:
                continue
            if open_ is not None:
                line.append((open_[0], step, open_[1]))
                open_ = None
            if tok >= 3:
                open_ = (step, tok - 3 + LOWEST)
        if open_ is not None:
            line.append((open_[0], len(grid), open_[1]))
        voices.append(line)
    return voices


def grid_features(n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(voice, place in the bar) of grid slots ``start .. start + n - 1`` counted from the piece's BOS
    (slot 0): BOS gets voice 4 and place 16."""
    i = np.arange(start, start + n) - 1
    voice = np.where(i < 0, N_VOICES, i % N_VOICES)
    place = np.where(i < 0, BAR, (i // N_VOICES) % BAR)
    return voice, place


# --- event tokens ---

def on_token(voice: int, midi: int) -> int:
    return ON0 + voice * N_PITCHES + midi - LOWEST


def shifts(gap: int) -> list[int]:
    """SHIFT tokens that move time on by ``gap`` sixteenths (a bar at most each)."""
    return [SHIFT0 + MAX_SHIFT - 1] * (gap // MAX_SHIFT) + ([SHIFT0 + gap % MAX_SHIFT - 1] if gap % MAX_SHIFT else [])


def to_events(voices: Voices) -> np.ndarray:
    """Voices -> event tokens (no BOS): at each moment the offs, then the ons (soprano first), then a shift."""
    moments: dict[int, tuple[list, list]] = {}
    for v, line in enumerate(voices):
        for a, b, m in line:
            moments.setdefault(a, ([], []))[1].append(on_token(v, m))
            moments.setdefault(b, ([], []))[0].append(OFF0 + v)
    out, now = [], 0
    for t in sorted(moments):
        out += shifts(t - now)
        offs, ons = moments[t]
        out += sorted(offs) + sorted(ons)
        now = t
    return np.array(out, np.int64)


def from_events(tokens) -> Voices:
    """Event tokens -> voices. Robust to generated streams: an ON in a sounding voice ends the note it had,
    an OFF in a silent voice is ignored, notes still sounding at the end end there; BOS is skipped."""
    voices: list[list] = [[] for _ in range(N_VOICES)]
    sounding: list = [None] * N_VOICES
    now = 0

    def close(v):
        if sounding[v] is not None:
            a, m = sounding[v]
            if now > a:
                voices[v].append((a, now, m))
            sounding[v] = None

    for tok in np.asarray(tokens, np.int64).tolist():
        if SHIFT0 <= tok < OFF0:
            now += tok - SHIFT0 + 1
        elif OFF0 <= tok < ON0:
            close(tok - OFF0)
        elif ON0 <= tok < EVENT_VOCAB:
            v, p = divmod(tok - ON0, N_PITCHES)
            close(v)
            sounding[v] = (now, p + LOWEST)
    for v in range(N_VOICES):
        close(v)
    return voices


def event_features(tokens, start_time: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(voice, place in the bar) of each event token (shifts and BOS: voice 4; BOS: place 16), the place
    being the time at which the token happens, and the time after the last token."""
    t = np.asarray(tokens, np.int64)
    voice = np.full(len(t), N_VOICES, np.int64)
    place = np.empty(len(t), np.int64)
    now = start_time
    for i, tok in enumerate(t.tolist()):
        place[i] = BAR if tok == BOS else now % BAR
        if tok == BOS:
            now = 0
        elif SHIFT0 <= tok < OFF0:
            now += tok - SHIFT0 + 1
        elif OFF0 <= tok < ON0:
            voice[i] = tok - OFF0
        else:
            voice[i] = (tok - ON0) // N_PITCHES
    return voice, place, now


def encode(voices: Voices, tokenisation: str) -> np.ndarray:
    return to_grid(voices) if tokenisation == "grid" else to_events(voices)


def decode(tokens, tokenisation: str) -> Voices:
    return from_grid(tokens) if tokenisation == "grid" else from_events(tokens)


def check_tokenisation(tokenisation: str) -> None:
    if tokenisation not in TOKENISATIONS:
        raise ValueError(f"Unknown tokenisation {tokenisation!r}; choose 'grid' or 'events'.")


def features(tokens, tokenisation: str) -> tuple[np.ndarray, np.ndarray]:
    """(voice, place in the bar) of a token stream that starts with BOS."""
    if tokenisation == "grid":
        return grid_features(len(tokens))
    voice, place, _ = event_features(tokens)
    return voice, place


# --- scores ---

def sounding(voices: Voices, steps: int | None = None) -> np.ndarray:
    """(4, steps) MIDI pitch each voice sings at each sixteenth, -1 for silence."""
    steps = length_of(voices) if steps is None else steps
    roll = np.full((N_VOICES, steps), -1, np.int64)
    for v, line in enumerate(voices):
        for a, b, m in line:
            roll[v, a:b] = m
    return roll


def in_key(voices: Voices) -> tuple[int, int]:
    """(notes in the best-fitting major scale, notes) of one piece."""
    pcs = np.array([m % 12 for line in voices for _, _, m in line], np.int64)
    if not len(pcs):
        return 0, 0
    scales = np.stack([np.roll(MAJOR, s) for s in range(12)])  # (12 keys, 12 pitch classes)
    return int(scales[:, pcs].sum(1).max()), len(pcs)


def parallels(voices: Voices) -> int:
    """Parallel fifths and octaves (unisons too) between any two voices: at a sixteenth where both move,
    in the same direction, from a perfect interval to the same perfect interval."""
    roll = sounding(voices)
    count = 0
    for a in range(N_VOICES):
        for b in range(a + 1, N_VOICES):
            x, y = roll[a], roll[b]
            sung = (x[:-1] >= 0) & (y[:-1] >= 0) & (x[1:] >= 0) & (y[1:] >= 0)
            dx, dy = np.diff(x), np.diff(y)
            before, after = (x[:-1] - y[:-1]) % 12, (x[1:] - y[1:]) % 12
            perfect = (before == after) & ((before == 0) | (before == 7))
            count += int((sung & (dx != 0) & (np.sign(dx) == np.sign(dy)) & perfect).sum())
    return count


def score(pieces_voices) -> dict:
    """The scores of a set of four-voice pieces (each a list of four voices), pooled over the pieces."""
    key_in = key_n = bars = par = 0
    in_range, n_voice = np.zeros(N_VOICES), np.zeros(N_VOICES)
    for voices in pieces_voices:
        k, n = in_key(voices)
        key_in, key_n = key_in + k, key_n + n
        par += parallels(voices)
        bars += max(1, -(-length_of(voices) // BAR))
        for v, (name, line) in enumerate(zip(VOICES, voices)):
            lo, hi = RANGES[name]
            in_range[v] += sum(lo <= m <= hi for _, _, m in line)
            n_voice[v] += len(line)
    out = {"in_key": key_in / max(key_n, 1), "in_range": float(in_range.sum() / max(n_voice.sum(), 1)),
           "parallels_per_bar": par / max(bars, 1), "notes_per_bar": float(n_voice.sum() / max(bars, 1)),
           "pieces": len(pieces_voices), "bars": bars}
    for name, k, n in zip(VOICES, in_range, n_voice):
        out[f"in_range_{name.lower()}"] = float(k / max(n, 1))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def noise_like(voices: Voices, rng: np.random.Generator) -> Voices:
    """Bach's rhythm with every pitch drawn uniformly from its voice's range ± a fifth: the noise row."""
    out = []
    for name, line in zip(VOICES, voices):
        lo, hi = RANGES[name]
        out.append([(a, b, int(rng.integers(max(LOWEST, lo - 7), min(HIGHEST, hi + 7) + 1))) for a, b, _ in line])
    return out


def crop(voices: Voices, steps: int) -> Voices:
    """The first ``steps`` sixteenths of a piece (notes cut at the end)."""
    return [[(a, min(b, steps), m) for a, b, m in line if a < steps] for line in voices]


@lru_cache(maxsize=4)
def reference(bars: int = 0) -> dict:
    """Scores of the held-out chorales (their first ``bars`` bars when given) and of noise with their
    rhythm: the rows every sample score is printed beside."""
    real = [v if not bars else crop(v, bars * BAR) for _, _, v in split("test")]
    rng = np.random.default_rng(0)
    return {"bach_held_out": score(real), "noise": score([noise_like(v, rng) for v in real])}


# --- out: a music21 score, MIDI ---

def voice_tokens(line) -> tuple[np.ndarray, np.ndarray]:
    """One voice -> the (pitch, duration) tokens of :mod:`notes`, leading silence as rests."""
    pitch, duration = music.notes_to_tokens(line)
    lead = line[0][0] if line else 0
    rests = [music.MAX_STEPS] * (lead // music.MAX_STEPS) + ([lead % music.MAX_STEPS] if lead % music.MAX_STEPS else [])
    return (np.concatenate([np.full(len(rests), music.REST, np.int64), pitch]),
            np.concatenate([np.array(rests, np.int64), duration]))


def to_midi(voices: Voices, bpm: float = 80.0, programs: dict | None = None):
    """Four voices -> a PrettyMIDI with one named instrument per voice."""
    programs = programs or musegan.PROGRAMS
    midi = None
    for name, line in zip(VOICES, check_voices(voices)):
        one = music.to_midi(*voice_tokens(line), bpm=bpm, program=programs[name])
        one.instruments[0].name = name
        if midi is None:
            midi = one
        else:
            midi.instruments.append(one.instruments[0])
    return midi


def to_score(voices: Voices, title: str = ""):
    """Four voices -> a music21 score of four named parts (for MusicXML)."""
    from music21 import metadata, stream

    sc = stream.Score()
    if title:
        sc.insert(0, metadata.Metadata(title=title))
    for name, line in zip(VOICES, check_voices(voices)):
        part = music.to_stream(*voice_tokens(line))
        part.partName = name
        part.id = name
        sc.insert(0, part)
    return sc


def read_midi(path) -> Voices:
    """A four-part MIDI file (one instrument per voice, soprano = highest) -> voices, for continuing.
    Anything else is refused with a message that says why (one voice, chords in a voice…)."""
    path = Path(path)
    name = path.name
    music.read_midi(path)  # the checks every MIDI upload passes: size, header, readable, has notes
    midi = music.pretty_midi.PrettyMIDI(str(path))
    parts = [inst for inst in midi.instruments if not inst.is_drum and inst.notes]
    if len(parts) != N_VOICES:
        raise ValueError(f"{name} has {len(parts)} voice{'s' if len(parts) != 1 else ''} (instruments with notes); "
                         f"the four-voice models continue a chorale written as {N_VOICES} instruments, one per "
                         "voice: soprano, alto, tenor, bass. Use the Music tab for a single melody.")
    to_q = lambda t: midi.time_to_tick(t) / midi.resolution  # noqa: E731
    lines = []
    for inst in parts:
        lines.append(one_line((music._grid(to_q(n.start)), music._grid(to_q(n.end)), n.pitch) for n in inst.notes))
    lines.sort(key=lambda line: -np.mean([m for _, _, m in line]) if line else 0)  # soprano first
    for voice, line in zip(VOICES, lines):
        if not all(LOWEST <= m <= HIGHEST for _, _, m in line):
            raise ValueError(f"{name}: the {voice.lower()} has notes outside MIDI {LOWEST}..{HIGHEST}.")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Cache the four-part Bach chorales' voices from music21's corpus.")
    p.add_argument("command", choices=["build"])
    p.parse_args(argv)
    path = build()
    ps = pieces.__wrapped__()
    print(f"{len(ps)} chorales, {sum(len(line) for _, _, v in ps for line in v)} notes -> {path}")


if __name__ == "__main__":
    main()
