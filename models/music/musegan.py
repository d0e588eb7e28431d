"""MuseGAN (Foster, *Generative Deep Learning* 2nd ed., ch. 11; Dong et al. 2017,
https://arxiv.org/abs/1709.06298): four-part Bach chorale phrases as piano rolls, made by a GAN.

A phrase is a piano roll of 4 tracks (soprano, alto, tenor, bass) × 2 bars × 16 sixteenth steps ×
48 pitches (MIDI 36..83, C2..B5); at each step each voice sings one pitch (a held note is the same
pitch on consecutive steps, merged into one note when written as MIDI).

The generator gets four kinds of latent vector, each of size ``z_dim``:

* **style**: one per piece, shared by every track and bar;
* **groove**: one per track, shared by its bars;
* **chords**: one per piece, unrolled by a *temporal network* into one vector per bar, shared by
  the tracks;
* **melody**: one per track, unrolled by that track's temporal network into one vector per bar.

For track k and bar b, the bar generator of track k turns
``[chords_b, style, melody_{k,b}, groove_k]`` into that bar's (16 steps × 48 pitches) of tanh
values; the argmax over pitch at each step is the note. So changing one track's groove changes only
that track; changing the chords changes every track in the same way bar by bar.

The critic scores a whole 4-track, 2-bar roll; it is trained as a Wasserstein critic with a
gradient penalty (WGAN-GP, Gulrajani et al. 2017): ``n_critic`` critic steps minimising
``D(fake) - D(real) + λ (‖∇D(x̂)‖ - 1)²`` on random interpolates x̂, then one generator step
minimising ``-D(fake)`` (the book: Adam lr 1e-3, β = (0.5, 0.9), λ = 10, 5 critic steps).

Data: the 4-part chorales of music21's corpus, cut into 2-bar phrases one bar apart. Parsing takes
a minute or two, so the pitch of each voice at each sixteenth is cached in
``assets/data/musegan-chorales.npz``; rebuild with ``python -m models.music.musegan build``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pretty_midi
import torch
from torch import nn

from models.core import ASSETS
from models.core.family import Family, check_lr_decay, check_range, device_of, seeded
from models.music import notes as music

CACHE = ASSETS / "data" / "musegan-chorales.npz"
TRACKS = ("Soprano", "Alto", "Tenor", "Bass")
N_TRACKS, N_BARS, N_STEPS = 4, 2, 16
LOWEST, N_PITCHES = 36, 48  # MIDI 36..83
GROUPS = ("style", "groove", "chords", "melody")
MAX_PIECES = 64
# one General MIDI program per voice for listening
PROGRAMS = {"Soprano": 73, "Alto": 68, "Tenor": 71, "Bass": 70}  # flute, oboe, clarinet, bassoon


@dataclass
class MuseGANConfig:
    dataset: str = "chorales"
    z_dim: int = 32  # size of each latent vector (the book's Z_DIM)
    g_width: int = 64  # channels of the bar generators
    d_width: int = 32  # channels of the critic
    n_critic: int = 5  # critic steps per generator step
    gp_weight: float = 10.0  # λ of the gradient penalty
    lr: float = 1e-3  # Adam, both networks
    batch_size: int = 64
    steps: int = 6000
    ema_decay: float = 0.0  # EMA of the generator's weights, sampled from (0 = off; checkpoints written before EMA)
    lr_decay: str = "none"  # "none" or "cosine": both learning rates fall to 0 at the last step

    def validate(self):
        check_lr_decay(self.lr_decay)
        if self.dataset != "chorales":
            raise ValueError(f"Unknown dataset {self.dataset!r}; MuseGAN trains on 'chorales'.")
        check_range("latent size", self.z_dim, 1, 1024)
        check_range("generator width", self.g_width, 4, 1024)
        check_range("critic width", self.d_width, 4, 1024)
        check_range("critic steps", self.n_critic, 1, 20)
        check_range("gradient penalty weight", self.gp_weight, 0.0, 1000.0)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("EMA decay", self.ema_decay, 0.0, 0.9999)


PRESETS = {
    "book": {},
    # about 15 minutes on one CPU thread
    "cpu": {"z_dim": 32, "g_width": 16, "d_width": 16, "n_critic": 5, "batch_size": 32, "steps": 1500,
            "ema_decay": 0.999},  # the book has no EMA; an averaged generator is steadier
    "tiny": {"z_dim": 4, "g_width": 4, "d_width": 4, "n_critic": 1, "batch_size": 4, "steps": 2},
}


# --- data ---

def score_roll(score) -> np.ndarray | None:
    """A 4-part chorale -> (4, T) pitch of each voice at each sixteenth from the first full bar;
    rests hold the previous pitch. None when the chorale does not fit (parts, metre, range)."""
    from music21 import meter

    if len(score.parts) != 4:
        return None
    sigs = list(score.recurse().getElementsByClass(meter.TimeSignature))
    if not sigs or any(s.ratioString != "4/4" for s in sigs):
        return None
    first = score.parts[0].measure(1)
    shift = music._grid(first.offset) if first is not None else 0
    rows = []
    for part in score.parts:
        notes = [(music._grid(n.offset), music._grid(n.offset + n.quarterLength), max(p.midi for p in n.pitches))
                 for n in part.stripTies().flatten().notes if n.quarterLength > 0]
        if not notes:
            return None
        end = max(e for _, e, _ in notes)
        row = np.full(end, -1, np.int64)
        for on, off, m in notes:
            row[on:off] = m
        row[:notes[0][0]] = notes[0][2]  # a part that starts late takes its first note
        for t in range(1, end):  # rests hold the previous pitch
            if row[t] < 0:
                row[t] = row[t - 1]
        rows.append(row)
    length = min(len(r) for r in rows)
    roll = np.stack([r[shift:length] for r in rows]) - LOWEST
    if roll.shape[1] < N_BARS * N_STEPS or roll.min() < 0 or roll.max() >= N_PITCHES:
        return None
    return roll


def build(path: Path = CACHE) -> Path:
    """Parse the 4-part 4/4 chorales and cache 2-bar phrases, one bar apart (a minute or two)."""
    from music21 import corpus

    phrases, piece = [], []
    for i, name in enumerate(corpus.chorales.Iterator(returnType="filename")):
        roll = score_roll(corpus.parse(name))
        if roll is None:
            continue
        span = N_BARS * N_STEPS
        for start in range(0, roll.shape[1] - span + 1, N_STEPS):
            phrases.append(roll[:, start:start + span])
            piece.append(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, pitch=np.stack(phrases).astype(np.uint8), piece=np.array(piece, np.int16))
    return path


@lru_cache(maxsize=1)
def phrases() -> tuple[np.ndarray, np.ndarray]:
    if not CACHE.exists():
        raise ValueError(f"{CACHE.name} is missing; rebuild it with `python -m models.music.musegan build`.")
    z = np.load(CACHE)
    return z["pitch"].astype(np.int64), z["piece"].astype(np.int64)


def one_hot(pitch: torch.Tensor) -> torch.Tensor:
    """(n, 4, 32) pitch indices -> (n, 4, 2, 16, 48) rolls of -1 and 1 (the generator's tanh range)."""
    n = pitch.shape[0]
    roll = torch.nn.functional.one_hot(pitch, N_PITCHES).float() * 2 - 1
    return roll.view(n, N_TRACKS, N_BARS, N_STEPS, N_PITCHES)


def data(config: MuseGANConfig, split: str):
    """Phrases as (n, 4, 32) pitch indices; pieces whose corpus index ends in 0 are held out."""
    if split not in ("train", "test"):
        raise ValueError(f"Split must be 'train' or 'test'; got {split!r}.")
    pitch, piece = phrases()
    keep = (piece % 10 == 0) == (split == "test")
    return (torch.from_numpy(pitch[keep]),), {
        "title": "Bach chorales (music21 corpus), 4 voices, 2-bar phrases",
        "pieces": int(len(np.unique(piece[keep]))), "pitches": f"MIDI {LOWEST}..{LOWEST + N_PITCHES - 1}"}


# --- networks ---

class Temporal(nn.Module):
    """One latent vector -> one per bar (the book's TemporalNetwork, with 4·z hidden channels)."""

    def __init__(self, z: int):
        super().__init__()
        h = 4 * z
        self.net = nn.Sequential(nn.ConvTranspose1d(z, h, N_BARS), nn.BatchNorm1d(h), nn.ReLU(),
                                 nn.Conv1d(h, z, 1), nn.BatchNorm1d(z), nn.ReLU())

    def forward(self, z):  # (n, z) -> (n, bars, z)
        return self.net(z[:, :, None]).transpose(1, 2)


class BarGenerator(nn.Module):
    """4·z latent -> one bar of one track: (16 steps, 48 pitches) in [-1, 1]."""

    def __init__(self, z: int, w: int):
        super().__init__()
        self.w = w
        self.fc = nn.Sequential(nn.Linear(4 * z, 2 * w * 4 * 6), nn.BatchNorm1d(2 * w * 4 * 6), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 2, 2), nn.BatchNorm2d(w), nn.ReLU(),  # 8 × 12
            nn.ConvTranspose2d(w, w, 2, 2), nn.BatchNorm2d(w), nn.ReLU(),  # 16 × 24
            nn.ConvTranspose2d(w, 1, (1, 2), (1, 2)), nn.Tanh())  # 16 × 48

    def forward(self, x):
        return self.net(self.fc(x).view(-1, 2 * self.w, 4, 6))[:, 0]


class Generator(nn.Module):
    def __init__(self, c: MuseGANConfig):
        super().__init__()
        self.z = c.z_dim
        self.chords = Temporal(c.z_dim)
        self.melody = nn.ModuleList(Temporal(c.z_dim) for _ in range(N_TRACKS))
        self.bars = nn.ModuleList(BarGenerator(c.z_dim, c.g_width) for _ in range(N_TRACKS))

    def unroll(self, lat: dict) -> dict:
        """Per-bar latents: chords (n, bars, z), melody (n, tracks, bars, z); style and groove as they are."""
        return {"style": lat["style"], "groove": lat["groove"], "chords": self.chords(lat["chords"]),
                "melody": torch.stack([t(lat["melody"][:, k]) for k, t in enumerate(self.melody)], 1)}

    def decode(self, u: dict) -> torch.Tensor:
        """Per-bar latents -> (n, tracks, bars, steps, pitches) in [-1, 1]."""
        n = u["style"].shape[0]
        tracks = []
        for k, bar_gen in enumerate(self.bars):
            x = torch.cat([u["chords"], u["style"][:, None].expand(n, N_BARS, self.z), u["melody"][:, k],
                           u["groove"][:, k, None].expand(n, N_BARS, self.z)], -1)  # (n, bars, 4z)
            tracks.append(bar_gen(x.reshape(n * N_BARS, -1)).view(n, N_BARS, N_STEPS, N_PITCHES))
        return torch.stack(tracks, 1)

    def forward(self, lat: dict) -> torch.Tensor:
        return self.decode(self.unroll(lat))


class Critic(nn.Module):
    """(n, 4, 2, 16, 48) roll -> one score (no batch norm: the gradient penalty is per example)."""

    def __init__(self, c: MuseGANConfig):
        super().__init__()
        w = c.d_width
        act = nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            nn.Conv2d(N_TRACKS, w, (2, 12), (2, 12)), act,  # bar halves of an octave: 16 × 4
            nn.Conv2d(w, 2 * w, (1, 4)), act,  # across octaves: 16 × 1
            nn.Conv2d(2 * w, 4 * w, (4, 1), (4, 1)), act,  # beats: 4 × 1
            nn.Flatten(), nn.Linear(4 * w * 4, 8 * w), act, nn.Linear(8 * w, 1))

    def forward(self, roll):
        return self.net(roll.reshape(-1, N_TRACKS, N_BARS * N_STEPS, N_PITCHES))[:, 0]


class MuseGAN(nn.Module):
    def __init__(self, c: MuseGANConfig):
        super().__init__()
        self.z_dim = c.z_dim
        self.generator = Generator(c)
        self.critic = Critic(c)


def build_model(config: MuseGANConfig) -> MuseGAN:
    return MuseGAN(config)


def latents(n: int, z_dim: int, generator: torch.Generator | None = None, device="cpu") -> dict:
    """The four latent groups of ``n`` pieces, drawn in a fixed order (style, groove, chords, melody)."""
    shapes = {"style": (n, z_dim), "groove": (n, N_TRACKS, z_dim), "chords": (n, z_dim),
              "melody": (n, N_TRACKS, z_dim)}
    return {k: torch.randn(s, generator=generator).to(device) for k, s in shapes.items()}


# --- training ---

def optimizers(model: MuseGAN, config: MuseGANConfig) -> dict:
    adam = lambda params: torch.optim.Adam(params, lr=config.lr, betas=(0.5, 0.9))  # noqa: E731
    return {"generator": adam(model.generator.parameters()), "critic": adam(model.critic.parameters())}


def gradient_penalty(critic: Critic, real, fake) -> torch.Tensor:
    alpha = torch.rand(real.shape[0], 1, 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_step(model: MuseGAN, batch, config: MuseGANConfig, opts: dict) -> dict:
    """``n_critic`` WGAN-GP critic steps on this batch, then one generator step."""
    real = one_hot(batch[0])
    n, device = real.shape[0], real.device
    for _ in range(config.n_critic):
        with torch.no_grad():
            fake = model.generator(latents(n, config.z_dim, device=device))
        wasserstein = model.critic(real).mean() - model.critic(fake).mean()
        gp = gradient_penalty(model.critic, real, fake)
        c_loss = -wasserstein + config.gp_weight * gp
        opts["critic"].zero_grad(set_to_none=True)
        c_loss.backward()
        opts["critic"].step()
    g_loss = -model.critic(model.generator(latents(n, config.z_dim, device=device))).mean()
    opts["generator"].zero_grad(set_to_none=True)
    g_loss.backward()
    opts["generator"].step()
    return {"loss": c_loss.detach(), "critic_loss": c_loss.detach(), "generator_loss": g_loss.detach(),
            "wasserstein": wasserstein.detach(), "gradient_penalty": gp.detach()}


# --- sampling ---

def reroll(lat: dict, unrolled: dict, fresh: dict, fresh_unrolled: dict, group: str, track: int, bar: int) -> dict:
    """Per-bar latents with one group replaced from ``fresh``: style everywhere; groove of ``track``;
    chords of ``bar`` (every track); melody of ``track`` in ``bar``, or in every bar when bar is -1."""
    out = {k: v.clone() for k, v in unrolled.items()}
    if group == "style":
        out["style"] = fresh_unrolled["style"]
    elif group == "groove":
        out["groove"][:, track] = fresh_unrolled["groove"][:, track]
    elif group == "chords":
        sel = slice(None) if bar < 0 else bar
        out["chords"][:, sel] = fresh_unrolled["chords"][:, sel]
    elif group == "melody":
        sel = slice(None) if bar < 0 else bar
        out["melody"][:, track, sel] = fresh_unrolled["melody"][:, track, sel]
    return out


@torch.no_grad()
def sample(model: MuseGAN, n: int, generator: torch.Generator | None = None, group: str = "",
           track: int = 0, bar: int = -1, reroll_seed: int = 1):
    """Yield ``n`` piano rolls, (n, 4 tracks, 32 steps, 48 pitches) of 0/1, one note per track per step.

    With ``group`` in style/groove/chords/melody, that latent group (for ``track`` or ``bar``; bar -1 is
    every bar) is drawn afresh from ``reroll_seed`` while the others stay as ``generator`` drew them.
    """
    check_range("Number of pieces", n, 1, MAX_PIECES)
    if group not in ("", *GROUPS):
        raise ValueError(f"Latent group must be one of {', '.join(GROUPS)}; got {group!r}.")
    check_range("track", track, 0, N_TRACKS - 1)
    check_range("bar", bar, -1, N_BARS - 1)
    if int(track) != track or int(bar) != bar:
        raise ValueError("Track and bar must be whole numbers.")
    model.eval()
    device = device_of(model)
    g = model.generator
    lat = latents(n, model.z_dim, generator, device)
    u = g.unroll(lat)
    if group:
        fresh = latents(n, model.z_dim, seeded(reroll_seed), device)
        u = reroll(lat, u, fresh, g.unroll(fresh), group, int(track), int(bar))
    yield to_binary(g.decode(u))


def to_binary(out: torch.Tensor) -> torch.Tensor:
    """(n, tracks, bars, steps, pitches) tanh values -> (n, tracks, bars·steps, pitches) one-hot by argmax."""
    n = out.shape[0]
    flat = out.reshape(n, N_TRACKS, N_BARS * N_STEPS, N_PITCHES)
    return torch.nn.functional.one_hot(flat.argmax(-1), N_PITCHES).float().cpu()


def preview(model: MuseGAN, generator: torch.Generator) -> torch.Tensor:
    return next(sample(model, 1, generator))[0]


# --- output ---

def to_midi(roll, bpm: float = 90.0, programs: dict | None = None) -> pretty_midi.PrettyMIDI:
    """One (4, steps, 48) roll -> a 4-instrument PrettyMIDI; repeated pitches are one held note."""
    check_range("Tempo (bpm)", bpm, 20, 300)
    programs = programs or PROGRAMS
    roll = np.asarray(roll)
    if roll.ndim != 3 or roll.shape[0] != N_TRACKS or roll.shape[2] != N_PITCHES:
        raise ValueError(f"A piano roll must be (4, steps, {N_PITCHES}); got {roll.shape}.")
    sec = 60.0 / bpm / music.STEPS_PER_QUARTER
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for k, name in enumerate(TRACKS):
        inst = pretty_midi.Instrument(program=programs[name], name=name)
        active = roll[k].max(1) > 0
        pitch = np.where(active, roll[k].argmax(1), -1)
        t = 0
        while t < len(pitch):
            end = t + 1
            while end < len(pitch) and pitch[end] == pitch[t] and (end - t) < 8 and end % N_STEPS:
                end += 1  # hold up to a half note, re-strike at each bar line
            if pitch[t] >= 0:
                inst.notes.append(pretty_midi.Note(80, int(pitch[t]) + LOWEST, t * sec, end * sec - 0.01))
            t = end
        midi.instruments.append(inst)
    return midi


def voice_notes(roll) -> dict[str, list[str]]:
    """One (4, steps, 48) roll -> each voice's note name at each step (soprano first)."""
    pitch = np.asarray(roll).argmax(-1) + LOWEST  # (4, steps)
    return {v: [pretty_midi.note_number_to_name(int(m)) for m in pitch[k]] for k, v in enumerate(TRACKS)}


def changed_voices(a, b) -> list[str]:
    """The voices whose notes differ between two (4, steps, 48) rolls."""
    return [v for k, v in enumerate(TRACKS) if not np.array_equal(np.asarray(a)[k], np.asarray(b)[k])]


# --- evaluation ---

MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)


def in_key(pitch: np.ndarray) -> float:
    """Mean over phrases of the fraction of steps whose pitch fits the best-fitting major scale
    (natural minor shares it): 1.0 for a diatonic phrase."""
    pc = (pitch + LOWEST) % 12  # (n, 4, T)
    scales = np.stack([np.roll(MAJOR, s) for s in range(12)])  # (12, 12)
    fit = scales[:, pc.reshape(len(pc), -1)].mean(-1)  # (12, n)
    return float(fit.max(0).mean())


def wide_leaps(pitch: np.ndarray, voice: int = 0, wider_than: int = 7) -> float:
    """Of the top voice's moves (consecutive steps whose pitch differs), the fraction wider than a
    perfect fifth (7 semitones): about 1 % in Bach's soprano lines, far more in a jittery generator."""
    moves = np.abs(np.diff(np.asarray(pitch)[:, voice], axis=-1))
    moves = moves[moves > 0]
    return float((moves > wider_than).mean()) if len(moves) else 0.0


@torch.no_grad()
def evaluate(model: MuseGAN, pitch: torch.Tensor) -> dict:
    """Critic's Wasserstein estimate on held-out phrases, and how diatonic the samples are vs Bach."""
    real = one_hot(pitch[:512].to(device_of(model)))
    fake_roll = next(sample(model, min(MAX_PIECES, len(pitch)), seeded(0)))
    model.eval()
    fakes = one_hot(fake_roll.argmax(-1).to(device_of(model)))
    w = float(model.critic(real).mean() - model.critic(fakes).mean())
    gen_pitch = fake_roll.argmax(-1).numpy()
    return {"wasserstein_held_out": round(w, 3), "in_key_samples": round(in_key(gen_pitch), 3),
            "in_key_bach": round(in_key(pitch.numpy()), 3),
            "voice_changes_per_bar_samples": round(float((np.diff(gen_pitch, axis=-1) != 0).sum(-1).mean()) / N_BARS, 2),
            "voice_changes_per_bar_bach": round(float((np.diff(pitch.numpy(), axis=-1) != 0).sum(-1).mean()) / N_BARS, 2),
            "wide_leaps_samples": round(wide_leaps(gen_pitch), 3), "wide_leaps_bach": round(wide_leaps(pitch.numpy()), 3)}


def describe(cfg: dict) -> str:
    return (f"4 latent groups of {cfg['z_dim']}, generator width {cfg['g_width']}, critic width {cfg['d_width']}, "
            f"{cfg['n_critic']} critic steps")


def card_lines(m: dict) -> list[str]:
    leaps = (f"; {m['wide_leaps_samples']:.0%} of the top voice's moves leap wider than a fifth (Bach: "
             f"{m['wide_leaps_bach']:.0%})") if "wide_leaps_samples" in m else ""
    return [f"Samples: {m['in_key_samples']:.0%} of steps in the best-fitting key (Bach's held-out phrases: "
            f"{m['in_key_bach']:.0%}); each voice changes pitch {m['voice_changes_per_bar_samples']:g} times a bar "
            f"(Bach: {m['voice_changes_per_bar_bach']:g}){leaps}. Critic's Wasserstein estimate, held-out Bach vs "
            f"samples: {m['wasserstein_held_out']:g}."]


FAMILY = Family(
    name="musegan",
    title="MuseGAN",
    config_cls=MuseGANConfig,
    build=build_model,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    data=data,
    optimizers=optimizers,
    preview=preview,
    ema_parts=("generator",),  # the averaged generator is sampled; the critic keeps its raw weights
    kind="music",
    unit="phrases",
    describe=describe,
    card_lines=card_lines,
)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Cache the 4-part Bach chorales as piano rolls for MuseGAN.")
    p.add_argument("command", choices=["build"])
    p.parse_args(argv)
    path = build()
    pitch, piece = phrases.__wrapped__()
    print(f"{len(np.unique(piece))} chorales, {len(pitch)} two-bar phrases -> {path}")


if __name__ == "__main__":
    main()
