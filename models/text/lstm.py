"""Recurrent language model (Foster ch. 5, Chollet ch. 12): embedding → LSTM (or GRU) → softmax.

A recurrent network reads a text one token at a time and keeps a state vector that summarises
everything read so far. An LSTM cell (Hochreiter & Schmidhuber 1997) updates its cell state c
through gates, which lets gradients flow across many steps:

    f, i, o = σ(W [h_{t-1}, x_t] + b)        forget, input and output gates
    c_t = f ⊙ c_{t-1} + i ⊙ tanh(W_c [h_{t-1}, x_t] + b_c)
    h_t = o ⊙ tanh(c_t)                      → Dense → logits of the next token

A GRU (Cho et al. 2014) merges the gates into two and has no separate cell state. Foster's
settings are the ``book`` preset (1st ed. ch. 6, Aesop's fables): word tokens, embedding 100, one
LSTM layer of 256 units, dropout 0.2; ``book2`` is the 2nd edition's (ch. 5, Epicurious recipes):
embedding 100, LSTM 128, vocabulary 10,000, no dropout. Neither corpus ships offline: the review
snippets, Hamlet or the King James Bible stand in. Sampling is cheap: the hidden state *is* the
cache, so each new token costs one cell update.

Reading the state (Karpathy, Johnson & Fei-Fei 2015, https://arxiv.org/abs/1506.02078): a few units
of a character LSTM track something readable — being inside quotes, the position in the line, a
speaker's name. :func:`states` replays the text one step at a time with the LSTM's own weights to
get h_t *and* c_t at every step (``nn.LSTM`` returns only h per step), and :func:`feature_units`
ranks the units by their correlation with such features (:func:`text_features`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

import torch
from torch import nn

from models.text import corpus as text
from models.core.family import check_range


@dataclass
class LSTMConfig(text.TextConfig):
    cell: str = "lstm"  # "lstm" or "gru"
    embedding: int = 100  # Foster's embedding size
    hidden: int = 256  # recurrent units per layer
    layers: int = 1  # 1 or 2 stacked layers
    dropout: float = 0.2  # on the embeddings, between layers and before the output layer

    def validate(self):
        super().validate()
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"Cell must be 'lstm' or 'gru'; got {self.cell!r}.")
        check_range("embedding size", self.embedding, 1, 4096)
        check_range("hidden units", self.hidden, 1, 4096)
        check_range("layers", self.layers, 1, 2)
        check_range("dropout", self.dropout, 0.0, 0.9)


PRESETS = {
    "book": {},  # Foster 1st ed.: word level, embedding 100, LSTM 256, dropout 0.2
    # Foster 2nd ed. ch. 5: LSTM 128 trained on Epicurious recipes (not available offline)
    "book2": {"hidden": 128, "max_vocab": 10000, "dropout": 0.0},
    "cpu": {"max_vocab": 3000, "seq_len": 48, "steps": 3000},  # ~20 minutes on one core
    "tiny": {"level": "char", "embedding": 8, "hidden": 16, "seq_len": 16, "batch_size": 4, "steps": 2},
}


class RecurrentLM(nn.Module):
    def __init__(self, c: LSTMConfig):
        super().__init__()
        self.config = c
        self.tokenizer = c.tokenizer
        self.vocab_size = len(c.vocab)
        self.embed = nn.Embedding(self.vocab_size, c.embedding)
        rnn = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn(c.embedding, c.hidden, num_layers=c.layers, batch_first=True,
                       dropout=c.dropout if c.layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden, self.vocab_size)

    def forward(self, x, state=None, return_state: bool = False):
        """Token ids (B, T) -> next-token logits (B, T, V) (and the final recurrent state)."""
        h, state = self.rnn(self.drop(self.embed(x)), state)  # (B, T, hidden)
        logits = self.head(self.drop(h))
        return (logits, state) if return_state else logits

    def next_logits(self, tokens, cache=None):
        """Logits after ``tokens`` (B, T); the cache is (tokens read so far, recurrent state), so only
        new tokens are fed."""
        seen, state = cache if cache is not None else (0, None)
        logits, state = self.forward(tokens[:, seen:], state, return_state=True)
        return logits[:, -1], (tokens.shape[1], state)


def build(config: LSTMConfig) -> RecurrentLM:
    return RecurrentLM(config)


def train_step(model: RecurrentLM, batch, config: LSTMConfig) -> dict:
    return text.lm_loss(model, batch)


def sample(model: RecurrentLM, n: int, generator: torch.Generator | None = None, prompt: str = "",
           length: int = 60, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           greedy: bool = False, stop_at_sep: bool = False, allow_unk: bool = False):
    """Yields the ``n`` texts (a list of str: prompt + continuation) after every new token."""
    yield from text.sample_texts(model, n, generator, prompt=prompt, length=length, temperature=temperature,
                                 top_k=top_k, top_p=top_p, greedy=greedy, stop_at_sep=stop_at_sep,
                                 allow_unk=allow_unk)


# --- reading the recurrent state ---

@dataclass
class States:
    """Per-step recurrent state after reading each token: ``h`` and ``c`` are (layers, T, hidden);
    ``c`` is None for a GRU, whose state is h alone."""
    ids: list
    h: torch.Tensor
    c: torch.Tensor | None


@torch.no_grad()
def states(model: RecurrentLM, ids) -> States:
    """Run the model over token ids (T,) and keep the state after every step, layer by layer.

    An LSTM layer is replayed with its own weights, gate order i, f, g, o as in ``nn.LSTM``:
    the input projection x W_ih + b is done for all steps at once, the recurrence h W_hh one step at
    a time. A GRU's per-step h is simply what ``nn.GRU`` returns for each layer."""
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("No tokens to read: give the model some text.")
    x = model.embed(torch.tensor([ids], device=next(model.parameters()).device))[0]  # (T, E); eval: no dropout
    rnn, hs, cs = model.rnn, [], []
    for k in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        b = getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")
        if isinstance(rnn, nn.GRU):  # one layer of the GRU itself, with that layer's weights
            layer = nn.GRU(x.shape[1], rnn.hidden_size, batch_first=True).to(x.device)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
            x = layer(x[None])[0][0]  # (T, H)
            hs.append(x)
            continue
        pre = x @ w_ih.T + b  # (T, 4H)
        h = c = torch.zeros(rnn.hidden_size, device=x.device)
        out_h, out_c = [], []
        for t in range(len(ids)):
            i, f, g, o = (pre[t] + h @ w_hh.T).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out_h.append(h)
            out_c.append(c)
        x = torch.stack(out_h)  # (T, H): the next layer's input
        hs.append(x)
        cs.append(torch.stack(out_c))
    return States(ids, torch.stack(hs), torch.stack(cs) if cs else None)


SPEAKER_RE = re.compile(r"[A-Z][A-Z' -]*[A-Z]")  # Hamlet's speaker lines: "HAMLET", "LORD POLONIUS"


@functools.lru_cache(maxsize=1)
def hamlet_speakers() -> frozenset:
    """The speaker names of the Hamlet corpus (lower case): its all-capital lines, bar ACT headings."""
    lines = (line.strip() for doc in text.documents("hamlet") for line in doc.split("\n"))
    return frozenset(s.lower() for s in lines if SPEAKER_RE.fullmatch(s) and not s.startswith("ACT "))


def is_speaker_line(line: str) -> bool:
    """A line that names who speaks: all capitals (character level), or a known Hamlet speaker (word
    level texts are lower case)."""
    s = line.strip()
    return bool(s) and ((SPEAKER_RE.fullmatch(s) is not None and not s.startswith(("ACT ", "SCENE")))
                        or s.lower() in hamlet_speakers())


def token_spans(tokenizer, ids) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``ids`` and each token's (start, end) characters in it."""
    out, spans, prev, at = [], [], None, 0
    for i in ids:
        piece = tokenizer.glue(prev, int(i))
        out.append(piece)
        spans.append((at, at + len(piece)))
        at += len(piece)
        prev = int(i)
    return "".join(out), spans


def text_features(tokenizer, ids) -> dict[str, np.ndarray]:
    """Simple readable features of each token (T,): inside double quotes, inside [stage directions],
    a line break, part of a speaker's name, and the position in the line (characters since the last
    break). A token takes the value of its last character."""
    s, spans = token_spans(tokenizer, ids)
    marks = "\"'" if tokenizer.level == "word" else '"'  # a lone ' word token is a quote mark, not an apostrophe
    quote = np.zeros(len(s) + 1)
    bracket, speaker, column = np.zeros_like(quote), np.zeros_like(quote), np.zeros_like(quote)
    inside = depth = col = 0
    for p, ch in enumerate(s):  # a mark belongs to what it opens or closes
        closing = ch == "”" or (ch in marks and inside)
        inside = 0 if closing else 1 if ch in marks + "“" else inside
        quote[p] = inside or closing
        depth = depth + (ch == "[") - (ch == "]")
        bracket[p] = depth > 0 or ch == "]"
        col = 0 if ch == "\n" else col + 1
        column[p] = col
    at = 0
    for line in s.split("\n"):
        if is_speaker_line(line):
            speaker[at:at + len(line.rstrip())] = 1
        at += len(line) + 1
    newline = np.array([float(ch == "\n") for ch in s] + [0.0])
    last = [max(a, b - 1) if b > a else len(s) for a, b in spans]  # an empty piece reads as no feature
    return {name: f[last] for name, f in [("inside quotes", quote), ("inside [stage directions]", bracket),
                                          ("line end", newline), ("speaker name", speaker),
                                          ("position in line", column)]}


def feature_units(acts, features: dict, k: int = 3) -> dict[str, list[tuple[int, float]]]:
    """The ``k`` units whose activation (T, hidden) correlates most (Pearson r, by |r|) with each
    feature (T,). A feature that never varies in the text has no correlation: it gets an empty list."""
    a = np.asarray(acts, dtype=np.float64)
    a = a - a.mean(0)
    a_norm = np.sqrt((a ** 2).sum(0))
    out = {}
    for name, f in features.items():
        f = np.asarray(f, dtype=np.float64) - np.mean(f)
        if np.sqrt((f ** 2).sum()) < 1e-12:
            out[name] = []
            continue
        r = (a * f[:, None]).sum(0) / np.maximum(a_norm * np.sqrt((f ** 2).sum()), 1e-12)
        top = np.argsort(-np.abs(r), kind="stable")[:k]
        out[name] = [(int(u), float(r[u])) for u in top]
    return out


def describe(cfg: dict) -> str:
    return (f"{cfg['level']} level, {cfg['layers']} × {str(cfg['cell']).upper()} {cfg['hidden']}, "
            f"embedding {cfg['embedding']}")


FAMILY = text.family("lstm", "Recurrent language model (LSTM / GRU)", LSTMConfig, build, train_step, sample,
                     PRESETS, describe)
