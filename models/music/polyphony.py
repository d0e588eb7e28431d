"""Four-voice chorales from a transformer (Foster, *Generative Deep Learning* 2nd ed., ch. 11, polyphony):
the same next-token model as the melody transformer, on one stream of tokens that holds all four voices.

A chorale becomes one token stream in either of the book's two tokenisations (see
:mod:`models.music.chorales`): the **grid** (soprano, alto, tenor, bass at each sixteenth, each REST,
HOLD or a new pitch) or **events** (note-on with its voice, note-off, time-shift). Either way the model
is a causal transformer over that stream,

    h_0[i] = E_token[x_i] + E_voice[v_i] + E_place[b_i] + PE(i)
    p(x_{i+1} | x_{≤i}) = softmax(W · Blocks(h_0)[i] / T),

where ``v_i`` is the voice a token belongs to (4 for time shifts and BOS) and ``b_i`` the sixteenth
of the bar it sounds at (0..15; 16 for BOS): both follow from the tokens before it, so the model is
still an ordinary autoregressive model of the stream, told where in the texture and the bar it is
(the grid's voice is the slot's position mod 4, which a 256-token window does not tell by itself).
The blocks are the melody transformer's (:mod:`models.music.music_transformer`: pre-norm, causal
self-attention). Training is teacher forcing with cross-entropy; sampling draws one token at a time
from ``softmax(logits / T)`` and turns the stream back into four voices.

Sampling keeps the stream well formed, as a decoder that knows the grammar does: the grid never
HOLDs a silent voice, events never switch off a silent voice, never switch on a sounding one and never
switch off a note at the moment it started. Beyond the window the model sees the latest ``seq_len``
tokens.

The book describes both tokenisations but trains no polyphonic transformer; the ``book`` preset takes
the chapter's melody transformer (one block, 5 heads of key 256, embedding 256, dropout 0.3, batch 256)
with a window of 256 tokens (4 bars of grid, about 6 of events) instead of 50.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, check_range, device_of, last, seeded
from models.music import chorales as ch
from models.music.music_transformer import Block, sinusoidal_positions

MAX_PIECES = 16
MAX_BARS = 32
TEMPERATURE = 0.8  # the page's and the card's sampling temperature (a little below 1: steadier keys)
CARD_PIECES, CARD_BARS = 64, 8  # what the card's sample scores are drawn from (16 pieces gave ±1 point in key)


@dataclass
class PolyphonyConfig:
    dataset: str = "chorales"  # the four-part 4/4 chorales of music21's corpus (every tenth held out)
    tokenisation: str = "grid"  # "grid" or "events"
    transpose: int = 0  # also train on every transposition up to ± this many semitones
    seq_len: int = 256  # tokens per training window
    d_model: int = 256
    n_heads: int = 5
    head_dim: int = 256  # key size per head
    n_layers: int = 1
    ff_dim: int = 256
    dropout: float = 0.3
    lr: float = 1e-3  # Adam
    batch_size: int = 256
    steps: int = 5000

    def validate(self):
        if self.dataset != "chorales":
            raise ValueError(f"Unknown dataset {self.dataset!r}; the four-voice models train on 'chorales'.")
        ch.check_tokenisation(self.tokenisation)
        check_range("transposition", self.transpose, 0, 6)
        check_range("window length", self.seq_len, 8, 2048)
        check_range("embedding size", self.d_model, 4, 2048)
        check_range("attention heads", self.n_heads, 1, 32)
        check_range("key size", self.head_dim, 2, 1024)
        check_range("transformer blocks", self.n_layers, 1, 24)
        check_range("feed-forward width", self.ff_dim, 4, 8192)
        check_range("dropout", self.dropout, 0.0, 0.9)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        if self.d_model % 2:
            raise ValueError(f"Embedding size must be even (sine and cosine pairs); got {self.d_model}.")


PRESETS = {
    "book": {},
    # about half an hour on one busy CPU thread; transposing ±3 semitones multiplies the chorales by 7
    "cpu": {"transpose": 3, "seq_len": 192, "d_model": 128, "n_heads": 4, "head_dim": 32, "n_layers": 2,
            "ff_dim": 256, "dropout": 0.1, "lr": 1e-3, "batch_size": 16, "steps": 1200},
    "tiny": {"seq_len": 16, "d_model": 16, "n_heads": 2, "head_dim": 8, "n_layers": 1, "ff_dim": 32,
             "dropout": 0.0, "batch_size": 8, "steps": 2},
}


def vocab_size(tokenisation: str) -> int:
    return ch.GRID_VOCAB if tokenisation == "grid" else ch.EVENT_VOCAB


class PolyphonyTransformer(nn.Module):
    def __init__(self, c: PolyphonyConfig):
        super().__init__()
        self.seq_len, self.tokenisation = c.seq_len, c.tokenisation
        vocab = vocab_size(c.tokenisation)
        self.token_emb = nn.Embedding(vocab, c.d_model)
        self.voice_emb = nn.Embedding(ch.N_VOICES + 1, c.d_model)
        self.place_emb = nn.Embedding(ch.BAR + 1, c.d_model)
        self.register_buffer("pe", sinusoidal_positions(c.seq_len, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))  # Block reads the same field names
        self.ln = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, vocab)

    def forward(self, tokens, voice, place):
        """Tokens and their voice and place in the bar, each (B, T), T ≤ seq_len -> next-token logits (B, T, V)."""
        T = tokens.shape[1]
        if T > self.seq_len:
            raise ValueError(f"At most {self.seq_len} tokens fit in the model's window; got {T}.")
        x = self.drop(self.token_emb(tokens) + self.voice_emb(voice) + self.place_emb(place) + self.pe[:T])
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.ln(x))


def build(config: PolyphonyConfig) -> PolyphonyTransformer:
    return PolyphonyTransformer(config)


# --- data ---

def stream(voices, tokenisation: str) -> np.ndarray:
    """One piece as (3, 1 + n): BOS and its tokens, their voices, their places in the bar."""
    tokens = np.concatenate([[ch.BOS], ch.encode(voices, tokenisation)])
    return np.stack([tokens, *ch.features(tokens, tokenisation)])


def data(config: PolyphonyConfig, split: str):
    """Windows of ``seq_len + 1`` tokens (token, voice, place): overlapping halves of every training
    chorale in every transposition up to ± ``transpose``; disjoint windows of the held-out chorales."""
    pieces = ch.split(split)
    shifts = range(-config.transpose, config.transpose + 1) if split == "train" else [0]
    streams = []
    for _, _, voices in pieces:
        for s in shifts:
            try:
                streams.append(stream(ch.transpose(voices, s), config.tokenisation))
            except ValueError:
                pass  # this chorale cannot move that far inside the vocabulary
    joined = np.concatenate(streams, axis=1)  # (3, N)
    L = config.seq_len + 1
    stride = max(1, config.seq_len // 2) if split == "train" else L
    idx = np.arange(0, joined.shape[1] - L + 1, stride)[:, None] + np.arange(L)
    w = torch.from_numpy(joined[:, idx])  # (3, windows, L)
    info = {"title": f"Bach chorales (music21 corpus), four voices as {config.tokenisation} tokens",
            "pieces": len(pieces), "tokens": int(joined.shape[1]), "held_out": "every tenth chorale"}
    if split == "train":
        info["transpositions"] = f"±{config.transpose} semitones"
    return (w[0], w[1], w[2]), info


# --- training ---

def losses(model, tokens, voice, place) -> dict:
    logits = model(tokens[:, :-1], voice[:, :-1], place[:, :-1])
    target = tokens[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    return {"loss": loss, "accuracy": (logits.argmax(-1) == target).float().mean()}


def train_step(model, batch, config) -> dict:
    out = losses(model, *batch)
    return {"loss": out["loss"], "accuracy": out["accuracy"].detach()}


@torch.no_grad()
def evaluate(model, tokens, voice, place, batch_size: int = 64) -> dict:
    """Held-out cross-entropy per token (nats) and next-token accuracy; then the four-voice scores of
    samples drawn as the page draws them, beside the held-out chorales' and noise's."""
    model.eval()
    device = device_of(model)
    sums, n = {"loss": 0.0, "accuracy": 0.0}, 0
    for i in range(0, len(tokens), batch_size):
        part = [t[i:i + batch_size].to(device) for t in (tokens, voice, place)]
        for k, v in losses(model, *part).items():
            sums[k] += v.item() * len(part[0])
        n += len(part[0])
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["perplexity"] = math.exp(out["loss"])
    pieces = [v for seed in range(CARD_PIECES // MAX_PIECES)  # in batches the sampler allows, seeds 0, 1, ...
              for v in last(sample(model, MAX_PIECES, seeded(seed), bars=CARD_BARS, temperature=TEMPERATURE)).voices]
    out["four_voice_scores"] = {**ch.score(pieces), "temperature": TEMPERATURE, "bars_each": CARD_BARS}
    out["four_voice_reference"] = ch.reference(CARD_BARS)
    return out


# --- sampling ---

class Frame(NamedTuple):
    """What the sampler yields as the pieces grow: the token streams (BOS first), the four voices of each
    piece so far, and how many sixteenths of ``total`` are written."""

    tokens: torch.Tensor  # (n, T)
    voices: list  # n pieces, each four lists of (onset, end, midi)
    steps: int
    total: int


def prompt_stream(voices, tokenisation: str, bars: int) -> np.ndarray:
    """The first ``bars`` bars of ``voices`` as a stream (BOS first) that ends exactly on the bar line."""
    steps = bars * ch.BAR
    cut = ch.crop(ch.check_voices(voices), steps)
    if tokenisation == "grid":
        tokens = np.concatenate([[ch.BOS], ch.to_grid(cut, steps)])
    else:
        ev = ch.to_events(cut)
        _, _, now = ch.event_features(np.concatenate([[ch.BOS], ev]))
        tokens = np.concatenate([[ch.BOS], ev, ch.shifts(steps - now)]).astype(np.int64)  # silence to the bar line
    return np.stack([tokens, *ch.features(tokens, tokenisation)])


class Grammar:
    """What may come next in ``n`` growing streams: a mask of allowed tokens, updated token by token."""

    def __init__(self, tokenisation: str, n: int, vocab: int):
        self.grid = tokenisation == "grid"
        self.n, self.vocab = n, vocab
        self.sounding = np.zeros((n, ch.N_VOICES), bool)  # a note is on in the voice
        self.began = np.full((n, ch.N_VOICES), -1)  # when it started (events)
        self.now = np.zeros(n, np.int64)  # events: sixteenths so far
        self.slot = 0  # grid: slots so far (after BOS)

    def feed(self, tok: np.ndarray) -> None:
        """Take one token per stream (BOS resets)."""
        for i, t in enumerate(tok.tolist()):
            self._one(i, t)
        if self.grid:
            self.slot = 0 if tok[0] == ch.BOS else self.slot + 1  # slots after BOS (every stream is at the same slot)

    def _one(self, i: int, t: int) -> None:
        if t == ch.BOS:
            self.sounding[i], self.now[i] = False, 0
            return
        if self.grid:
            v = self.slot % ch.N_VOICES
            self.sounding[i, v] = t >= ch.HOLD and (t != ch.HOLD or self.sounding[i, v])
        elif ch.SHIFT0 <= t < ch.OFF0:
            self.now[i] += t - ch.SHIFT0 + 1
        elif ch.OFF0 <= t < ch.ON0:
            self.sounding[i, t - ch.OFF0] = False
        else:
            v = (t - ch.ON0) // ch.N_PITCHES
            self.sounding[i, v], self.began[i, v] = True, self.now[i]

    def mask(self) -> torch.Tensor:
        """(n, vocab) True where a token may come next."""
        m = np.ones((self.n, self.vocab), bool)
        m[:, ch.BOS] = False
        if self.grid:
            m[:, ch.HOLD] = self.sounding[:, self.slot % ch.N_VOICES]
        else:
            for v in range(ch.N_VOICES):
                on = self.sounding[:, v]
                m[:, ch.OFF0 + v] = on & (self.began[:, v] < self.now)
                m[:, ch.ON0 + v * ch.N_PITCHES:ch.ON0 + (v + 1) * ch.N_PITCHES] = ~on[:, None]
        return torch.from_numpy(m)

    def steps(self) -> int:
        """Sixteenths every stream has completed (the slowest one)."""
        return self.slot // ch.N_VOICES if self.grid else int(self.now.min())


def _features(tokens: np.ndarray, kind: str, grammar: Grammar, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(voice, place in the bar) of the tokens about to be taken at stream index ``t``, before the grammar
    takes them (an event sounds at the time so far)."""
    if kind == "grid":
        v, p = ch.grid_features(1, t)
        return np.full(len(tokens), v[0]), np.full(len(tokens), p[0])
    voice = np.where((tokens >= ch.OFF0) & (tokens < ch.ON0), tokens - ch.OFF0,
                     np.where(tokens >= ch.ON0, (tokens - ch.ON0) // ch.N_PITCHES, ch.N_VOICES))
    return voice, grammar.now % ch.BAR


@torch.no_grad()
def sample(model: PolyphonyTransformer, n: int, generator: torch.Generator | None = None, bars: int = 4,
           temperature: float = TEMPERATURE, prompt=None, prompt_bars: int = 2):
    """Generate ``n`` four-voice pieces of ``bars`` new bars each, after BOS and optionally the first
    ``prompt_bars`` bars of ``prompt`` (four voices). Yields a :class:`Frame` after every bar."""
    check_range("number of pieces", n, 1, MAX_PIECES)
    check_range("bars", bars, 1, MAX_BARS)
    check_range("temperature", temperature, 0.0, 10.0)
    check_range("prompt bars", prompt_bars, 1, MAX_BARS)
    if int(n) != n or int(bars) != bars or int(prompt_bars) != prompt_bars:
        raise ValueError("Pieces, bars and prompt bars must be whole numbers.")
    kind = model.tokenisation
    device = device_of(model)
    start = (prompt_stream(prompt, kind, int(prompt_bars)) if prompt is not None
             else np.array([[ch.BOS], [ch.N_VOICES], [ch.BAR]]))  # (3, T0)
    vocab = vocab_size(kind)
    grammar = Grammar(kind, n, vocab)
    for t in start[0]:
        grammar.feed(np.full(n, t))
    seqs = torch.from_numpy(np.repeat(start[None], n, 0)).to(device)  # (n, 3, T)
    offset = int(prompt_bars) * ch.BAR if prompt is not None else 0
    total = offset + int(bars) * ch.BAR
    limit = int(bars) * ch.BAR * (ch.N_VOICES if kind == "grid" else 12)  # events: at most 12 a sixteenth
    model.eval()
    shown = offset // ch.BAR
    for _ in range(limit):
        T = seqs.shape[2]
        lo = max(0, T - model.seq_len)
        logits = model(seqs[:, 0, lo:], seqs[:, 1, lo:], seqs[:, 2, lo:])[:, -1].float().cpu()
        logits = logits.masked_fill(~grammar.mask(), float("-inf"))
        if temperature == 0:
            tok = logits.argmax(-1)
        else:
            tok = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
        done = grammar.steps() >= total
        tok_np = tok.numpy()
        voice, place = _features(tok_np, kind, grammar, T)
        grammar.feed(tok_np)
        seqs = torch.cat([seqs, torch.from_numpy(np.stack([tok_np, voice, place], 1))[:, :, None].to(device)], 2)
        steps = grammar.steps()
        if steps // ch.BAR > shown or steps >= total:
            shown = steps // ch.BAR
            yield frame(seqs[:, 0].cpu(), kind, min(steps, total), total)
        if done or steps >= total:
            return
    yield frame(seqs[:, 0].cpu(), kind, min(grammar.steps(), total), total)


def frame(tokens: torch.Tensor, kind: str, steps: int, total: int) -> Frame:
    return Frame(tokens, [ch.crop(ch.decode(row.numpy(), kind), total) for row in tokens], steps, total)


def preview(model, generator: torch.Generator) -> dict:
    """Two bars from BOS, for the training view."""
    return {"voices": last(sample(model, 1, generator, bars=2)).voices[0]}


# --- cards ---

def describe(cfg: dict) -> str:
    return (f"{cfg['tokenisation']} tokens, transformer: {cfg['n_layers']} blocks × {cfg['n_heads']} heads, "
            f"embedding {cfg['d_model']}, window {cfg['seq_len']} tokens, transposed ±{cfg['transpose']}")


def score_row(s: dict) -> str:
    return (f"in key **{s['in_key']:.1%}**, in voice range {s['in_range']:.1%} (S {s['in_range_soprano']:.0%}, "
            f"A {s['in_range_alto']:.0%}, T {s['in_range_tenor']:.0%}, B {s['in_range_bass']:.0%}), parallel fifths "
            f"and octaves {s['parallels_per_bar']:.2f} per bar, {s['notes_per_bar']:.1f} notes per bar")


def card_lines(m: dict) -> list[str]:
    s, cal = m["four_voice_scores"], m["four_voice_reference"]
    return [f"Held-out chorales: **{m['loss']:.3f} nats per token** (perplexity {m['perplexity']:.2f}, next token "
            f"right {m['accuracy']:.0%}).",
            f"{s['pieces']} samples of {s['bars_each']} bars at temperature {s['temperature']:g}: "
            + score_row(s) + ".",
            f"Bach, the first {s['bars_each']} bars of the {cal['bach_held_out']['pieces']} held-out chorales: "
            + score_row(cal["bach_held_out"]) + ".",
            "Noise (Bach's rhythm, random pitches near each voice's range): " + score_row(cal["noise"]) + "."]


FAMILY = Family(
    name="polyphony",
    title="Four-voice transformer",
    config_cls=PolyphonyConfig,
    build=build,
    train_step=train_step,
    sample=sample,
    evaluate=evaluate,
    presets=PRESETS,
    data=data,
    preview=preview,
    kind="music",
    unit="sequences",
    describe=describe,
    card_lines=card_lines,
)


def rescore(name: str) -> dict:
    """Score a shipped checkpoint again with this file's sampler and scores, and rewrite its card's metrics
    (after the page's temperature or the scores change; the weights are not touched)."""
    from models.core import checkpoint
    from models.core.train import SHIPPED

    path = SHIPPED / f"{name}.safetensors"
    model, config, _ = checkpoint.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    test, _ = FAMILY.examples(config, "test")
    card["metrics"] = evaluate(model, *test)
    card["rescored"] = time.strftime("%Y-%m-%d %H:%M:%S")
    checkpoint.write_json(path.with_suffix(".json"), card)
    return card["metrics"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Re-score a shipped four-voice checkpoint's card.")
    p.add_argument("command", choices=["rescore"])
    p.add_argument("name")
    a = p.parse_args(argv)
    print("\n".join(card_lines(rescore(a.name))))


if __name__ == "__main__":
    main()
