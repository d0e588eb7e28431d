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
"""
from __future__ import annotations

from dataclasses import dataclass

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
    "book2": {"hidden": 128, "max_vocab": 10000, "dropout": 0.0},  # Foster 2nd ed. ch. 5: LSTM 128
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


def describe(cfg: dict) -> str:
    return (f"{cfg['level']} level, {cfg['layers']} × {str(cfg['cell']).upper()} {cfg['hidden']}, "
            f"embedding {cfg['embedding']}")


FAMILY = text.family("lstm", "Recurrent language model (LSTM / GRU)", LSTMConfig, build, train_step, sample,
                     PRESETS, describe)
