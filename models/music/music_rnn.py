"""Attention RNN for music (Foster, *Generative Deep Learning* 1st ed., ch. 7): an LSTM reads the
(pitch, duration) tokens and a small attention layer decides which earlier steps matter.

Pitch and duration are embedded and concatenated, and stacked LSTMs give a hidden state ``h_s`` per
step. Foster's attention scores every step with one learnt vector, then normalises over the steps
seen so far (Bahdanau et al. 2015, https://arxiv.org/abs/1409.0473, without a query):

    e_s = vᵀ tanh(W h_s)
    α_{t,s} = exp(e_s) / Σ_{s' ≤ t} exp(e_{s'})      (s ≤ t: causal)
    c_t = Σ_{s ≤ t} α_{t,s} h_s

and two softmax heads read the next pitch and duration from the context ``c_t``. The book predicts
only the note after a whole window; normalising over each prefix trains every position at once
with the same weights. ``α`` is the attention heatmap in the studio (one layer, one head).

The data, loss, sampler and attention read-out are the music transformer's (:mod:`models.music_transformer`):
both models take tokens (B, T) and return pitch logits, duration logits and attention weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.music import music_transformer as mt, notes as music
from models.core.family import Family, check_range


@dataclass
class MusicRNNConfig:
    dataset: str = "chorales"  # music21's Bach chorales (every tenth held out)
    midi_files: tuple = ()  # the user's MIDI files, added to the training data
    transpose: int = 0  # also train on every transposition up to ± this many semitones
    seq_len: int = 32  # notes per training window (the book's seq_len)
    embed_dim: int = 100  # each of the pitch and duration embeddings (the book's embed_size)
    hidden: int = 256  # LSTM units (the book's rnn_units)
    lstm_layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 32
    steps: int = 10_000

    def __post_init__(self):
        self.midi_files = tuple(str(f) for f in self.midi_files)

    def validate(self):
        mt.check_common(self)
        check_range("embedding size", self.embed_dim, 2, 1024)
        check_range("LSTM units", self.hidden, 2, 4096)
        check_range("LSTM layers", self.lstm_layers, 1, 8)


PRESETS = {
    "book": {},
    # about 20 minutes on one CPU thread, like the transformer's cpu preset
    "cpu": {"transpose": 5, "seq_len": 64, "embed_dim": 64, "hidden": 192, "lstm_layers": 2, "dropout": 0.2,
            "batch_size": 32, "steps": 2500},
    "tiny": {"seq_len": 16, "embed_dim": 8, "hidden": 16, "lstm_layers": 1, "dropout": 0.0, "batch_size": 8,
             "steps": 2},
}


class AttentionRNN(nn.Module):
    def __init__(self, c: MusicRNNConfig):
        super().__init__()
        self.seq_len = c.seq_len
        self.pitch_emb = nn.Embedding(music.N_PITCH, c.embed_dim)
        self.duration_emb = nn.Embedding(music.N_DURATION, c.embed_dim)
        self.lstm = nn.LSTM(2 * c.embed_dim, c.hidden, num_layers=c.lstm_layers, batch_first=True,
                            dropout=c.dropout if c.lstm_layers > 1 else 0.0)
        self.score = nn.Sequential(nn.Linear(c.hidden, c.hidden), nn.Tanh(), nn.Linear(c.hidden, 1, bias=False))
        self.drop = nn.Dropout(c.dropout)
        self.pitch_head = nn.Linear(c.hidden, music.N_PITCH)
        self.duration_head = nn.Linear(c.hidden, music.N_DURATION)

    def forward(self, pitches, durations, need_weights: bool = False):
        """Tokens (B, T) -> pitch logits (B, T, 90), duration logits (B, T, 33) for the next step, and
        ``[α]`` with α (B, 1, T, T) when asked (one layer, one head, for the attention view)."""
        T = pitches.shape[1]
        if T > self.seq_len:
            raise ValueError(f"At most {self.seq_len} notes fit in the model's window; got {T}.")
        x = torch.cat([self.pitch_emb(pitches), self.duration_emb(durations)], -1)  # (B, T, 2E)
        h, _ = self.lstm(x)  # (B, T, H)
        e = self.score(h)[..., 0]  # (B, T): how much each step is worth attending to
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).triu(1)  # step t sees s ≤ t
        alpha = e[:, None, :].expand(-1, T, -1).masked_fill(mask, float("-inf")).softmax(-1)  # (B, T, T)
        c = self.drop(alpha @ h)  # (B, T, H)
        return self.pitch_head(c), self.duration_head(c), [alpha[:, None] if need_weights else None]


def build(config: MusicRNNConfig) -> AttentionRNN:
    return AttentionRNN(config)


def describe(cfg: dict) -> str:
    return f"attention RNN: {cfg['lstm_layers']} LSTM layers × {cfg['hidden']} units, " + mt.data_words(cfg)


FAMILY = Family(
    name="music_rnn",
    title="Attention RNN (music)",
    config_cls=MusicRNNConfig,
    build=build,
    train_step=mt.train_step,
    sample=mt.sample,
    evaluate=mt.evaluate,
    presets=PRESETS,
    data=mt.data,
    preview=mt.preview,
    kind="music",
    unit="sequences",
    describe=describe,
    card_lines=mt.card_lines,
)
