"""What both text families share: corpora, tokenisers, and the maths of sampling one token at a time.

An autoregressive language model factorises the probability of a text into next-token guesses,

    p(x_1 … x_T) = Π_t p(x_t | x_<t),

and is trained by minimising the cross-entropy of each true next token (its exponential is the
*perplexity*: the number of equally likely tokens the model is, on average, torn between). Sampling
turns the logits z of the next token into a distribution and draws from it:

* **temperature** τ: p_i ∝ exp(z_i / τ). τ < 1 sharpens (safer, loops more), τ > 1 flattens.
* **top-k**: keep only the k most likely tokens (Fan et al. 2018).
* **top-p** (nucleus, Holtzman et al. 2020, https://arxiv.org/abs/1904.09751): keep the smallest
  set of most likely tokens whose mass reaches p.
* **greedy**: always the most likely token (what top-k = 1 also gives).

Corpora (offline, under ``assets/data/``; see its README for sources and licences): Shakespeare's
*Hamlet* split into scenes, 12,808 Rotten Tomatoes review snippets, the King James Bible split into
chapters, or the user's own ``.txt`` file. Documents are joined with a separator token ``<sep>``,
so a model learns where a review or a scene starts and ends, and generation can stop there.

Two tokenisers: **character** level (every character is a token; small vocabulary, long sequences)
and **word** level as in Foster ch. 5 (lower-cased words, each punctuation mark and line break its
own token, the most frequent ``max_vocab`` words kept, the rest ``<unk>``). The vocabulary is part
of the config, so a checkpoint carries everything needed to read and write its text.

Both families implement ``model.next_logits(tokens, cache) -> (logits, cache)``: the logits of the
token after ``tokens`` (B, T), reusing whatever the model cached from the previous call (an LSTM's
hidden state, a transformer's keys and values). :func:`decode` runs the sampling loop on top.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models.core import ASSETS
from models.core.family import Family, check_range, device_of, last

DATA_DIR = ASSETS / "data"
UNK, SEP = "<unk>", "<sep>"  # ids 0 and 1 in every vocabulary
LEVELS = ("char", "word")
MAX_UPLOAD = 20 * 1024 * 1024
CORPORA = {
    "hamlet": {"title": "Shakespeare's Hamlet (scenes)", "file": "hamlet.txt.gz"},
    "reviews": {"title": "Rotten Tomatoes review snippets", "file": "reviews.txt.gz"},
    "kjv": {"title": "King James Bible (chapters)", "file": "kjv.txt.gz"},
}


# --- corpora ---

def check_dataset(name: str) -> None:
    if name in CORPORA:
        return
    if name.endswith(".txt") and Path(name).is_file():
        return
    raise ValueError(f"Unknown dataset {name!r}; choose from {sorted(CORPORA)} or upload a .txt file.")


def title(name: str) -> str:
    return CORPORA[name]["title"] if name in CORPORA else f"your text ({Path(name).name})"


def _split_hamlet(text: str) -> list[str]:
    body = text[text.index("ACT I"):]  # drop the web page's title lines
    scenes = re.split(r"\n(?=SCENE [IVX]+\.)", body)
    return [s.strip() for s in scenes if s.strip()]


@functools.lru_cache(maxsize=8)
def documents(name: str) -> tuple[str, ...]:
    """The corpus as documents: scenes, reviews, chapters, or paragraphs of an uploaded file."""
    check_dataset(name)
    if name not in CORPORA:
        return tuple(p.strip() for p in re.split(r"\n\s*\n", read_text_file(name)) if p.strip())
    with gzip.open(DATA_DIR / CORPORA[name]["file"], "rt", encoding="utf-8") as f:
        text = f.read()
    if name == "hamlet":
        return tuple(_split_hamlet(text))
    if name == "reviews":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    return tuple(ch.strip() for ch in text.split("\n\n") if ch.strip())


def read_text_file(path) -> str:
    """Read a user's text file as UTF-8, refusing binaries, empty files and huge files clearly."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}.")
    size = path.stat().st_size
    if size > MAX_UPLOAD:
        raise ValueError(f"{path.name} is {size / 1e6:.0f} MB; text files up to {MAX_UPLOAD // 2**20} MB are accepted.")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise ValueError(f"{path.name} is a binary file, not plain text: upload a UTF-8 .txt file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text (is it a binary file or another encoding?): "
                         "upload a UTF-8 .txt file.") from None
    if len(text.strip()) < 200:
        raise ValueError(f"{path.name} holds only {len(text.strip())} characters of text; a language model "
                         "needs at least a few thousand to learn from.")
    return text.replace("\r\n", "\n")


# --- tokenisers ---

WORD_RE = re.compile(r"\n|[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]")
NO_SPACE_BEFORE = set(".,;:!?)]}'\n") | {"'s", "n't"}
NO_SPACE_AFTER = set("([{\n")


def split_words(text: str) -> list[str]:
    """Foster's word tokens: lower case, punctuation and line breaks as tokens of their own."""
    return WORD_RE.findall(text.lower())


@dataclass(frozen=True)
class Tokenizer:
    level: str
    vocab: tuple  # id -> token; 0 is <unk>, 1 is <sep>

    @functools.cached_property
    def index(self) -> dict:
        return {t: i for i, t in enumerate(self.vocab)}

    def split(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else split_words(text)

    def encode(self, text: str, strict: bool = True) -> list[int]:
        """Token ids of ``text``. ``strict`` refuses tokens outside the vocabulary (prompts); otherwise
        they become <unk> (training text)."""
        pieces = self.split(text)
        if strict:
            unknown = sorted({p for p in pieces if p not in self.index})
            if unknown:
                what = "characters" if self.level == "char" else "words"
                shown = ", ".join(repr(u) for u in unknown[:8]) + ("…" if len(unknown) > 8 else "")
                raise ValueError(f"Not in this model's vocabulary ({len(self.vocab):,} {what}): {shown}. "
                                 f"Rephrase the prompt with {what} it knows.")
        return [self.index.get(p, 0) for p in pieces]

    def piece(self, i: int) -> str:
        return self.vocab[i]

    def decode(self, ids) -> str:
        """Text of token ids; the separator shows as a blank line (a new document)."""
        out, prev = [], None
        for i in ids:
            out.append(self.glue(prev, int(i)))
            prev = int(i)
        return "".join(out)

    def glue(self, prev: int | None, i: int) -> str:
        """Token ``i`` as it is written after token ``prev`` (None at the start): word tokens get a
        space unless punctuation or a line break says otherwise."""
        tok = self.vocab[i]
        if tok == SEP:
            return "" if prev is None else "\n\n"
        if self.level == "char" or prev is None:
            return tok
        before = self.vocab[prev]
        if tok in NO_SPACE_BEFORE or before in NO_SPACE_AFTER or before == SEP:
            return tok
        return " " + tok


@functools.lru_cache(maxsize=16)
def build_vocab(dataset: str, level: str, max_vocab: int) -> tuple:
    """The vocabulary of a corpus: every character, or the ``max_vocab`` most frequent words."""
    counts = Counter()
    for doc in documents(dataset):
        counts.update(doc if level == "char" else split_words(doc))
    if level == "char":
        kept = sorted(counts)
    else:
        kept = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab - 2]]
    return (UNK, SEP, *kept)


@functools.lru_cache(maxsize=8)
def _stream(dataset: str, level: str, vocab: tuple) -> torch.Tensor:
    tok = Tokenizer(level, vocab)
    ids = [1]
    for doc in documents(dataset):
        ids += tok.encode(doc, strict=False) + [1]
    return torch.tensor(ids, dtype=torch.int64)


@dataclass
class TextConfig:
    """Data and training settings shared by the text families (each adds its network's sizes)."""

    dataset: str = "hamlet"  # hamlet, reviews, kjv, or the path of a .txt file (the studio names uploads by content)
    level: str = "word"  # "char" or "word"
    max_vocab: int = 4000  # word level: most frequent words kept (the rest are <unk>)
    vocab: tuple = ()  # filled from the corpus when empty; saved with the checkpoint
    seq_len: int = 64  # tokens of context per training window
    lr: float = 1e-3  # Adam
    batch_size: int = 32
    steps: int = 3000
    doc_starts: bool = False  # also train on one window starting at every document's <sep>

    def __post_init__(self):
        self.vocab = tuple(self.vocab)

    def validate(self):
        check_dataset(self.dataset)
        if self.level not in LEVELS:
            raise ValueError(f"Tokeniser level must be one of {LEVELS}; got {self.level!r}.")
        check_range("vocabulary size", self.max_vocab, 10, 50_000)
        check_range("sequence length", self.seq_len, 2, 4096)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        if not self.vocab:
            self.vocab = build_vocab(self.dataset, self.level, self.max_vocab)
        if len(self.vocab) < 3 or self.vocab[:2] != (UNK, SEP):
            raise ValueError("The vocabulary must start with <unk> and <sep> and hold at least one token.")

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.level, self.vocab)


def windows(config: TextConfig, split: str) -> tuple[tuple[torch.Tensor], dict]:
    """The ``data`` hook: (N, seq_len + 1) token windows overlapping by half, from the first 90% of
    the token stream (train) or the last 10% (test: e.g. Hamlet's Act V, never seen in training).
    With ``doc_starts`` one more window begins at each document's <sep>, so the model learns what
    the first tokens of a document look like at the positions where sampling starts them."""
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; choose from ('train', 'test').")
    ids = _stream(config.dataset, config.level, config.vocab)
    cut = int(len(ids) * 0.9)
    part = ids[:cut] if split == "train" else ids[cut:]
    size, stride = config.seq_len + 1, max(1, config.seq_len // 2)
    if len(part) < size:
        raise ValueError(f"The {split} part of {title(config.dataset)} has only {len(part)} tokens; "
                         f"it needs more than the sequence length {config.seq_len}.")
    x = part.unfold(0, size, stride)  # (N, seq_len + 1)
    if config.doc_starts:  # sampling starts at <sep>: show the model how documents begin at position 0
        starts = (part[:len(part) - size + 1] == 1).nonzero()[:, 0]
        x = torch.cat([x, part[starts[:, None] + torch.arange(size)]])
    x = x.contiguous()
    info = {"title": title(config.dataset), "dataset": config.dataset, "level": config.level,
            "vocab_size": len(config.vocab), f"{split}_tokens": len(part),
            "unk_rate": round(float((part == 0).float().mean()), 4)}
    return (x,), info


# --- training and evaluation ---

def lm_loss(model, batch) -> dict:
    """Next-token cross-entropy of a batch of windows (B, T + 1), mean nats per token."""
    (x,) = batch
    logits = model(x[:, :-1])  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
    return {"loss": loss}


def unigram_loss(config: TextConfig) -> float:
    """Held-out loss of the best model that ignores context: each token's training frequency (add-one
    smoothed). A language model that does not beat it has learned nothing about order."""
    ids = _stream(config.dataset, config.level, config.vocab)
    cut = int(len(ids) * 0.9)
    counts = torch.bincount(ids[:cut], minlength=len(config.vocab)).double() + 1
    return float(-(counts / counts.sum()).log()[ids[cut:]].mean())


@torch.no_grad()
def evaluate(model, x, batch_size: int = 64, max_windows: int = 2000) -> dict:
    """Held-out cross-entropy (nats/token), perplexity, bits per token, and next-token accuracy."""
    model.eval()
    device = device_of(model)
    x = x[:max_windows]
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(x), batch_size):
        b = x[i:i + batch_size].to(device)
        logits = model(b[:, :-1])
        target = b[:, 1:]
        total += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        n += target.numel()
    loss = total / n
    return {"val_loss": round(loss, 4), "val_perplexity": round(math.exp(loss), 2),
            "bits_per_token": round(loss / math.log(2), 4), "val_accuracy": round(correct / n, 4),
            "uniform_loss": round(math.log(model.vocab_size), 4), "unigram_loss": round(unigram_loss(model.config), 4)}


# --- sampling maths ---

def check_controls(temperature: float, top_k: int, top_p: float) -> None:
    if not isinstance(temperature, (int, float)) or math.isnan(temperature) or temperature <= 0:
        raise ValueError(f"Temperature must be above 0 (it divides the logits); got {temperature}. "
                         "For the single most likely token every time, use greedy.")
    check_range("temperature", temperature, 0.01, 10.0)
    check_range("top-k", top_k, 0, 100_000)
    if top_k != int(top_k):
        raise ValueError(f"top-k must be a whole number (0 = off); got {top_k}.")
    check_range("top-p", top_p, 0.001, 1.0)


def truncate(probs: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Zero all but the top-k tokens and outside the nucleus (the smallest set of most likely tokens
    whose mass reaches top_p), then renormalise. probs (..., V)."""
    p = probs
    if top_k and top_k < p.shape[-1]:
        kth = torch.topk(p, int(top_k), dim=-1).values[..., -1:]
        p = torch.where(p >= kth, p, torch.zeros_like(p))
        p = p / p.sum(-1, keepdim=True)
    if top_p < 1.0:
        sorted_p, order = torch.sort(p, dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the tokens ranked above each one
        keep_sorted = before < top_p  # a token is kept while the set above it has not reached p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        p = torch.where(keep, p, torch.zeros_like(p))
        p = p / p.sum(-1, keepdim=True)
    return p


def distributions(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  banned: tuple = ()):
    """Next-token probabilities before (τ = 1, nothing cut) and after temperature and truncation;
    ``banned`` token ids (e.g. <unk>) get probability 0 after."""
    logits = logits.double()  # float64 so truncation sums and ties are exact and reproducible
    before = torch.softmax(logits, -1)
    if banned:
        logits = logits.clone()
        logits[..., list(banned)] = float("-inf")
    after = truncate(torch.softmax(logits / temperature, -1), top_k, top_p)
    return before, after


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits over the last dim (0 for a certain choice)."""
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)


def candidates(probs: torch.Tensor, token: int, k: int) -> list[int]:
    """The ids of the ``k`` likeliest tokens under ``probs`` (V,), most likely first, with ``token``
    (the one actually drawn) always among them: it takes the k-th place when it is not in the top k."""
    ids = torch.topk(probs, min(int(k), probs.shape[-1])).indices.tolist()
    if token not in ids:
        ids[-1] = token
    return ids


@dataclass
class NextTokens:
    """The likeliest next tokens after a text under the model (τ = 1): the predictive keyboard."""

    ids: list  # most likely first
    probs: list  # their probabilities
    entropy: float  # bits, of the whole next-token distribution
    mass: float  # the probability the offered tokens hold together


@torch.no_grad()
def next_token_top(model, ids, k: int) -> NextTokens:
    """The ``k`` likeliest next tokens after token ``ids`` (a prompt's, <sep> first: :func:`prompt_ids`),
    all of them when the vocabulary is smaller. <unk> (a word the vocabulary dropped) is never offered,
    since it cannot be typed; its probability still counts in the entropy."""
    if not len(ids):
        raise ValueError("Give at least one token (a prompt starts with <sep>).")
    check_range("number of tokens offered", k, 1, 1000)
    model.eval()
    x = torch.tensor([list(ids)], dtype=torch.int64, device=device_of(model))  # (1, T)
    logits, _ = model.next_logits(x)
    p = torch.softmax(logits[0].double().cpu(), -1)  # (V,)
    offered = p.clone()
    offered[0] = -1.0  # <unk> ranks last and is cut below
    top = torch.topk(offered, min(int(k), len(p) - 1))
    return NextTokens(top.indices.tolist(), top.values.tolist(), float(entropy(p)), float(top.values.sum()))


def choose(after: torch.Tensor, generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
    """One token id per row of ``after`` (B, V), by inverting the cumulative distribution: the first
    token whose running mass exceeds a uniform draw (a token of probability 0 never does). The same
    law as ``torch.multinomial``, in a third of its time on a small vocabulary."""
    if greedy:
        return after.argmax(-1)
    cum = after.cumsum(-1)
    u = torch.rand((len(after), 1), generator=generator, dtype=cum.dtype) * cum[:, -1:]
    return torch.searchsorted(cum, u, right=True)[:, 0].clamp_max(after.shape[-1] - 1)


@dataclass
class Step:
    """One generated position of sequence 0: its token and what else the model considered.

    The loop keeps the raw logits and the distribution it drew from; the τ = 1 distribution
    (``before``) is computed only when a view asks for it (:func:`before_batch` does many at once),
    so sampling pays for nothing it does not use."""

    token: int
    piece: str
    logits: torch.Tensor  # (V,) float64, the model's raw scores
    after: torch.Tensor  # (V,) the distribution the token was drawn from
    ids: list  # every id so far, prompt included (after the leading <sep>)
    text: list  # the n texts so far

    @functools.cached_property
    def before(self) -> torch.Tensor:
        """(V,) probabilities at temperature 1, nothing cut."""
        return torch.softmax(self.logits, -1)


def before_batch(steps: list) -> torch.Tensor:
    """The τ = 1 distributions of many steps in one softmax: (len(steps), V)."""
    return torch.softmax(torch.stack([s.logits for s in steps]), -1)


def position_records(tokenizer: Tokenizer, prev: int, steps: list, k: int) -> list[dict]:
    """What the views keep of each generated position, for many steps in a few batched operations:
    the ``k`` likeliest candidates (the drawn token always among them, :func:`candidates`) with their
    probabilities before and after temperature and truncation, both entropies, how many tokens the
    truncation kept, and the token's text after ``prev`` (the token before the first step)."""
    if not steps:
        return []
    before, after = before_batch(steps), torch.stack([s.after for s in steps])  # (S, V)
    token = torch.tensor([s.token for s in steps])
    top = torch.topk(before, min(int(k), before.shape[-1]), -1).indices  # (S, k)
    missing = ~(top == token[:, None]).any(-1)
    top[missing, -1] = token[missing]
    rows = torch.arange(len(steps))
    cols = zip(top.tolist(), before.gather(1, top).tolist(), after.gather(1, top).tolist(),
               before[rows, token].tolist(), after[rows, token].tolist(), entropy(before).tolist(),
               entropy(after).tolist(), (after > 0).sum(-1).tolist(), token.tolist())
    out = []
    for ids, pb, pa, tb, ta, hb, ha, kept, i in cols:
        out.append({"token": i, "piece": tokenizer.piece(i), "ids": ids, "pieces": [tokenizer.piece(j) for j in ids],
                    "before": pb, "after": pa, "p_before": tb, "p_after": ta, "h_before": hb, "h_after": ha,
                    "kept": kept, "text": tokenizer.glue(prev, i)})
        prev = i
    return out


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """<sep> (the start of a document) followed by the prompt's tokens."""
    return [1] + tokenizer.encode(prompt or "")


def decode(model, tokenizer: Tokenizer, n: int, generator, prompt: str = "", length: int = 200,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
           stop_at_sep: bool = False, use_cache: bool = True, allow_unk: bool = False):
    """Sample ``n`` continuations of ``prompt`` token by token, yielding a :class:`Step` each time.

    The n sequences are drawn in one batch from the same ``generator``; ``stop_at_sep`` ends the
    run when every sequence has produced the separator (the end of a document). <unk> (a rare word
    the vocabulary dropped) is never drawn unless ``allow_unk``.

    The loop is kept to a handful of tensor operations per token (a preallocated token buffer,
    banning as one added bias, truncation only when asked for), so it runs at the model's speed:
    ``bench/text_speed.py`` times it against the model alone.
    """
    check_range("number of samples", n, 1, 64)
    check_range("length", length, 1, 5000)
    if length != int(length):
        raise ValueError(f"length must be a whole number of tokens; got {length}.")
    check_controls(temperature, top_k, top_p)
    model.eval()
    device = device_of(model)
    start = prompt_ids(tokenizer, prompt)
    first, length = len(start), int(length)
    tokens = torch.empty(n, first + length, dtype=torch.int64, device=device)  # filled as we go
    tokens[:, :first] = torch.tensor(start)
    bias = torch.zeros(len(tokenizer.vocab), dtype=torch.float64)  # distributions()' banning, as one add
    if not allow_unk:
        bias[0] = float("-inf")
    cut = bool(top_k) or top_p < 1.0
    done = torch.zeros(n, dtype=torch.bool)
    texts = [tokenizer.decode(start[1:])] * n
    ended = [False] * n  # stop_at_sep: the text of a row that reached <sep> stops growing
    prev, ids = [start[-1]] * n, start[1:]
    cache, vocab, glue = None, tokenizer.vocab, tokenizer.glue
    for t in range(first, first + length):
        with torch.no_grad():  # the model alone: nothing else makes a graph, and a generator must not
            logits, cache = model.next_logits(tokens[:, :t], cache if use_cache else None)  # hold the mode
        z = logits.to("cpu", torch.float64)  # float64 so truncation sums and ties are exact and reproducible
        after = torch.softmax(torch.add(bias, z, alpha=1 / temperature), -1)
        if cut:
            after = truncate(after, top_k, top_p)
        nxt = choose(after, generator, greedy)
        if stop_at_sep:
            nxt = torch.where(done, 1, nxt)  # finished rows keep emitting <sep>
            done |= nxt == 1
        tokens[:, t] = nxt
        drawn = nxt.tolist()
        for r, (p, i) in enumerate(zip(prev, drawn)):
            if stop_at_sep and (ended[r] or i == 1):
                ended[r] = True
                continue
            texts[r] += glue(p, i)
        prev, ids = drawn, ids + drawn[:1]
        yield Step(drawn[0], vocab[drawn[0]], z[0], after[0], ids, list(texts))
        if stop_at_sep and all(ended):
            return


def sample_texts(model, n: int, generator=None, **controls):
    """The families' ``sample``: yields the n growing texts (a list of str) after every token."""
    for step in decode(model, model.tokenizer, n, generator, **controls):
        yield step.text


def preview(model, generator) -> str:
    """What training shows: a new document from the model, 60 words or 300 characters, τ = 0.8."""
    length = 300 if model.tokenizer.level == "char" else 60
    return last(sample_texts(model, 1, generator, length=length, temperature=0.8, stop_at_sep=True))[0]


def card_lines(m: dict) -> list[str]:
    """The card's held-out line for both text families: loss and perplexity beside what an untrained
    model (uniform over the vocabulary: its perplexity is the vocabulary size) and token frequencies
    alone would score."""
    if "val_loss" not in m:
        return []
    return [f"Held-out text: loss **{m['val_loss']:.3f} nats per token**, perplexity **{m['val_perplexity']:.1f}** "
            f"(an untrained model: {m['uniform_loss']:.2f} nats, perplexity {math.exp(m['uniform_loss']):,.0f}"
            + (f"; token frequencies alone: {m['unigram_loss']:.2f} nats" if "unigram_loss" in m else "")
            + f"), next-token accuracy {m['val_accuracy']:.0%}"] + (
        [comparison_line(m["comparison"])] if "comparison" in m else [])


def comparison_line(c: dict, name: str = "This model") -> str:
    """A card's comparison with another checkpoint on the same held-out tokens (``models/text/compare.py``):
    which one beats the other, and by how much."""
    a, b, other = c["perplexity"], c["other_perplexity"], c["other"]
    verdict = (f"**{name} beats {other}** by {b - a:.1f} ({(b - a) / b:.0%} lower)" if a < b else
               f"**{name} does not beat {other}**: its perplexity is {a - b:.1f} higher ({(a - b) / b:.0%})")
    return (f"{verdict}. Same {c['tokens']:,} held-out tokens in windows of {c['context']}, both scored over the "
            f"smaller {c['common_vocab']:,}-token vocabulary (probabilities of words outside it pooled into <unk>): "
            f"perplexity **{a:.1f}** vs **{b:.1f}**")


def family(name: str, title: str, config_cls, build, train_step, sample, presets, describe) -> Family:
    """The Family record of a text family: the shared data, evaluation, preview and card hooks."""
    return Family(name=name, title=title, config_cls=config_cls, build=build, train_step=train_step,
                  sample=sample, evaluate=evaluate, presets=presets, data=windows, preview=preview,
                  kind="text", unit="sequences", describe=describe, card_lines=card_lines)


def repetition(ids: list[int], n: int = 4) -> float:
    """Share of the n-grams in ``ids`` that already occurred earlier (0 = no repeats; loops → 1)."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


LETTERS_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


@functools.lru_cache(maxsize=8)
def known_words(dataset: str) -> frozenset:
    """Lower-cased words (runs of letters, inner apostrophes kept) of the training part of a corpus:
    its first 90%, the part the models learn from."""
    joined = "\n\n".join(documents(dataset))
    return frozenset(w.lower() for w in LETTERS_RE.findall(joined[:int(len(joined) * 0.9)]))


def real_words(texts, dataset: str) -> dict:
    """How many of the words in ``texts`` are real: found in the training part of ``dataset``. A text
    that stops inside a word (the length ran out) loses that last, unfinished word."""
    known, words = known_words(dataset), []
    for t in texts:
        found = LETTERS_RE.findall(t)
        if found and t[-1:].isalpha():
            found = found[:-1]
        words += found
    wrong = [w for w in words if w.lower() not in known]
    return {"rate": 1 - len(wrong) / max(1, len(words)), "words": len(words), "non_words": wrong}


def kjv_chapters(raw: str) -> str:
    """Debian ``bible`` output ("Genesis 1" headings, then "  N verse" lines wrapped at 80 columns)
    as one block per chapter: its heading, then one verse per line without numbers."""
    chapters, verses = [], []
    for line in raw.splitlines():
        if not line.strip():
            continue
        verse = re.match(r"^\s+\d+ (.*)$", line)
        if verse:
            verses.append(verse.group(1))
        elif re.match(r"^[1-3]?\s?[A-Z][A-Za-z ]+ \d+$", line):
            verses = []
            chapters.append((line, verses))
        else:
            verses[-1] += " " + line.strip()
    return "\n\n".join(head + "\n" + "\n".join(vs) for head, vs in chapters) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Corpus statistics, or rebuild assets/data/kjv.txt.gz.")
    p.add_argument("dataset", choices=sorted(CORPORA))
    p.add_argument("--level", choices=LEVELS, default="word")
    p.add_argument("--max-vocab", type=int, default=4000)
    p.add_argument("--from-bible", type=Path, help="kjv: rebuild from the output of Debian's "
                   "`bible -p /usr/lib \"gen1:1-rev22:21\"` saved in this file")
    a = p.parse_args(argv)
    if a.from_bible:
        with gzip.open(DATA_DIR / CORPORA["kjv"]["file"], "wt", encoding="utf-8", compresslevel=9) as f:
            f.write(kjv_chapters(a.from_bible.read_text()))
        documents.cache_clear()
    vocab = build_vocab(a.dataset, a.level, a.max_vocab)
    ids = _stream(a.dataset, a.level, vocab)
    print(f"{title(a.dataset)}: {len(documents(a.dataset))} documents, {len(ids):,} {a.level} tokens, "
          f"vocabulary {len(vocab):,}, <unk> {float((ids == 0).float().mean()):.2%}")


if __name__ == "__main__":
    main()
