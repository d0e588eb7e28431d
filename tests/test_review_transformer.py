"""Chollet's review transformer (DLwP ch. 12): the ``chollet`` preset's sizes, the shipped
``gpt_reviews`` checkpoint, its five temperatures side by side from one seed, and the card's
comparison with ``lstm_reviews`` on the same held-out tokens."""
import json

import gradio as gr
import pytest

from models.text import compare, corpus, gpt
from studio import widgets
from studio.tabs import text as tab

CARD = compare.SHIPPED / "gpt_reviews.json"


def test_chollet_preset_has_the_books_sizes():
    c = gpt.GPTConfig(**gpt.PRESETS["chollet"])
    assert (c.level, c.max_vocab, c.seq_len, c.block) == ("word", 15000, 100, 100)
    assert (c.d_model, c.ff, c.heads, c.layers) == (256, 2048, 2, 1)
    assert c.dataset == "reviews"


def test_shipped_checkpoint_is_the_preset():
    model, config, _ = tab.loaded("gpt_reviews")
    assert len(config.vocab) == 15000 and config.seq_len == 100 and config.block == 100
    assert model.tok.weight.shape == (15000, 256) and len(model.blocks) == 1
    assert model.blocks[0].mlp[0].out_features == 2048 and model.blocks[0].attn.heads == 2
    assert (compare.SHIPPED / "gpt_reviews.safetensors").stat().st_size < 25e6


def test_temperatures_side_by_side_from_one_seed():
    updates = list(tab.compare("gpt_reviews", "This movie", 25, 0, 1.0, 7, False))
    *outs, caption, record, files = updates[-1]
    assert len(outs) == 5
    assert [o["label"].split(":")[0] for o in outs] == [f"τ = {t}" for t in (0.2, 0.5, 0.7, 1.0, 1.5)]
    assert all(o["value"].startswith("this movie") for o in outs)
    assert len({o["value"] for o in outs}) > 1  # the temperatures differ, not one text five times
    again = list(tab.compare("gpt_reviews", "This movie", 25, 0, 1.0, 7, False))[-1]
    assert [o["value"] for o in again[:5]] == [o["value"] for o in outs]
    other = list(tab.compare("gpt_reviews", "This movie", 25, 0, 1.0, 8, False))[-1]
    assert [o["value"] for o in other[:5]] != [o["value"] for o in outs]


def test_side_by_side_refuses_bad_prompts_clearly():
    with pytest.raises(gr.Error, match="Type a prompt"):
        list(tab.compare("gpt_reviews", "  ", 10, 0, 1.0, 0, False))
    with pytest.raises(gr.Error, match="Not in this model's vocabulary"):
        list(tab.compare("gpt_reviews", "This qwxzzy movie", 10, 0, 1.0, 0, False))


def test_card_says_which_beats_which_and_by_how_much():
    c = json.loads(CARD.read_text())["metrics"]["comparison"]
    assert c["other"] == "lstm_reviews" and c["common_vocab"] == 3000 and c["tokens"] > 20000
    line = corpus.comparison_line(c)
    better = c["perplexity"] < c["other_perplexity"]
    assert ("beats lstm_reviews" in line) == better and ("does not beat" in line) == (not better)
    assert f"{c['perplexity']:.1f}" in line and f"{c['other_perplexity']:.1f}" in line
    shown = widgets.read_card(widgets.resolve("gpt", "gpt_reviews"))
    assert line in "\n".join(corpus.card_lines(shown["metrics"]))


def test_comparison_pools_the_larger_vocabulary_into_unk():
    """On a few hundred tokens: a model compared with itself ties; against the LSTM both are scored
    over the LSTM's 3,000 tokens; vocabularies that do not nest are refused."""
    model = tab.loaded("gpt_reviews")[0]
    lstm = tab.loaded("lstm_reviews")[0]
    same = compare.compare(model, model, max_tokens=200)
    assert same["perplexity"] == same["other_perplexity"] and same["common_vocab"] == 15000
    both = compare.compare(model, lstm, max_tokens=200)
    assert both["tokens"] == 200 and both["common_vocab"] == 3000
    with pytest.raises(ValueError, match="do not nest"):
        compare.common_vocab(("<unk>", "<sep>", "a"), ("<unk>", "<sep>", "b", "c"))
