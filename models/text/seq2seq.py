"""Encoder–decoder with attention and a pointer, and the question generator (Foster 1st ed. ch. 6).

A **bidirectional GRU encoder** reads the source twice, left to right and right to left, and keeps
both states at every position, so each position's vector h_i knows the words on both sides of it.
A **GRU decoder** writes the output one token at a time. At each step it looks back at the whole
source through **additive attention** (Bahdanau et al. 2015, https://arxiv.org/abs/1409.0473):

    e_ti = vᵀ tanh(W_h h_i + W_s s_t),   a_t = softmax(e_t),   c_t = Σ_i a_ti h_i

a_t is a probability distribution over source positions (the row of the attention heatmap for
output token t) and c_t the context the next token is predicted from. Training uses **teacher
forcing**: the decoder is fed the true previous token, not its own guess, so every step of a whole
batch is trained at once from the right history.

A vocabulary of a few thousand words turns every rare name into ``<unk>``. The **pointer**
(pointer-generator, See et al. 2017, https://arxiv.org/abs/1704.04368; Foster's fix for <UNK>)
lets the decoder copy a source word instead: a gate p_gen = σ(w·[s_t, c_t, x_t]) mixes generating
from the vocabulary with copying the source word the attention points at,

    P(w) = p_gen P_vocab(w) + (1 − p_gen) Σ_{i: x_i = w} a_ti,

over the vocabulary extended by the source's own out-of-vocabulary words, so "Methusael" can be
written although the vocabulary never heard of it.

**The question–answer generator** (Foster's NewsQA model) puts two networks on one embedding: an
**answer tagger** (a bidirectional GRU giving each passage word the probability that it belongs to
an answer; a candidate span is a run of words above one half, scored by their mean probability),
and the question decoder above, whose encoder also reads which words form the chosen answer.

Data (nothing here is NewsQA or GloVe, neither ships offline; the embeddings are trained here):

* ``questions``: passages are King James verses (the bundled corpus); each question and answer is
  made from a verse by a handful of templates over its sentence patterns ("Adam knew Eve" →
  "whom did Adam know?" / "Eve"; "Shimei the son of Elah" → "whose son was Shimei?" / "Elah"),
  about 3,200 pairs over 1,800 verses, one verse in ten held out;
* ``copy`` and ``reverse``: toy tasks on random symbol strings, where attention must learn to
  point at position i (copy) or n − i (reverse) — the classic check that an encoder–decoder works.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.core.family import Family, built, check_range, last
from models.text import corpus

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"  # ids 0–3
TASKS = ("questions", "copy", "reverse")
SYMBOLS = tuple("abcdefghijklmnopqrst")  # the toy tasks' alphabet
MAX_PASSAGE = 80  # words
MAX_QUESTION = 16

# --- the question set, made from the King James Bible ---

NAME = r"(?:[A-Z][a-z]+|the LORD|the king|the people)"
S = O = f"({NAME})"
VERBS = {"smote": "smite", "slew": "slay", "sent": "send", "called": "call", "blessed": "bless", "loved": "love",
         "saw": "see", "heard": "hear", "took": "take", "begat": "beget", "commanded": "command",
         "answered": "answer", "followed": "follow", "anointed": "anoint", "besought": "beseech",
         "worshipped": "worship", "served": "serve", "feared": "fear", "knew": "know", "buried": "bury",
         "kissed": "kiss", "met": "meet", "asked": "ask", "told": "tell"}
TEMPLATES = (  # (pattern over a verse, [(question, which group is the answer)])
    (rf"\b{S} (?:said|spake) unto {O}\b", [("who spake unto {1} ?", 0), ("to whom did {0} speak ?", 1)]),
    (rf"\b{S} ({'|'.join(VERBS)}) {O}\b", [("whom did {0} {v} ?", 2), ("who {1} {2} ?", 0)]),
    (rf"\b{S} (?:went|came|fled|returned)(?: up| down| out| again| back)? (?:to|unto|into) ({NAME})\b",
     [("where did {0} go ?", 1)]),
    (rf"\b{S} dwelt in ({NAME})\b", [("where did {0} dwell ?", 1)]),
    (rf"\b{S},? the son of {O}\b", [("whose son was {0} ?", 1)]),
    (rf"\b{S} was (\w+(?: and \w+)?) years old\b", [("how old was {0} ?", 1)]),
    (rf"\b{S},? (?:the )?king of ({NAME})\b", [("of what land was {0} king ?", 1)]),
)
NOT_NAMES = set("And The Then But For Now So Thus Behold O Lord When If In Of All Let He She They This These Thou "
                "Ye I My His It Who What Why How Yea Wherefore Therefore Also There That Which Is Are As Go Come".split())


@functools.lru_cache(maxsize=1)
def kjv_questions() -> tuple:
    """(passage, question, answer) triples made from the King James verses by :data:`TEMPLATES`."""
    out = []
    patterns = [(re.compile(p), qs) for p, qs in TEMPLATES]
    for doc in corpus.documents("kjv"):
        for verse in doc.split("\n")[1:]:  # the first line is the chapter's heading
            for rx, qs in patterns:
                for m in rx.finditer(verse):
                    g = m.groups()
                    if any(x in NOT_NAMES for x in g):
                        continue
                    v = VERBS.get(g[1], "") if len(g) > 2 else ""
                    out += [(verse, q.format(*g, v=v), g[a]) for q, a in qs]
    return tuple(out)


# --- tokens ---

def words(text: str) -> list[str]:
    """The passage's tokens, with their written form (case kept): Foster's word tokens."""
    return re.findall(r"[A-Za-z0-9]+(?:'[a-z]+)*|[^\sA-Za-z0-9]", text)


def find_span(tokens: list[str], answer: str) -> tuple[int, int] | None:
    """(start, end) word positions of ``answer`` in ``tokens`` (end exclusive), the first occurrence."""
    a = [w.lower() for w in words(answer)]
    low = [w.lower() for w in tokens]
    for i in range(len(low) - len(a) + 1):
        if low[i:i + len(a)] == a:
            return i, i + len(a)
    return None


@dataclass
class Seq2SeqConfig:
    """Settings of the encoder–decoder; the vocabulary is built from the task's data and saved."""

    task: str = "questions"  # questions, copy or reverse
    max_vocab: int = 800  # words kept (the rest, most names among them, are <unk> or copied by the pointer)
    vocab: tuple = ()
    embedding: int = 64
    hidden: int = 64  # per direction of the encoder; the decoder has 2 × hidden
    tagger_hidden: int = 48  # per direction of the answer tagger
    attention: int = 64  # width of the additive attention's hidden layer
    pointer: bool = True  # copy source words (pointer-generator); off: a plain attention decoder
    toy_length: int = 10  # copy / reverse: longest string
    lr: float = 2e-3
    batch_size: int = 32
    steps: int = 3000

    def __post_init__(self):
        self.vocab = tuple(self.vocab)

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r}; choose from {TASKS}.")
        check_range("vocabulary size", self.max_vocab, 10, 50_000)
        check_range("embedding size", self.embedding, 2, 1024)
        check_range("hidden units", self.hidden, 2, 1024)
        check_range("tagger hidden units", self.tagger_hidden, 2, 1024)
        check_range("attention width", self.attention, 2, 1024)
        check_range("toy string length", self.toy_length, 2, 64)
        check_range("learning rate", self.lr, 1e-7, 1.0)
        check_range("batch size", self.batch_size, 1, 4096)
        check_range("steps", self.steps, 1, 10_000_000)
        if not self.vocab:
            self.vocab = build_vocab(self.task, self.max_vocab)
        if len(self.vocab) < 5 or self.vocab[:4] != (PAD, UNK, BOS, EOS):
            raise ValueError("The vocabulary must start with <pad>, <unk>, <s>, </s> and hold at least one word.")


PRESETS = {
    # Foster 1st ed. ch. 6 uses GloVe 100-d vectors, GRUs and a 2 × 100 encoder; trained here from scratch
    "book": {"embedding": 100, "hidden": 100, "tagger_hidden": 100, "attention": 100},
    "cpu": {"steps": 1500},  # about 25 minutes on one core of a busy shared machine
    "tiny": {"task": "copy", "embedding": 8, "hidden": 8, "tagger_hidden": 4, "attention": 8, "toy_length": 5,
             "batch_size": 8, "steps": 2},
}


@functools.lru_cache(maxsize=8)
def build_vocab(task: str, max_vocab: int) -> tuple:
    if task != "questions":
        return (PAD, UNK, BOS, EOS, *SYMBOLS)
    counts = {}
    for passage, question, _ in split_questions("train"):
        for w in words(passage.lower()) + question.lower().split():
            counts[w] = counts.get(w, 0) + 1
    kept = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab - 4]]
    return (PAD, UNK, BOS, EOS, *kept)


@functools.lru_cache(maxsize=2)
def split_questions(split: str) -> list:
    """The triples of one split: every tenth passage (in corpus order) is held out."""
    passages = sorted({p for p, _, _ in kjv_questions()}, key=lambda p: p)
    held = {p for i, p in enumerate(passages) if i % 10 == 9}
    return [t for t in kjv_questions() if (t[0] in held) == (split == "test")
            and len(words(t[0])) <= MAX_PASSAGE and find_span(words(t[0]), t[2])]


class Vocab:
    def __init__(self, vocab: tuple):
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}

    def __len__(self):
        return len(self.vocab)

    def source(self, tokens: list[str]) -> tuple[list[int], list[int], list[str]]:
        """Ids of source words (unknown → <unk>), their extended ids (unknown → V + k, the k-th new
        word of this source) and the list of those new words."""
        ids, ext, oov = [], [], []
        for w in tokens:
            w = w.lower()
            i = self.index.get(w, 1)
            ids.append(i)
            if i == 1:
                if w not in oov:
                    oov.append(w)
                i = len(self.vocab) + oov.index(w)
            ext.append(i)
        return ids, ext, oov

    def target(self, tokens: list[str], oov: list[str]) -> list[int]:
        """Extended ids of target words: known words, source words to copy, else <unk>."""
        out = []
        for w in tokens:
            w = w.lower()
            out.append(self.index[w] if w in self.index else len(self.vocab) + oov.index(w) if w in oov else 1)
        return out

    def word(self, i: int, oov: list[str]) -> str:
        return self.vocab[i] if i < len(self.vocab) else oov[i - len(self.vocab)]


def _pad(rows: list[list[int]], length: int) -> torch.Tensor:
    return torch.tensor([r[:length] + [0] * (length - len(r[:length])) for r in rows], dtype=torch.int64)


def encode_example(voc: Vocab, src: list[str], span: tuple[int, int], tags: list[int], tgt: list[str]):
    ids, ext, oov = voc.source(src)
    ans = [int(span[0] <= i < span[1]) for i in range(len(src))]
    t = voc.target(tgt, oov)
    return ids, ext, ans, tags, [2] + [min(i, 1) if i >= len(voc) else i for i in t], t + [3]


def data(config: Seq2SeqConfig, split: str):
    """The ``data`` hook: padded (N, L) tensors of source ids, extended source ids, answer indicator,
    tagger targets, decoder inputs (teacher forcing) and extended targets."""
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; choose from ('train', 'test').")
    voc = Vocab(config.vocab)
    rows = []
    if config.task == "questions":
        by_passage = {}
        triples = split_questions(split)
        for p, _, a in triples:
            by_passage.setdefault(p, []).append(a)
        for p, q, a in triples:
            src = words(p)
            tags = [0] * len(src)
            for other in by_passage[p]:
                s = find_span(src, other)
                if s:
                    tags[s[0]:s[1]] = [1] * (s[1] - s[0])
            span = find_span(src, a)
            rows.append(encode_example(voc, src, span, tags, q.split()))
        title = "Questions made from King James verses by templates"
        length, qlen = MAX_PASSAGE, MAX_QUESTION + 1
    else:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        for _ in range(20000 if split == "train" else 500):
            n = int(torch.randint(2, config.toy_length + 1, (1,), generator=g))
            src = [SYMBOLS[int(i)] for i in torch.randint(len(SYMBOLS), (n,), generator=g)]
            tgt = src if config.task == "copy" else src[::-1]
            rows.append(encode_example(voc, src, (0, 0), [0] * n, tgt))
        title = f"Toy task: {config.task} strings of 2–{config.toy_length} symbols"
        length, qlen = config.toy_length, config.toy_length + 1
    tensors = tuple(_pad([r[k] for r in rows], length if k < 4 else qlen) for k in range(6))
    return tensors, {"title": title, "task": config.task, "vocab_size": len(voc), f"{split}_examples": len(rows)}


# --- the networks ---

class Seq2Seq(nn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.config = c
        self.voc = Vocab(c.vocab)
        V, E, H = len(c.vocab), c.embedding, c.hidden
        self.vocab_size = V
        self.embed = nn.Embedding(V, E, padding_idx=0)
        self.answer_embed = nn.Embedding(2, 8)  # "this word is in the answer" as the encoder's extra input
        self.encoder = nn.GRU(E + 8, H, batch_first=True, bidirectional=True)
        self.tagger = nn.GRU(E, c.tagger_hidden, batch_first=True, bidirectional=True)
        self.tag_head = nn.Linear(2 * c.tagger_hidden, 1)
        self.init = nn.Linear(2 * H, 2 * H)
        self.decoder = nn.GRUCell(E + 2 * H, 2 * H)  # input feeding: the last context goes in too
        self.att_h, self.att_s = nn.Linear(2 * H, c.attention), nn.Linear(2 * H, c.attention, bias=False)
        self.att_v = nn.Linear(c.attention, 1, bias=False)
        self.out = nn.Linear(4 * H, V)
        self.gate = nn.Linear(4 * H + E, 1)

    # the tagger
    def tag_logits(self, src):
        h, _ = self.tagger(self.embed(src))
        return self.tag_head(h)[..., 0]  # (B, L)

    # the encoder–decoder
    def encode(self, src, ans):
        mask = src != 0
        h, _ = self.encoder(torch.cat([self.embed(src), self.answer_embed(ans)], -1))
        h = h * mask[..., None]
        mean = h.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return h, self.att_h(h), mask, torch.tanh(self.init(mean))

    def step(self, y, s, ctx, memory, src_ext, n_ext: int):
        """One decoder step from previous token ``y`` (B,): new state, context, attention (B, L) and
        the probabilities over the vocabulary extended by ``n_ext`` source words (B, V + n_ext)."""
        h, keys, mask, _ = memory
        x = self.embed(y.clamp_max(self.vocab_size - 1).masked_fill(y >= self.vocab_size, 1))
        s = self.decoder(torch.cat([x, ctx], -1), s)
        e = self.att_v(torch.tanh(keys + self.att_s(s)[:, None]))[..., 0].masked_fill(~mask, float("-inf"))
        a = e.softmax(-1)
        ctx = (a[..., None] * h).sum(1)
        p = self.out(torch.cat([s, ctx], -1)).softmax(-1)
        p = torch.cat([p, p.new_zeros(len(p), n_ext)], -1)
        if self.config.pointer:
            g = torch.sigmoid(self.gate(torch.cat([s, ctx, x], -1)))
            p = g * p + (1 - g) * torch.zeros_like(p).scatter_add(1, src_ext, a)
        else:
            g = torch.ones(len(p), 1)
        return s, ctx, a, p, g[:, 0]

    def forward(self, src, src_ext, ans, tgt_in):
        """Teacher forcing: the extended-vocabulary probabilities of every target position (B, T, V + X)."""
        memory = self.encode(src, ans)
        s, ctx = memory[3], memory[0].new_zeros(len(src), memory[0].shape[-1])
        n_ext = int(src_ext.max()) + 1 - self.vocab_size if src_ext.numel() else 0
        out = []
        for t in range(tgt_in.shape[1]):
            s, ctx, _, p, _ = self.step(tgt_in[:, t], s, ctx, memory, src_ext, max(0, n_ext))
            out.append(p)
        return torch.stack(out, 1)


def build(config: Seq2SeqConfig) -> Seq2Seq:
    return Seq2Seq(config)


def trim(batch):
    """Cut the padding every row of a batch has: passages and questions to the batch's longest."""
    src, src_ext, ans, tags, tgt_in, tgt = batch
    L = max(1, int((src != 0).sum(1).max())) if len(src) else 1
    T = max(1, int((tgt != 0).sum(1).max())) if len(tgt) else 1
    return src[:, :L], src_ext[:, :L], ans[:, :L], tags[:, :L], tgt_in[:, :T], tgt[:, :T]


def train_step(model: Seq2Seq, batch, config: Seq2SeqConfig) -> dict:
    """Teacher-forced cross-entropy of the targets (nats per token), plus the tagger's binary
    cross-entropy for the question task."""
    src, src_ext, ans, tags, tgt_in, tgt = trim(batch)
    p = model(src, src_ext, ans, tgt_in)
    keep = tgt != 0
    nll = -(p.gather(-1, tgt.clamp_max(p.shape[-1] - 1)[..., None])[..., 0].clamp_min(1e-12).log())
    dec = nll[keep].mean()
    out = {"decoder": dec}
    loss = dec
    if config.task == "questions":
        m = src != 0
        tag = F.binary_cross_entropy_with_logits(model.tag_logits(src)[m], tags[m].float())
        out["tagger"], loss = tag, dec + tag
    out["loss"] = loss
    return out


# --- what the page and the tests call ---

def check_passage(text) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Paste a passage: a sentence or two of text to ask questions about.")
    tokens = words(text)
    if len([w for w in tokens if w[0].isalnum()]) < 2:
        raise ValueError(f"A passage of one word ({text.strip()!r}) has nothing to ask about: paste a sentence or more.")
    if len(tokens) > MAX_PASSAGE:
        raise ValueError(f"The passage has {len(tokens)} words; at most {MAX_PASSAGE} are read. Shorten it.")
    return tokens


@dataclass
class Span:
    start: int
    end: int  # exclusive
    text: str
    probability: float  # the mean of its words' tagger probabilities


@torch.no_grad()
def tag(model: Seq2Seq, passage: str) -> tuple[list[str], list[float], list[Span]]:
    """The passage's words, each one's probability of being part of an answer, and the candidate
    spans (runs of words above 0.5; the likeliest word alone when none is), best first."""
    tokens = check_passage(passage)
    model.eval()
    ids, _, _ = model.voc.source(tokens)
    p = torch.sigmoid(model.tag_logits(torch.tensor([ids]))[0]).tolist()
    spans, i = [], 0
    while i < len(p):
        if p[i] > 0.5 and tokens[i][0].isalnum():
            j = i
            while j < len(p) and p[j] > 0.5:
                j += 1
            spans.append(Span(i, j, " ".join(tokens[i:j]), sum(p[i:j]) / (j - i)))
            i = j
        else:
            i += 1
    if not spans:
        k = max(range(len(p)), key=lambda k: p[k] if tokens[k][0].isalnum() else -1)
        spans = [Span(k, k + 1, tokens[k], p[k])]
    return tokens, p, sorted(spans, key=lambda s: -s.probability)


def check_span(tokens: list[str], start, end) -> tuple[int, int]:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (start, end)):
        raise ValueError(f"The answer span must be two word positions; got {start!r}, {end!r}.")
    start, end = int(start), int(end)
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"The answer span ({start}, {end}) is outside the passage of {len(tokens)} words: "
                         f"pick words 0 to {len(tokens) - 1} (the end is exclusive).")
    return start, end


@dataclass
class Output:
    tokens: list  # the written words, passage case kept for copied words
    attention: torch.Tensor  # (T, L) one row per output token, each summing to 1
    p_gen: list  # per output token: the probability of generating rather than copying
    log_prob: float
    sentence: bool = True  # written as a sentence (capitalised, no space before '?'), else symbols

    @property
    def text(self) -> str:
        s = " ".join(t for t in self.tokens if t != EOS)
        return s[:1].upper() + s[1:].replace(" ?", "?").replace(" ,", ",") if self.sentence else s


def _check_decoding(n, beam, temperature, length):
    check_range("number of outputs", n, 1, 16)
    check_range("beam width", beam, 1, 16)
    if not isinstance(temperature, (int, float)) or math.isnan(temperature):
        raise ValueError(f"Temperature must be a number between 0.05 and 5; got {temperature}.")
    check_range("temperature", temperature, 0.05, 5.0)
    check_range("length", length, 1, 64)
    for name, v in (("number of outputs", n), ("beam width", beam), ("length", length)):
        if v != int(v):
            raise ValueError(f"{name} must be a whole number; got {v}.")


@torch.no_grad()
def generate(model: Seq2Seq, tokens: list[str], span: tuple[int, int], n: int = 1, generator=None,
             beam: int = 1, temperature: float = 1.0, length: int = MAX_QUESTION) -> list[Output]:
    """Decode from source ``tokens`` with answer ``span``: beam search (``beam`` > 1: the ``n`` best
    beams) or ``n`` sampled outputs at ``temperature`` (beam 1). Copied words keep the source's case."""
    _check_decoding(n, beam, temperature, length)
    model.eval()
    ids, ext, oov = model.voc.source(tokens)
    src, src_ext = torch.tensor([ids]), torch.tensor([ext])
    ans = torch.tensor([[int(span[0] <= i < span[1]) for i in range(len(tokens))]])
    width = max(int(beam), int(n)) if beam > 1 else int(n)
    memory = tuple(m.expand(width, *m.shape[1:]) for m in model.encode(src, ans))
    src_ext = src_ext.expand(width, -1)
    s, ctx = memory[3], memory[0].new_zeros(width, memory[0].shape[-1])
    y = torch.full((width,), 2)
    seqs = [[] for _ in range(width)]
    atts, gates = [[] for _ in range(width)], [[] for _ in range(width)]
    score = torch.zeros(width)
    if beam > 1:
        score[1:] = float("-inf")  # all beams start as the same one
    alive = torch.ones(width, dtype=torch.bool)
    for _ in range(int(length)):
        s, ctx, a, p, g = model.step(y, s, ctx, memory, src_ext, len(oov))
        logp = p.clamp_min(1e-12).log()
        logp[:, 1] = float("-inf")  # never write <unk>: copy or choose a word
        if beam > 1:
            cand = torch.where(alive[:, None], score[:, None] + logp, float("-inf"))
            cand[~alive, 3] = score[~alive]  # a finished beam stays, unchanged
            best = cand.flatten().topk(width)
            rows, nxt = best.indices // cand.shape[1], best.indices % cand.shape[1]
            score = best.values
        else:
            q = torch.softmax(logp / temperature, -1)
            nxt = torch.multinomial(q, 1, generator=generator)[:, 0]
            rows = torch.arange(width)
            score = score + torch.where(alive, logp[rows, nxt], 0.0)
        seqs = [seqs[r] + ([int(i)] if alive[r] else []) for r, i in zip(rows.tolist(), nxt.tolist())]
        atts = [atts[r] + ([a[r]] if alive[r] else []) for r in rows.tolist()]
        gates = [gates[r] + ([float(g[r])] if alive[r] else []) for r in rows.tolist()]
        alive = alive[rows] & (nxt != 3)
        s, ctx, y = s[rows], ctx[rows], nxt
        if not alive.any():
            break
    order = torch.argsort(score, descending=True).tolist() if beam > 1 else range(width)
    # copied words are written as in the passage; so are names (capitalised past its first word)
    written = {w.lower(): w for w in tokens[1:] if w[:1].isupper()}
    first = {w.lower(): w for w in tokens}
    outs = []
    for r in list(order)[:int(n)]:
        toks = [model.voc.word(i, oov) for i in seqs[r]]
        toks = [first[t] if i >= len(model.voc) and t in first else written.get(t, t) for t, i in zip(toks, seqs[r])]
        outs.append(Output(toks, torch.stack(atts[r]) if atts[r] else torch.zeros(0, len(tokens)), gates[r],
                           float(score[r]), model.config.task == "questions"))
    return outs


def ask(model: Seq2Seq, passage: str, start=None, end=None, n: int = 3, generator=None, beam: int = 3,
        temperature: float = 1.0) -> tuple[list[str], Span, list[Output]]:
    """Questions about a passage for the answer span [start, end) (default: the tagger's best span)."""
    if model.config.task != "questions":
        raise ValueError(f"This checkpoint was trained on the {model.config.task} task, not on questions.")
    tokens, _, spans = tag(model, passage)
    if start is None:
        span = spans[0]
    else:
        s, e = check_span(tokens, start, end)
        span = Span(s, e, " ".join(tokens[s:e]), float("nan"))
    return tokens, span, generate(model, tokens, (span.start, span.end), n, generator, beam, temperature)


def sample(model: Seq2Seq, n: int, generator: torch.Generator | None = None, passage: str = "", beam: int = 1,
           temperature: float = 1.0, length: int = MAX_QUESTION):
    """Yields n outputs (a list of str): questions about ``passage`` (the tagger's best answer), or,
    with no passage, one for each of n held-out passages (toy tasks: n random strings), drawn by
    ``generator``."""
    check_range("number of outputs", n, 1, 64)
    _check_decoding(1, beam, temperature, length)
    if passage:
        if model.config.task != "questions":
            tokens = check_passage(passage)
            yield [o.text for o in generate(model, tokens, (0, 0), n, generator, beam, temperature, length)]
            return
        yield [o.text for o in ask(model, passage, n=n, generator=generator, beam=beam, temperature=temperature)[2]]
        return
    if model.config.task == "questions":
        sources = list(dict.fromkeys(p for p, _, _ in split_questions("test")))
    else:
        (src, *_), _ = data(model.config, "test")
        sources = [" ".join(model.voc.vocab[j] for j in row if j) for row in src.tolist()]
    texts = []
    for i in torch.randint(len(sources), (int(n),), generator=generator).tolist():
        if model.config.task == "questions":
            out = ask(model, sources[i], n=1, generator=generator, beam=beam, temperature=temperature)[2]
        else:
            out = generate(model, words(sources[i]), (0, 0), 1, generator, beam, temperature, length)
        texts.append(out[0].text)
        yield list(texts)


@torch.no_grad()
def evaluate(model: Seq2Seq, src, src_ext, ans, tags, tgt_in, tgt, max_examples: int = 400) -> dict:
    """Held-out teacher-forced loss and token accuracy; for questions also how often the tagger's
    best span overlaps a true answer, beside an untrained tagger's rate, and what share of greedy
    questions end with "?" and mention a passage word."""
    model.eval()
    batch = trim(tuple(t[:max_examples] for t in (src, src_ext, ans, tags, tgt_in, tgt)))
    p = model(*batch[:3], batch[4])
    keep = batch[5] != 0
    target = batch[5].clamp_max(p.shape[-1] - 1)
    nll = -(p.gather(-1, target[..., None])[..., 0].clamp_min(1e-12).log())
    loss = float(nll[keep].mean())
    m = {"val_loss": round(loss, 4), "val_perplexity": round(math.exp(loss), 2),
         "val_accuracy": round(float((p.argmax(-1) == target)[keep].float().mean()), 4)}
    if model.config.task == "questions":
        fresh = built(build, model.config, seed=0)  # the untrained reference: the same architecture
        passages = list(dict.fromkeys(p for p, _, _ in split_questions("test")))[:max_examples]
        m["span_overlap"] = span_overlap(model, passages)
        m["untrained_span_overlap"] = span_overlap(fresh, passages)
        m.update(question_checks(model, passages[:100]))
    return m


def true_answers() -> dict:
    """passage -> every answer the templates made from it."""
    out = {}
    for p, _, a in kjv_questions():
        out.setdefault(p, []).append(a)
    return out


def span_overlap(model, passages: list[str]) -> float:
    """Share of passages whose best tagged span overlaps a true answer."""
    hits, answers = 0, true_answers()
    for p in passages:
        tokens, _, spans = tag(model, p)
        best = set(range(spans[0].start, spans[0].end))
        hits += any(best & set(range(*s)) for s in (find_span(tokens, a) for a in answers[p]) if s)
    return round(hits / max(1, len(passages)), 4)


def mentions_passage(out: "Output", tokens: list[str]) -> bool:
    """Whether a question names a word of the passage (other than the question's own template words)."""
    low = {t.lower() for t in tokens}
    return any(w.lower() in low and w[:1].isalpha() and w.lower() not in QUESTION_WORDS for w in out.tokens)


def question_checks(model, passages: list[str]) -> dict:
    """Greedy questions about the tagger's best span: share ending with '?' and naming a passage word."""
    ends = mentions = 0
    for p in passages:
        tokens, _, (out,) = ask(model, p, n=1, beam=1, temperature=0.05)
        ends += out.text.endswith("?")
        mentions += mentions_passage(out, tokens)
    return {"ends_with_question_mark": round(ends / max(1, len(passages)), 4),
            "mentions_passage_word": round(mentions / max(1, len(passages)), 4)}


QUESTION_WORDS = {"who", "whom", "whose", "where", "what", "how", "did", "was", "of", "to", "the", "land", "old",
                  "son", "king", "go", "speak", "spake", "unto", "dwell"}


def preview(model, generator) -> str:
    return "\n".join(last(sample(model, 3, generator)))


def card_lines(m: dict) -> list[str]:
    lines = [f"Held-out teacher-forced loss **{m['val_loss']:.3f} nats per token** (perplexity "
             f"{m['val_perplexity']:.2f}), next-token accuracy {m['val_accuracy']:.0%}"]
    if "span_overlap" in m:
        lines.append(f"Answer tagger: best span overlaps a true answer in **{m['span_overlap']:.0%}** of held-out "
                     f"passages (untrained: {m['untrained_span_overlap']:.0%}); questions ending with '?': "
                     f"{m['ends_with_question_mark']:.0%}, mentioning a passage word: {m['mentions_passage_word']:.0%}")
    return lines


def describe(cfg: dict) -> str:
    return (f"{cfg['task']}, bi-GRU {cfg['hidden']} + GRU {2 * cfg['hidden']} with attention"
            + (" and pointer" if cfg.get("pointer") else ""))


FAMILY = Family(name="seq2seq", title="Encoder–decoder with attention (question generator)", config_cls=Seq2SeqConfig,
                build=build, train_step=train_step, sample=sample, evaluate=evaluate, presets=PRESETS, data=data,
                preview=preview, kind="text", unit="pairs", describe=describe, card_lines=card_lines)
