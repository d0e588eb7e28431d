"""Music transformer (Foster, *Generative Deep Learning* 2nd ed., ch. 11): Bach-like melodies, one
(pitch, duration) pair at a time.

A piece is a sequence of token pairs (see :mod:`models.music.notes`). Each step's pitch and duration are
embedded, the two vectors **added**, and a sinusoidal position code added on top (Vaswani et al.
2017, https://arxiv.org/abs/1706.03762):

    h_0[t] = E_pitch[p_t] + E_duration[d_t] + PE(t)
    PE(t, 2i) = sin(t / 10000^(2i/d)),  PE(t, 2i+1) = cos(t / 10000^(2i/d))

A stack of transformer blocks with **causal** self-attention (step t sees steps ≤ t only),

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + mask) V,

turns ``h`` into a summary of the past, and two softmax heads read the next pitch and the next
duration from it. Training minimises the sum of the two cross-entropies (teacher forcing on windows
of real music); generation samples a pitch from ``softmax(logits / T_pitch)`` and a duration from
``softmax(logits / T_duration)``, appends the pair and repeats. The attention weights say which
earlier notes each new note looked at: that is the attention heatmap in the studio.

The book's model (``book`` preset) is one block with 5 heads of key size 256 on windows of 50
notes, and concatenates two half-size embeddings; here they are added, as in the token-plus-position
embedding of the same chapter. Blocks are pre-norm (GPT-2 style), which trains steadily at any depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.music import notes as music
from models.core.family import Family, check_range, device_of

MAX_PIECES = 16  # pieces generated at once
MAX_NOTES = 2000  # notes per piece


@dataclass
class MusicConfig:
    dataset: str = "chorales"  # music21's 371 Bach chorales (every tenth held out)
    midi_files: tuple = ()  # the user's MIDI files, added to the training data
    transpose: int = 0  # also train on every transposition up to ± this many semitones
    seq_len: int = 50  # notes per training window (the book's SEQ_LEN)
    d_model: int = 256  # embedding size (the book's EMBEDDING_DIM)
    n_heads: int = 5
    head_dim: int = 256  # key size per head (the book's KEY_DIM)
    n_layers: int = 1  # transformer blocks
    ff_dim: int = 256  # feed-forward width
    dropout: float = 0.3
    lr: float = 1e-3  # Adam
    batch_size: int = 256
    steps: int = 5000

    def __post_init__(self):
        self.midi_files = tuple(str(f) for f in self.midi_files)

    def validate(self):
        check_common(self)
        check_range("embedding size", self.d_model, 4, 2048)
        check_range("attention heads", self.n_heads, 1, 32)
        check_range("key size", self.head_dim, 2, 1024)
        check_range("transformer blocks", self.n_layers, 1, 24)
        check_range("feed-forward width", self.ff_dim, 4, 8192)
        if self.d_model % 2:
            raise ValueError(f"Embedding size must be even (sine and cosine pairs); got {self.d_model}.")


def check_common(config) -> None:
    """The settings every music family shares: data, window and optimisation."""
    if config.dataset != "chorales":
        raise ValueError(f"Unknown dataset {config.dataset!r}; the music families train on 'chorales' "
                         "(plus any MIDI files you add).")
    check_range("transposition", config.transpose, 0, 11)
    check_range("window length", config.seq_len, 4, 1024)
    check_range("dropout", config.dropout, 0.0, 0.9)
    check_range("learning rate", config.lr, 1e-7, 1.0)
    check_range("batch size", config.batch_size, 1, 4096)
    check_range("steps", config.steps, 1, 10_000_000)


BOOK_SAMPLING = {"note_temperature": 0.5, "duration_temperature": 0.5}  # Foster 2nd ed. ch. 11's sampling temperatures

PRESETS = {
    "book": {},
    # about 20 minutes on one CPU thread; transposing ±5 semitones multiplies 334 melodies by 11
    "cpu": {"transpose": 5, "seq_len": 64, "d_model": 128, "n_heads": 4, "head_dim": 32, "n_layers": 3,
            "ff_dim": 256, "dropout": 0.2, "lr": 1e-3, "batch_size": 32, "steps": 3000},
    "tiny": {"seq_len": 16, "d_model": 16, "n_heads": 2, "head_dim": 8, "n_layers": 1, "ff_dim": 32,
             "dropout": 0.0, "batch_size": 8, "steps": 2},
}


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) position codes: sin on even dims, cos on odd, wavelengths 2π … 10000·2π."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class CausalSelfAttention(nn.Module):
    def __init__(self, c: MusicConfig):
        super().__init__()
        self.h, self.dk = c.n_heads, c.head_dim
        self.qkv = nn.Linear(c.d_model, 3 * c.n_heads * c.head_dim)
        self.out = nn.Linear(c.n_heads * c.head_dim, c.d_model)
        self.dropout = c.dropout

    def forward(self, x, need_weights: bool = False):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, self.dk).permute(2, 0, 3, 1, 4)  # each (B, H, T, dk)
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.dk)  # (B, H, T, T)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            weights = scores.masked_fill(mask, float("-inf")).softmax(-1)
            y = weights @ v
        else:
            weights = None
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, self.h * self.dk)), weights


class Block(nn.Module):
    def __init__(self, c: MusicConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = CausalSelfAttention(c)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.ff_dim), nn.GELU(), nn.Linear(c.ff_dim, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, need_weights: bool = False):
        a, w = self.attn(self.ln1(x), need_weights)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ln2(x))), w


class MusicTransformer(nn.Module):
    def __init__(self, c: MusicConfig):
        super().__init__()
        self.seq_len = c.seq_len
        self.pitch_emb = nn.Embedding(music.N_PITCH, c.d_model)
        self.duration_emb = nn.Embedding(music.N_DURATION, c.d_model)
        self.register_buffer("pe", sinusoidal_positions(c.seq_len, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln = nn.LayerNorm(c.d_model)
        self.pitch_head = nn.Linear(c.d_model, music.N_PITCH)
        self.duration_head = nn.Linear(c.d_model, music.N_DURATION)

    def forward(self, pitches, durations, need_weights: bool = False):
        """Tokens (B, T), T ≤ seq_len -> pitch logits (B, T, 90), duration logits (B, T, 33) for the
        *next* step, and per-block attention weights (B, H, T, T) when asked."""
        T = pitches.shape[1]
        if T > self.seq_len:
            raise ValueError(f"At most {self.seq_len} notes fit in the model's window; got {T}.")
        x = self.drop(self.pitch_emb(pitches) + self.duration_emb(durations) + self.pe[:T])
        weights = []
        for block in self.blocks:
            x, w = block(x, need_weights)
            weights.append(w)
        x = self.ln(x)
        return self.pitch_head(x), self.duration_head(x), weights


def build(config: MusicConfig) -> MusicTransformer:
    return MusicTransformer(config)


def losses(model: MusicTransformer, pitches, durations) -> dict:
    """Teacher-forced cross-entropies (nats per note) of windows (B, seq_len + 1)."""
    lp, ld, _ = model(pitches[:, :-1], durations[:, :-1])
    note = F.cross_entropy(lp.reshape(-1, lp.shape[-1]), pitches[:, 1:].reshape(-1))
    dur = F.cross_entropy(ld.reshape(-1, ld.shape[-1]), durations[:, 1:].reshape(-1))
    return {"note_loss": note, "duration_loss": dur,
            "note_accuracy": (lp.argmax(-1) == pitches[:, 1:]).float().mean(),
            "duration_accuracy": (ld.argmax(-1) == durations[:, 1:]).float().mean()}


def train_step(model: MusicTransformer, batch, config: MusicConfig) -> dict:
    out = losses(model, *batch)
    return {"loss": out["note_loss"] + out["duration_loss"], "note_loss": out["note_loss"].detach(),
            "duration_loss": out["duration_loss"].detach()}


@torch.no_grad()
def evaluate(model: MusicTransformer, pitches, durations, batch_size: int = 256) -> dict:
    """Held-out cross-entropy per note (nats) for pitch and duration, and next-token accuracy."""
    model.eval()
    device = device_of(model)
    sums, n = {}, 0
    for i in range(0, len(pitches), batch_size):
        p, d = pitches[i:i + batch_size].to(device), durations[i:i + batch_size].to(device)
        for k, v in losses(model, p, d).items():
            sums[k] = sums.get(k, 0.0) + v.item() * len(p)
        n += len(p)
    out = {k: v / n for k, v in sums.items()}
    out["loss"] = out["note_loss"] + out["duration_loss"]
    out["note_perplexity"] = math.exp(out["note_loss"])
    return out


def data(config: MusicConfig, split: str):
    """Windows of ``seq_len + 1`` token pairs: overlapping halves for training (every transposition
    up to ± ``transpose``, the user's MIDI files included), disjoint held-out chorales for testing."""
    pieces = [(p, d) for _, p, d in music.chorale_split(split)]
    names = []
    if split == "train":
        for f in config.midi_files:
            pieces.append(music.read_midi(f))
            names.append(Path(f).name)
        shifted = []
        for shift in range(-config.transpose, config.transpose + 1):
            for p, d in pieces:
                try:
                    shifted.append((music.transpose(p, shift), d))
                except ValueError:
                    pass  # this piece cannot move that far inside the piano range
        n_pieces, pieces = len(pieces), shifted
        stride = max(1, config.seq_len // 2)
    else:
        n_pieces, stride = len(pieces), config.seq_len + 1
    p, d = music.windows(pieces, config.seq_len + 1, stride)
    info = {"title": "Bach chorales (music21 corpus), top line as (pitch, duration) tokens",
            "pieces": n_pieces, "notes": int(sum(len(pp) for pp, _ in pieces)),
            "held_out": "every tenth chorale"}
    if split == "train":
        info["transpositions"] = f"±{config.transpose} semitones"
        if names:
            info["midi_files"] = names
    return (torch.from_numpy(p), torch.from_numpy(d)), info


def _distribution(logits, temperature: float):
    """softmax(logits / T) with START ruled out; T = 0 means always the most likely token."""
    logits = logits.clone()
    logits[:, music.START] = float("-inf")
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return (logits / temperature).softmax(-1)


def check_prompt(prompt) -> tuple[np.ndarray, np.ndarray]:
    if prompt is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    p, d = (np.asarray(x, dtype=np.int64).reshape(-1) for x in prompt)
    if len(p) != len(d):
        raise ValueError(f"A seed phrase needs as many durations as pitches; got {len(p)} and {len(d)}.")
    check_range("seed phrase length", len(p), 0, MAX_NOTES)
    if len(p) and (p.min() < 1 or p.max() >= music.N_PITCH or d.min() < 1 or d.max() >= music.N_DURATION):
        raise ValueError("The seed phrase has tokens outside the vocabulary.")
    return p, d


@torch.no_grad()
def sample(model: MusicTransformer, n: int, generator: torch.Generator | None = None, notes: int = 64,
           note_temperature: float = 1.0, duration_temperature: float = 1.0, prompt=None):
    """Generate ``n`` pieces of ``notes`` new notes each, after START and an optional seed phrase
    ``prompt = (pitch tokens, duration tokens)``. Yields after every note a dict with the pieces so
    far (``pitch``, ``duration``: (n, 1 + len(prompt) + k), START first), the distributions each new
    note was drawn from (``note_probs`` (n, k, 90), ``duration_probs`` (n, k, 33)) and
    ``prompt_length``. Beyond the model's window it sees the latest ``seq_len`` notes."""
    check_range("number of pieces", n, 1, MAX_PIECES)
    check_range("number of notes", notes, 1, MAX_NOTES)
    check_range("pitch temperature", note_temperature, 0.0, 10.0)
    check_range("duration temperature", duration_temperature, 0.0, 10.0)
    pp, pd = check_prompt(prompt)
    model.eval()
    device = device_of(model)
    start = 1 + len(pp)
    pitch = torch.zeros(n, start + notes, dtype=torch.long, device=device)
    duration = torch.zeros_like(pitch)
    pitch[:, 1:start] = torch.from_numpy(pp).to(device)
    duration[:, 1:start] = torch.from_numpy(pd).to(device)
    note_probs = torch.zeros(n, notes, music.N_PITCH)
    duration_probs = torch.zeros(n, notes, music.N_DURATION)
    for k in range(notes):
        t = start + k
        lo = max(0, t - model.seq_len)
        lp, ld, _ = model(pitch[:, lo:t], duration[:, lo:t])
        probs_p = _distribution(lp[:, -1], note_temperature)
        probs_d = _distribution(ld[:, -1], duration_temperature)
        pitch[:, t] = torch.multinomial(probs_p, 1, generator=generator)[:, 0]
        duration[:, t] = torch.multinomial(probs_d, 1, generator=generator)[:, 0]
        note_probs[:, k], duration_probs[:, k] = probs_p.cpu(), probs_d.cpu()
        yield {"pitch": pitch[:, :t + 1].cpu(), "duration": duration[:, :t + 1].cpu(),
               "note_probs": note_probs[:, :k + 1], "duration_probs": duration_probs[:, :k + 1],
               "prompt_length": len(pp)}


@torch.no_grad()
def attention(model: MusicTransformer, pitches, durations) -> tuple[np.ndarray, int]:
    """Attention weights over the last ``seq_len`` steps of one piece: (layers, heads, T, T) and
    the index of the first step shown. Row t is what step t looked at to predict step t + 1."""
    p = torch.as_tensor(np.asarray(pitches), dtype=torch.long).reshape(1, -1)
    d = torch.as_tensor(np.asarray(durations), dtype=torch.long).reshape(1, -1)
    lo = max(0, p.shape[1] - model.seq_len)
    model.eval()
    device = device_of(model)
    _, _, weights = model(p[:, lo:].to(device), d[:, lo:].to(device), need_weights=True)
    return torch.stack([w[0] for w in weights]).cpu().numpy(), lo


def attention_shape(config) -> tuple[int, int]:
    """(layers, heads) of a music model's attention maps: the transformer's blocks and heads; the
    attention RNN has one of each."""
    return (config.n_layers, config.n_heads) if isinstance(config, MusicConfig) else (1, 1)


def attention_map(model, config, pitches, durations, layer: int, head="mean") -> tuple[np.ndarray, int]:
    """One layer's attention over the last ``seq_len`` steps of a piece: head ``head`` (from 1), or
    ``"mean"`` of the layer's heads, as (T, T) with rows summing to 1, and the first step's index."""
    n_layers, n_heads = attention_shape(config)
    if not 1 <= layer <= n_layers:
        raise ValueError(f"Layer must be from 1 to {n_layers}; got {layer}.")
    if head != "mean":
        try:
            h = int(head)
        except (TypeError, ValueError):
            h = 0
        if not 1 <= h <= n_heads:
            raise ValueError(f"Head must be 'mean' or from 1 to {n_heads}; got {head}.")
    weights, lo = attention(model, pitches, durations)  # (L, H, T, T)
    w = weights[layer - 1].mean(0) if head == "mean" else weights[layer - 1, h - 1]
    return w, lo


def preview(model: MusicTransformer, generator: torch.Generator) -> dict:
    """One 48-note piece from START, for the training view (piano roll and audio)."""
    out = None
    for out in sample(model, 1, generator, notes=48):
        pass
    return {"pitch": out["pitch"][0].numpy(), "duration": out["duration"][0].numpy()}


def data_words(cfg: dict) -> str:
    """The data settings both music families share, for cards and checkpoint lists."""
    return (f"window {cfg['seq_len']} notes, transposed ±{cfg['transpose']}"
            + (f", plus {len(cfg['midi_files'])} of your MIDI files" if cfg.get("midi_files") else ""))


def describe(cfg: dict) -> str:
    return (f"transformer: {cfg['n_layers']} blocks × {cfg['n_heads']} heads, embedding {cfg['d_model']}, "
            + data_words(cfg))


def card_lines(m: dict) -> list[str]:
    """Held-out losses beside the measured context-free baselines (:func:`notes.baselines`)."""
    b = music.baselines()
    return [f"Held-out chorales: pitch loss **{m['note_loss']:.2f} nats** (perplexity {m['note_perplexity']:.1f}, "
            f"next pitch right {m['note_accuracy']:.0%}), duration loss **{m['duration_loss']:.2f} nats** "
            f"(right {m['duration_accuracy']:.0%}).",
            f"Baselines measured on the held-out chorales: every token equally likely (an untrained network) "
            f"{b['note_uniform']:.2f} and {b['duration_uniform']:.2f} nats; the training chorales' plain "
            f"pitch and duration frequencies {b['note_unigram']:.2f} and {b['duration_unigram']:.2f} nats."]


FAMILY = Family(
    name="music_transformer",
    title="Music transformer",
    config_cls=MusicConfig,
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
