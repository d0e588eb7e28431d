"""A GPT-style decoder (Foster ch. 9, Chollet ch. 12; Radford et al. 2018): causal self-attention.

Every token looks at every earlier token at once instead of through a recurrent state. In each of
H heads, a token's query is compared with the keys of the tokens before it; the softmax of the
scaled scores weighs their values (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762):

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,   M_ij = −∞ for j > i (the causal mask)

Each row of the softmax is a probability distribution over the earlier positions: those are the
heatmaps the Text tab draws. Attention ignores order, so a position signal is added to the token
embeddings: learned vectors (GPT) or fixed sinusoids (the original Transformer). Blocks are
pre-norm (x + Attn(LN(x)), then x + MLP(LN(x)), as GPT-2), which trains stably without warm-up at
these sizes; the output layer shares the token embedding's weights (Press & Wolf 2017).

Sampling appends one token at a time. Without a cache every step recomputes attention over the
whole context; with a **KV cache** each layer keeps the keys and values of the tokens already seen,
so a new token costs one row of attention. The context is at most ``block`` tokens: beyond it the
window slides, and the cache is rebuilt from the last ``block`` tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.text import corpus as text
from models.core.family import check_range


@dataclass
class GPTConfig(text.TextConfig):
    level: str = "char"
    seq_len: int = 128
    d_model: int = 128  # embedding width
    heads: int = 4  # d_model / heads is each head's width
    layers: int = 4  # transformer blocks
    ff: int = 512  # feed-forward hidden width (4 × d_model, as GPT)
    block: int = 128  # longest context the positions cover
    positions: str = "learned"  # "learned" (GPT) or "sinusoidal" (Vaswani et al.)
    dropout: float = 0.1

    def validate(self):
        super().validate()
        check_range("model width", self.d_model, 2, 4096)
        check_range("heads", self.heads, 1, 64)
        if self.d_model % self.heads:
            raise ValueError(f"Model width {self.d_model} must be divisible by the number of heads {self.heads}.")
        check_range("layers", self.layers, 1, 48)
        check_range("feed-forward width", self.ff, 1, 16384)
        check_range("context (block)", self.block, 2, 4096)
        if self.seq_len > self.block:
            raise ValueError(f"Training windows ({self.seq_len} tokens) must fit in the context ({self.block}).")
        if self.positions not in ("learned", "sinusoidal"):
            raise ValueError(f"Positions must be 'learned' or 'sinusoidal'; got {self.positions!r}.")
        check_range("dropout", self.dropout, 0.0, 0.9)


PRESETS = {
    # Foster's GPT (ch. 9): word level, one block, 2 heads, width 256, context 80
    "book": {"level": "word", "max_vocab": 10000, "seq_len": 80, "block": 80, "d_model": 256, "heads": 2,
             "layers": 1, "ff": 256},
    # Chollet's review generator (DLwP 2nd ed. ch. 12): word level, vocabulary 15,000, sequences of 100,
    # one decoder block, embedding 256, feed-forward 2048, 2 heads. Departures: Rotten Tomatoes snippets
    # stand in for IMDB; the family's pre-norm GELU block with a tied output layer replaces his post-norm
    # ReLU decoder (whose extra cross-attention reads its own input) and separate softmax Dense layer
    "chollet": {"dataset": "reviews", "level": "word", "max_vocab": 15000, "seq_len": 100, "block": 100,
                "d_model": 256, "heads": 2, "layers": 1, "ff": 2048, "steps": 550},
    # char level, 4 × 128: ~20 minutes on an idle core (gpt_hamlet: 2,600 steps, 78 min on a busy shared one)
    "cpu": {"batch_size": 16, "dropout": 0.2, "steps": 2000},
    "tiny": {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "block": 16, "seq_len": 16, "batch_size": 4,
             "steps": 2},
}


def sinusoids(n: int, d: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…): (n, d)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class CausalSelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.heads, self.dropout = c.heads, c.dropout
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)

    def forward(self, x, past=None, need_weights: bool = False):
        """x (B, T, C) at positions after the ``past`` keys/values -> (output, (k, v), weights or None)."""
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))  # each (B, H, T, d_head)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        S = k.shape[2]  # keys: the past and these T tokens
        # query i sits at absolute position S - T + i and may look at keys 0 … S - T + i; one new
        # token (T = 1) may look at every key, and T = S is the plain causal mask: no mask to build
        mask = None if T == 1 or (T == S and not need_weights) else (
            torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T))
        drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            if mask is None:
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
            weights = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = F.dropout(weights, drop, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=T == S and T > 1, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y), (k, v), weights


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = CausalSelfAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.ff), nn.GELU(), nn.Linear(c.ff, c.d_model), nn.Dropout(c.dropout))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, past=None, need_weights=False):
        a, present, w = self.attn(self.ln1(x), past, need_weights)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), present, w


class GPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.tokenizer = c.tokenizer
        self.vocab_size = len(c.vocab)
        self.block = c.block
        self.tok = nn.Embedding(self.vocab_size, c.d_model)
        if c.positions == "learned":
            self.pos = nn.Embedding(c.block, c.d_model)
        else:
            self.register_buffer("pe", sinusoids(c.block, c.d_model), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln = nn.LayerNorm(c.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)  # GPT-2's initialisation
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _positions(self, start: int, T: int, device):
        idx = torch.arange(start, start + T, device=device)
        return self.pos(idx) if hasattr(self, "pos") else self.pe[idx]

    def forward(self, x, past=None, need_weights: bool = False, return_cache: bool = False):
        """Token ids (B, T) -> logits (B, T, V); with ``return_cache`` also the keys/values per layer and
        (when ``need_weights``) attention weights per layer, each (B, H, T, S)."""
        start = 0 if past is None else past[0][0].shape[2]
        if start + x.shape[1] > self.block:
            raise ValueError(f"At most {self.block} tokens of context; got {start + x.shape[1]}.")
        h = self.drop(self.tok(x) + self._positions(start, x.shape[1], x.device))
        presents, weights = [], []
        for i, blk in enumerate(self.blocks):
            h, kv, w = blk(h, None if past is None else past[i], need_weights)
            presents.append(kv)
            weights.append(w)
        logits = F.linear(self.ln(h), self.tok.weight)  # output layer tied to the token embedding
        return (logits, presents, weights) if return_cache else logits

    def next_logits(self, tokens, cache=None):
        """Logits after ``tokens`` (B, T). The cache holds every layer's keys and values, so only the
        new tokens are fed; past the context the window slides and the cache is rebuilt."""
        seen = 0 if cache is None else cache[0][0].shape[2]
        if cache is not None and tokens.shape[1] <= self.block:
            logits, cache, _ = self.forward(tokens[:, seen:], cache, return_cache=True)
        else:
            logits, cache, _ = self.forward(tokens[:, -self.block:], return_cache=True)
        return logits[:, -1], cache

    @torch.no_grad()
    def attention(self, tokens) -> torch.Tensor:
        """Attention weights of the last ``block`` tokens: (layers, heads, T, T), rows sum to 1."""
        self.eval()
        x = torch.as_tensor(tokens, dtype=torch.int64)[None, -self.block:].to(self.tok.weight.device)
        _, _, weights = self.forward(x, need_weights=True, return_cache=True)
        return torch.stack([w[0] for w in weights]).cpu()


def build(config: GPTConfig) -> GPT:
    return GPT(config)


def train_step(model: GPT, batch, config: GPTConfig) -> dict:
    return text.lm_loss(model, batch)


def sample(model: GPT, n: int, generator: torch.Generator | None = None, prompt: str = "", length: int = 200,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
           stop_at_sep: bool = False, allow_unk: bool = False, use_cache: bool = True):
    """Yields the ``n`` texts (a list of str: prompt + continuation) after every new token."""
    yield from text.sample_texts(model, n, generator, prompt=prompt, length=length, temperature=temperature,
                                 top_k=top_k, top_p=top_p, greedy=greedy, stop_at_sep=stop_at_sep,
                                 allow_unk=allow_unk, use_cache=use_cache)


def head_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy (bits) of each head's attention rows: (layers, heads, T, T) -> (layers, heads).
    Low: a sharp head that looks at one or two tokens; high: one that spreads over the context
    (row i of a causal head can reach at most log2(i + 1) bits)."""
    return text.entropy(weights).mean(-1)


def describe(cfg: dict) -> str:
    return (f"{cfg['level']} level, GPT {cfg['layers']} layers × {cfg['heads']} heads, width {cfg['d_model']}, "
            f"context {cfg['block']}" + (", sinusoidal positions" if cfg.get("positions") == "sinusoidal" else ""))


FAMILY = text.family("gpt", "Transformer decoder (GPT)", GPTConfig, build, train_step, sample, PRESETS, describe)
