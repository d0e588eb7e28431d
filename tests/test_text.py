"""The shared text pieces: corpora, tokenisers, uploads, and the sampling maths (temperature,
top-k, top-p, greedy, entropy) that both text families use."""

import pytest
import torch

from models import FAMILIES
from models.text import corpus as text
from models.core.family import last, seeded


def test_corpora_split_into_documents():
    assert len(text.documents("hamlet")) == 21  # "ACT I", then the twenty scenes (later act titles end a scene)
    assert text.documents("hamlet")[0].startswith("ACT I")
    assert len(text.documents("reviews")) > 12_000
    kjv = text.documents("kjv")
    assert len(kjv) == 1189 and kjv[0].startswith("Genesis 1\nIn the beginning")


def test_windows_hold_out_the_end_of_the_stream():
    config = FAMILIES["gpt"].config("tiny")
    (train,), info = text.windows(config, "train")
    (test,), _ = text.windows(config, "test")
    assert train.shape[1] == test.shape[1] == config.seq_len + 1 and train.dtype == torch.int64
    assert info["title"] and info["vocab_size"] == len(config.vocab)
    assert int(train.max()) < len(config.vocab)
    with pytest.raises(ValueError, match="Unknown split"):
        text.windows(config, "valid")


def test_char_tokeniser_round_trips():
    tok = FAMILIES["gpt"].config("tiny").tokenizer
    s = "To be, or not to be: that is the question."
    assert tok.decode(tok.encode(s)) == s


def test_word_tokeniser_splits_punctuation_and_joins_it_back():
    assert text.split_words("The lion said, \"Hi!\"\nOK") == ["the", "lion", "said", ",", '"', "hi", "!", '"', "\n", "ok"]
    tok = FAMILIES["lstm"].config("tiny", level="word").tokenizer
    ids = tok.encode("to be, or not to be: that is the question.")
    assert tok.decode(ids) == "to be, or not to be: that is the question."
    assert tok.decode([1] + ids[:2] + [1] + ids[:2]) == "to be\n\nto be"  # <sep> starts a new document


def test_out_of_vocabulary_words_are_named():
    tok = FAMILIES["lstm"].config("tiny", level="word").tokenizer
    with pytest.raises(ValueError, match="Not in this model's vocabulary.*'zeppelin'"):
        tok.encode("the zeppelin is here")
    assert tok.encode("the zeppelin", strict=False)[1] == 0  # training text maps it to <unk>
    char = FAMILIES["gpt"].config("tiny").tokenizer
    with pytest.raises(ValueError, match="characters.*'€'"):
        char.encode("5 €")


def test_text_files_binary_non_utf8_and_tiny_ones_are_refused(tmp_path):
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300))
    with pytest.raises(ValueError, match="binary file"):
        text.read_text_file(binary)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café ".encode("latin-1") * 100)
    with pytest.raises(ValueError, match="not UTF-8"):
        text.read_text_file(latin)
    short = tmp_path / "short.txt"
    short.write_text("Hello there.")
    with pytest.raises(ValueError, match="only 12 characters"):
        text.read_text_file(short)
    good = tmp_path / "my story.txt"
    good.write_bytes(("Once upon a time there was a fox.\r\n\r\nThe fox ran away. " * 40).encode())
    assert "\r" not in text.read_text_file(good)
    config = FAMILIES["lstm"].config("tiny", dataset=str(good))
    assert "f" in config.vocab and text.title(str(good)) == "your text (my story.txt)"
    assert len(text.documents(str(good))) == 41
    (x,), _ = text.windows(config, "train")
    assert len(x) > 10


def test_unknown_dataset_and_level_are_refused():
    with pytest.raises(ValueError, match="Unknown dataset 'imdb'"):
        FAMILIES["lstm"].config("tiny", dataset="imdb")
    with pytest.raises(ValueError, match="Tokeniser level"):
        FAMILIES["lstm"].config("tiny", level="byte")


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = torch.tensor([0.15, 0.5, 0.05, 0.3], dtype=torch.float64)
    kept = lambda top_p: set(torch.nonzero(text.truncate(p, 0, top_p)).flatten().tolist())  # noqa: E731
    assert kept(0.5) == {1}  # 0.5 alone reaches 0.5
    assert kept(0.51) == {1, 3}
    assert kept(0.8) == {1, 3}
    assert kept(0.81) == {0, 1, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    out = text.truncate(p, 0, 0.8)
    assert torch.allclose(out, torch.tensor([0, 0.625, 0, 0.375], dtype=torch.float64))


def test_top_k_keeps_k_and_renormalises():
    p = torch.tensor([0.15, 0.5, 0.05, 0.3], dtype=torch.float64)
    out = text.truncate(p, 2, 1.0)
    assert torch.allclose(out, torch.tensor([0, 0.625, 0, 0.375], dtype=torch.float64))
    assert torch.equal(text.truncate(p, 0, 1.0), p)


def test_temperature_sharpens_and_flattens_and_entropy_is_in_bits():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    _, cold = text.distributions(logits, 0.2)
    _, hot = text.distributions(logits, 5.0)
    _, plain = text.distributions(logits, 1.0)
    assert text.entropy(cold) < text.entropy(plain) < text.entropy(hot) < 2.0
    assert text.entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(3.0)
    assert text.entropy(torch.tensor([1.0, 0, 0])).item() == pytest.approx(0.0)


@pytest.mark.parametrize("temperature", [0, -0.5, float("nan")])
def test_temperature_zero_or_negative_is_explained(temperature):
    with pytest.raises(ValueError, match="Temperature must be above 0.*greedy"):
        text.check_controls(temperature, 0, 1.0)


@pytest.mark.parametrize("family", ["lstm", "gpt"])
def test_seed_reproduces_text_and_top_k_1_is_greedy(family):
    fam = FAMILIES[family]
    torch.manual_seed(0)
    model = fam.build(fam.config("tiny"))
    draw = lambda seed, **kw: last(fam.sample(model, 2, generator=seeded(seed), prompt="The ", length=40, **kw))  # noqa: E731
    assert draw(5) == draw(5) and draw(5) != draw(6)
    assert all(t.startswith("The ") for t in draw(5))
    assert draw(1, top_k=1) == draw(2, greedy=True)
    assert draw(1, top_p=1e-3) == draw(2, greedy=True)  # a tiny nucleus is the top token alone


def test_unk_is_not_drawn_unless_allowed():
    fam = FAMILIES["lstm"]
    torch.manual_seed(0)
    model = fam.build(fam.config("tiny", level="word"))
    with torch.no_grad():
        model.head.bias[0] = 50.0  # make <unk> overwhelmingly likely
    steps = list(text.decode(model, model.tokenizer, 1, seeded(0), prompt="the", length=5))
    assert all(s.token != 0 and s.after[0] == 0 and s.before[0] > 0.9 for s in steps)
    steps = list(text.decode(model, model.tokenizer, 1, seeded(0), prompt="the", length=5, allow_unk=True))
    assert all(s.token == 0 for s in steps)


def test_stop_at_separator_ends_the_document():
    fam = FAMILIES["lstm"]
    torch.manual_seed(0)
    model = fam.build(fam.config("tiny", level="word"))
    with torch.no_grad():
        model.head.bias[1] = 50.0  # <sep> next, always
    steps = list(text.decode(model, model.tokenizer, 2, seeded(0), prompt="the king", length=20, stop_at_sep=True))
    assert len(steps) == 1 and steps[0].text == ["the king", "the king"]


def test_steps_carry_the_distributions_of_each_position():
    fam = FAMILIES["gpt"]
    torch.manual_seed(0)
    model = fam.build(fam.config("tiny"))
    steps = list(text.decode(model, model.tokenizer, 1, seeded(3), prompt="Ham", length=6, top_k=5,
                             temperature=0.7))
    assert len(steps) == 6 and steps[-1].text[0] == model.tokenizer.decode(steps[-1].ids)
    for s in steps:
        assert s.before.sum().item() == pytest.approx(1.0) and s.after.sum().item() == pytest.approx(1.0)
        assert int((s.after > 0).sum()) <= 5 and s.after[s.token] > 0


def test_repetition_measures_repeated_ngrams():
    assert text.repetition([1, 2, 3, 4, 5, 6, 7]) == 0.0
    assert text.repetition([1, 2] * 20) > 0.9
    assert text.repetition([1, 2]) == 0.0


def test_sampler_controls_are_checked():
    fam = FAMILIES["gpt"]
    model = fam.build(fam.config("tiny"))
    for controls, words in [({"length": 0}, "length"), ({"top_k": -1}, "top-k"), ({"top_p": 0.0}, "top-p"),
                            ({"temperature": 100.0}, "temperature"), ({"top_k": 2.5}, "whole number")]:
        with pytest.raises(ValueError, match=words):
            last(fam.sample(model, 1, generator=seeded(0), **controls))


def test_without_stop_generation_runs_on_into_a_new_document():
    fam = FAMILIES["lstm"]
    torch.manual_seed(0)
    model = fam.build(fam.config("tiny", level="word"))
    with torch.no_grad():
        model.head.bias[1] = 8.0  # <sep> likely, but not certain
    steps = list(text.decode(model, model.tokenizer, 1, seeded(0), prompt="the king", length=40))
    tokens = [s.token for s in steps]
    first = tokens.index(1)
    assert len(steps) == 40 and any(t != 1 for t in tokens[first:]), "text continues after <sep>"
    assert "\n\n" in steps[-1].text[0]


def tiny_lm(family="lstm", **overrides):
    fam = FAMILIES[family]
    torch.manual_seed(0)
    return fam.build(fam.config("tiny", **overrides)).eval()


def test_next_token_top_is_the_model_distribution_ranked():
    model = tiny_lm(level="word")
    with torch.no_grad():
        model.head.bias[0] = 50.0  # <unk> overwhelmingly likely: it is still never offered
        model.head.bias[5] = 20.0
    ids = text.prompt_ids(model.tokenizer, "to be")
    top = text.next_token_top(model, ids, 10)
    with torch.no_grad():
        logits, _ = model.next_logits(torch.tensor([ids]))
    p = torch.softmax(logits[0].double(), -1)
    assert len(top.ids) == 10 and 0 not in top.ids and top.ids[0] == 5
    assert top.probs == sorted(top.probs, reverse=True)
    assert top.probs == pytest.approx(p[top.ids].tolist())
    assert top.entropy == pytest.approx(float(text.entropy(p)))  # <unk>'s mass counts in the entropy
    assert top.mass == pytest.approx(sum(top.probs)) and top.mass < 0.01
    char = tiny_lm("gpt")  # 67 characters: asking for more gives every token but <unk>
    everything = text.next_token_top(char, text.prompt_ids(char.tokenizer, "To be"), 1000)
    assert len(everything.ids) == len(char.tokenizer.vocab) - 1 and 0 not in everything.ids
    with pytest.raises(ValueError, match="at least one token"):
        text.next_token_top(model, [], 10)
    with pytest.raises(ValueError, match="number of tokens offered"):
        text.next_token_top(model, ids, 0)


def test_candidates_always_include_the_drawn_token():
    p = torch.tensor([0.1, 0.4, 0.05, 0.3, 0.15], dtype=torch.float64)
    assert text.candidates(p, 1, 3) == [1, 3, 4]
    assert text.candidates(p, 2, 3) == [1, 3, 2]  # the unlikely drawn token takes the last place
    assert text.candidates(p, 0, 10) == [1, 3, 4, 0, 2]


def test_card_lines_compare_with_untrained_and_frequency_baselines():
    m = {"val_loss": 1.7727, "val_perplexity": 5.89, "val_accuracy": 0.4819, "uniform_loss": 4.2047,
         "unigram_loss": 3.3328}
    (line,) = text.card_lines(m)
    assert "1.773 nats per token" in line and "perplexity **5.9**" in line
    assert "perplexity 67" in line and "3.33 nats" in line and "48%" in line
    assert text.card_lines({}) == []
    for name in ("gpt", "lstm"):
        assert FAMILIES[name].metric_lines(m) == [line]
