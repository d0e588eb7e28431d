"""Two language models of one corpus on the same held-out words: which predicts them better?

Perplexities are comparable only over the same tokens and the same set of outcomes. A model with a
15,000-word vocabulary must name every rare word; one with 3,000 words lumps them all into <unk>
and is rewarded for guessing "some rare word". So both models are scored over the *smaller*
vocabulary: the larger model's probabilities of the words the smaller one lacks are summed into
its <unk>,

    p(<unk> | x_<t) = Σ_{w ∉ V_small} p_large(w | x_<t),

which is exactly the probability it gives the event the smaller model predicts. Each model reads
the held-out text (the last 10% of the token stream, as the cards' own scores) in its own
tokenisation, in the same non-overlapping windows, so every held-out token is scored once by both,
after the same number of earlier tokens. The word tokeniser keeps the most frequent words, so a
smaller vocabulary of the same corpus is a prefix of a larger one and both streams have the same
length: token t is the same word in both.

``python -m models.text.compare gpt_reviews lstm_reviews --write`` adds the result to the first
checkpoint's card (``metrics["comparison"]``), which the card's text then states.
"""
from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

from models.core import checkpoint
from models.core.family import device_of
from models.text import corpus

SHIPPED = corpus.ASSETS / "checkpoints"


def held_out(config) -> torch.Tensor:
    """The held-out token ids of a text config: the last 10% of its stream."""
    ids = corpus._stream(config.dataset, config.level, config.vocab)
    return ids[int(len(ids) * 0.9):]


def common_vocab(a: tuple, b: tuple) -> tuple:
    """The smaller of two vocabularies, checked to be contained in the larger."""
    small, large = sorted((tuple(a), tuple(b)), key=len)
    missing = set(small) - set(large)
    if missing:
        raise ValueError(f"The vocabularies do not nest: {len(missing)} tokens of the smaller one "
                         f"(e.g. {sorted(missing)[:3]}) are missing from the larger one.")
    return small


@torch.no_grad()
def common_log_probs(model, ids: torch.Tensor, common: tuple, context: int = 100, batch: int = 16,
                     max_tokens: int | None = None) -> torch.Tensor:
    """Log-probabilities (nats) of each held-out token after the first, over the ``common``
    vocabulary: (N,). ``ids`` are in the model's own vocabulary; windows of ``context`` + 1 tokens
    overlap by one, so token t is predicted from the tokens since its window began."""
    model.eval()
    vocab = model.tokenizer.vocab
    index = {t: i for i, t in enumerate(common)}
    to_common = torch.tensor([index.get(t, 0) for t in vocab])  # own id -> common id (<unk> for the rest)
    if max_tokens:
        ids = ids[:max_tokens + 1]
    starts = range(0, len(ids) - 1, context)
    out = []
    device = device_of(model)
    for i in range(0, len(starts), batch):
        chunk = [ids[s:s + context + 1] for s in starts[i:i + batch]]
        width = max(len(c) for c in chunk)
        x = torch.stack([F.pad(c, (0, width - len(c))) for c in chunk]).to(device)  # (B, ≤ context + 1)
        logp = model(x[:, :-1]).log_softmax(-1).cpu().double()  # (B, T, V) in the model's vocabulary
        p = torch.zeros(*logp.shape[:2], len(common), dtype=torch.float64)
        p.index_add_(2, to_common, logp.exp())  # pool the probabilities of words outside the common vocabulary
        target = to_common[x[:, 1:].cpu()]
        got = p.gather(2, target[..., None])[..., 0].clamp_min(1e-300).log()  # (B, T)
        for row, c in zip(got, chunk):
            out.append(row[:len(c) - 1])
    return torch.cat(out)


def compare(a, b, context: int = 100, max_tokens: int | None = None) -> dict:
    """Held-out perplexity of models ``a`` and ``b`` (same corpus and word tokeniser, nested
    vocabularies) over the same tokens and the smaller vocabulary; see the module docstring."""
    ca, cb = a.config, b.config
    if (ca.dataset, ca.level) != (cb.dataset, cb.level):
        raise ValueError(f"Compare models of one corpus and tokeniser; got {ca.dataset}/{ca.level} "
                         f"and {cb.dataset}/{cb.level}.")
    common = common_vocab(ca.vocab, cb.vocab)
    la = common_log_probs(a, held_out(ca), common, context, max_tokens=max_tokens)
    lb = common_log_probs(b, held_out(cb), common, context, max_tokens=max_tokens)
    ppl_a, ppl_b = math.exp(-float(la.mean())), math.exp(-float(lb.mean()))
    return {"tokens": len(la), "common_vocab": len(common), "context": context,
            "perplexity": round(ppl_a, 2), "other_perplexity": round(ppl_b, 2)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Perplexity of two text checkpoints on the same held-out tokens.")
    p.add_argument("name", help="checkpoint whose card gets the comparison, e.g. gpt_reviews")
    p.add_argument("other", help="the checkpoint it is compared with, e.g. lstm_reviews")
    p.add_argument("--context", type=int, default=100)
    p.add_argument("--write", action="store_true", help="add the result to NAME's card")
    a = p.parse_args(argv)
    models = [checkpoint.load(SHIPPED / f"{n}.safetensors")[0] for n in (a.name, a.other)]
    result = {"other": a.other, **compare(*models, context=a.context)}
    print(corpus.comparison_line(result, a.name))
    if a.write:
        card_path = SHIPPED / f"{a.name}.json"
        card = json.loads(card_path.read_text())
        card["metrics"]["comparison"] = result
        checkpoint.write_json(card_path, card)


if __name__ == "__main__":
    main()
