"""Text that reads as words: the shipped char-level GPT on the King James Bible writes real words."""
import pytest

from models.core import checkpoint
from models.core.family import last, seeded
from models.text import corpus
from models.core.train import SHIPPED

GPT_KJV = SHIPPED / "gpt_kjv.safetensors"


def test_real_words_counts_known_words_and_drops_an_unfinished_last_word():
    r = corpus.real_words(["And God saw the lighx, and it was goo", "Blorf the LORD's"], "kjv")
    assert r["words"] == 10 and r["non_words"] == ["lighx", "Blorf"]
    assert r["rate"] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def samples():
    model, config, _ = checkpoint.load(GPT_KJV)
    return last(corpus.sample_texts(model, 6, seeded(0), length=300, temperature=0.8, stop_at_sep=True)), config


def test_samples_at_temperature_08_are_mostly_real_words(samples):
    texts, config = samples
    r = corpus.real_words(texts, config.dataset)
    assert r["words"] > 200
    assert r["rate"] >= 0.9, f"{r['rate']:.1%} real words; non-words: {r['non_words'][:20]}"


def test_samples_start_at_a_document_boundary(samples):
    texts, _ = samples
    for t in texts:  # a new chapter: its heading ("Exodus 12") or a verse, never the middle of a word
        first = t.split()[0]
        assert t[0].isupper() or t[0].isdigit(), t[:40]
        assert first.strip(",.;:").isalnum(), t[:40]
