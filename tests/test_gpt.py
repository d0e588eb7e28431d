"""The transformer decoder: causal attention whose rows are distributions, a KV cache that changes
speed but not results, both kinds of positions, a context that slides, and the shipped checkpoint."""
import dataclasses
import json
import math

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.text import corpus as text, gpt
from models.core.family import last, seeded
from models.core.train import SHIPPED

FAM = FAMILIES["gpt"]


def tiny(**overrides):
    torch.manual_seed(0)
    return FAM.build(FAM.config("tiny", **{"block": 32, **overrides})).eval()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_attention_rows_sum_to_one_and_are_causal(positions):
    model = tiny(positions=positions, layers=2)
    ids = model.tokenizer.encode("To be, or not")
    w = model.attention(ids)  # (layers, heads, T, T)
    assert w.shape == (2, 2, len(ids), len(ids))
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, len(ids)), atol=1e-5)
    assert torch.all(w.triu(1) == 0), "no position may attend to a later one"
    lower = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    assert torch.all(w[..., lower] > 0), "every earlier position gets some weight"


def test_weights_path_matches_the_fast_attention():
    model = tiny()
    x = torch.tensor([model.tokenizer.encode("Something is rotten")])
    fast = model(x)
    slow, _, _ = model(x, need_weights=True, return_cache=True)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_kv_cache_gives_the_same_logits_and_text():
    model = tiny()
    x = torch.tensor([model.tokenizer.encode("O, what a rogue and peasant")])
    full = model(x)[0, -1]
    logits, cache = model.next_logits(x[:, :5])
    for t in range(6, x.shape[1] + 1):
        logits, cache = model.next_logits(x[:, :t], cache)
    assert torch.allclose(logits[0], full, atol=1e-5)
    with_cache = last(FAM.sample(model, 2, generator=seeded(4), prompt="Ham", length=30, use_cache=True))
    without = last(FAM.sample(model, 2, generator=seeded(4), prompt="Ham", length=30, use_cache=False))
    assert with_cache == without


def test_context_slides_past_the_block():
    model = tiny(block=16)
    out = last(FAM.sample(model, 1, generator=seeded(0), prompt="", length=40))
    assert len(out[0]) == 40
    with pytest.raises(ValueError, match="At most 16 tokens"):
        model(torch.zeros(1, 17, dtype=torch.int64))


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        FAM.config("tiny", d_model=15)
    with pytest.raises(ValueError, match="must fit in the context"):
        FAM.config("tiny", seq_len=32)
    with pytest.raises(ValueError, match="Positions"):
        FAM.config("tiny", positions="rotary")


def test_head_entropy_is_the_mean_row_entropy_in_bits():
    model = tiny(layers=2)
    ids = model.tokenizer.encode("To be, or not")
    w = model.attention(ids)
    h = gpt.head_entropy(w)
    assert h.shape == (2, 2)
    by_hand = -(w * torch.log2(w.clamp_min(1e-30))).sum(-1).mean(-1)
    assert torch.allclose(h, by_hand, atol=1e-5)
    T = len(ids)  # a causal head spread evenly over every earlier token: row i has log2(i + 1) bits
    even = torch.ones(T, T).tril()
    even = (even / even.sum(-1, keepdim=True))[None, None]
    expected = torch.log2(torch.arange(1, T + 1, dtype=torch.float32)).mean()
    assert gpt.head_entropy(even)[0, 0].item() == pytest.approx(expected.item(), abs=1e-5)
    assert (h >= 0).all() and (h <= expected + 1e-4).all()


def test_describe_names_the_architecture():
    cfg = dataclasses.asdict(FAM.config("cpu"))
    assert FAM.summary(cfg) == "char level, GPT 4 layers × 4 heads, width 128, context 128"
    assert "sinusoidal" in FAM.summary({**cfg, "positions": "sinusoidal"})
    assert FAM.summary({}) == ""  # an old or partial card: nothing rather than an error


def test_sinusoids_are_bounded_and_distinct():
    pe = gpt.sinusoids(50, 16)
    assert pe.shape == (50, 16) and pe.abs().max() <= 1
    assert torch.cdist(pe, pe).fill_diagonal_(1).min() > 0.01


SHIPPED_GPT = SHIPPED / "gpt_hamlet.safetensors"


@pytest.mark.skipif(not SHIPPED_GPT.exists(), reason="gpt_hamlet not shipped")
def test_shipped_gpt_beats_what_an_untrained_model_can():
    """An untrained model sits near the uniform loss ln V (4.2 nats for 67 characters), and a model
    that ignores context at the unigram loss (3.3 nats); the shipped one must stay under 2.3 nats per
    character on Act V, which it never saw, and its samples must be mostly real words."""
    model, config, _ = checkpoint.load(SHIPPED_GPT)
    (x,), _ = text.windows(config, "test")
    bound = 2.3
    assert bound < text.unigram_loss(config) - 0.5
    assert text.evaluate(model, x, max_windows=64)["val_loss"] < bound
    torch.manual_seed(0)
    assert text.evaluate(FAM.build(config), x, max_windows=16)["val_loss"] > 0.9 * math.log(len(config.vocab))
    card = json.loads(SHIPPED_GPT.with_suffix(".json").read_text())
    assert card["metrics"]["val_loss"] < bound and card["metrics"]["val_perplexity"] > 1
    sample = last(FAM.sample(model, 1, generator=seeded(0), prompt="HAMLET\n", length=300, temperature=0.7))[0]
    words = [w for w in text.split_words(sample) if w.isalpha()]
    known = set(text.split_words(" ".join(text.documents("hamlet"))))
    assert sum(w in known for w in words) / len(words) > 0.5, sample
