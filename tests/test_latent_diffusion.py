"""Latent text-to-image diffusion: prompts and their refusals, captions made from measured
attributes, the two training stages, cross-attention maps, and the shipped checkpoint following
prompts (an untrained one does not)."""
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.core import checkpoint, evaluate
from models.image import latent_diffusion as ldm
from models.core.data import load_uint8
from models.core.family import last, seeded

FAM = ldm.FAMILY
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "ldm_mnist.safetensors"


@pytest.fixture
def tiny():
    """A tiny untrained model whose output layer is not zero (as it is at initialisation), so the
    prompt reaches the sample."""
    torch.manual_seed(0)
    model = FAM.build(FAM.config("tiny")).eval()
    torch.nn.init.normal_(model.denoiser.out[-1].weight, std=0.3)
    return model


def words(ids, dataset="mnist"):
    vocab = ldm.vocabulary(dataset)
    return [vocab[i] for i in ids]


def test_prompts_are_tokenised_with_aliases_and_digits():
    assert words(ldm.tokenize("A thick 7", "mnist")) == ["a", "thick", "seven"]
    assert words(ldm.tokenize("an italic, bold two!", "mnist")) == ["a", "slanted", "thick", "two"]
    assert words(ldm.tokenize("the pale T-shirt", "fashion"), "fashion") == ["a", "bright", "tshirt"]
    assert words(ldm.tokenize("a shoe", "fashion"), "fashion") == ["a", "shoe"]


@pytest.mark.parametrize("prompt, message", [
    ("", "Write a prompt"),
    ("   ,.!", "Write a prompt"),
    ("a banana", "Unknown word.*'banana'.*it knows: .*thick"),
    ("a shoe", "Unknown word.*'shoe'.*mnist"),  # a Fashion word for a digits checkpoint
    ("a thick thick thick thick thick seven", "at most 6 words"),
])
def test_bad_prompts_are_refused_clearly(prompt, message):
    with pytest.raises(ValueError, match=message):
        ldm.tokenize(prompt, "mnist")


@pytest.mark.parametrize("prompt, unknown", [
    ("a 七 seven", "'七'"),  # another script's character is a word it does not know, never dropped
    ("a séven", "'séven'"),
    ("a sevem", "'sevem'"),
    ("a ☺ seven ☺", "'☺' for"),  # named once
])
def test_unknown_characters_and_words_are_named(prompt, unknown):
    with pytest.raises(ValueError, match=f"Unknown word.*{unknown}"):
        ldm.tokenize(prompt, "mnist")


def test_punctuation_still_separates_words():
    assert ldm.words_of("a seven - thick!") == ["a", "seven", "thick"]
    assert words(ldm.tokenize("(a) 'thin', 7.", "mnist")) == ["a", "thin", "seven"]


def test_autoencode_reports_the_reconstruction_bce(tiny):
    x = load_uint8("mnist", "test")[0][:3]
    x = torch.from_numpy(x / 255.0).float()[:, None]
    z, x_hat, bce = ldm.autoencode(tiny, x)
    assert z.shape == (3, 2, 7, 7) and x_hat.shape == x.shape
    p = x_hat.clamp(1e-6, 1 - 1e-6)
    assert bce == pytest.approx(-(x * p.log() + (1 - x) * (1 - p).log()).mean().item(), rel=1e-5)
    assert ldm.reconstruction_bce(x, x).item() < bce  # a perfect copy costs only the pixels' own entropy


def test_word_attention_maps_and_shares(tiny):
    att = list(ldm.generate(tiny, 1, seeded(0), prompt="a thin seven", steps=3, keep_attention=True))[-1].attention[0]
    maps, share = ldm.word_attention(att, 3)
    assert maps.shape == (3, 28, 28) and share.shape == (3,)
    assert share.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(maps.mean((1, 2)), share, atol=0.05)  # upsampling keeps each map's mass
    with pytest.raises(ValueError, match="number of words"):
        ldm.word_attention(att, ldm.MAX_TOKENS + 1)


def test_card_speaks_the_familys_terms():
    metrics = {"test_reconstruction_bce": 0.0675, "test_latent_mse": 0.0632, "prompt_class_accuracy": 0.795,
               "ink_ratio_thick_to_thin": 3.78, "prompt_class_worst": ["9", 0.5],
               "combined_prompt_class_accuracy": 0.93,
               "combined_prompt_measures": {"thick": 150.0, "slanted": 0.4, "thin": 50.0, "upright": 0.1}}
    lines = FAM.metric_lines(metrics)
    assert "BCE **0.0675**" in lines[0] and "80%" in lines[1] and "'thick' samples carry **3.78×**" in lines[1]
    assert "worst class 9 50%" in lines[1]
    assert "'a thick slanted <class>'" in lines[2] and "**93%**" in lines[2] and "slanted 0.4 against upright 0.1" in lines[2]
    assert FAM.summary(FAM.config("tiny").__dict__) == "latent 2×7×7, denoiser width 8, 1 blocks"


def test_attributes_measure_what_their_words_say():
    """Within every class, "thick" digits carry more ink than "thin" ones and "slanted" ones lean
    more than "upright" ones; "dark" clothes are darker than "bright" ones; a third get each word."""
    x, y = load_uint8("mnist", "test")
    x = x / 255.0
    codes = ldm.attributes(x, y, "mnist")
    assert codes.shape == (len(x), 2)
    assert 0.3 < (codes[:, 0] == 1).mean() < 0.37
    ink = x.reshape(len(x), -1).sum(1)
    for c in range(10):
        m = y == c
        assert ink[m & (codes[:, 0] == 1)].mean() > 1.2 * ink[m & (codes[:, 0] == 2)].mean()
    # slant: the ink's horizontal centre moves between the top and bottom halves of slanted digits
    top, bottom = x[:, :14].sum(1), x[:, 14:].sum(1)
    cols = np.arange(28)
    shift = np.abs((top * cols).sum(1) / (top.sum(1) + 1e-6) - (bottom * cols).sum(1) / (bottom.sum(1) + 1e-6))
    assert shift[codes[:, 1] == 1].mean() > 2 * shift[codes[:, 1] == 2].mean()
    fx, fy = load_uint8("fashion", "test")
    fx = fx[:2000] / 255.0
    fcodes = ldm.attributes(fx, fy[:2000], "fashion")
    mean = (fx * (fx > 0.1)).sum((1, 2)) / (fx > 0.1).sum((1, 2))
    assert mean[fcodes[:, 0] == 1].mean() < mean[fcodes[:, 0] == 2].mean()


def test_captions_follow_their_probabilities():
    labels, attrs = torch.tensor([7, 7, 2]), torch.tensor([[1, 2], [0, 1], [2, 0]])
    g = seeded(0)
    full = [words(row[row > 0].tolist()) for row in ldm.captions(labels, attrs, "mnist", 1.0, 0.0, g)]
    assert sorted(full[0]) == sorted(["a", "thick", "upright", "seven"]) and full[0][0] == "a"
    assert sorted(full[1]) == ["a", "seven", "slanted"] and sorted(full[2]) == ["a", "thin", "two"]
    bare = ldm.captions(labels, attrs, "mnist", 0.0, 0.0, g)
    assert [words(r[r > 0].tolist()) for r in bare] == [["a", "seven"], ["a", "seven"], ["a", "two"]]
    empty = ldm.captions(labels, attrs, "mnist", 1.0, 1.0, g)
    assert all(words(r[r > 0].tolist()) == [ldm.EMPTY] for r in empty)
    shoes = ldm.captions(torch.tensor([5, 7, 9] * 50), torch.zeros(150, 2, dtype=torch.long), "fashion", 1.0, 0.0, g)
    nouns = {words(r[r > 0].tolist(), "fashion")[-1] for r in shoes}
    assert nouns == {"sandal", "sneaker", "boot", "shoe"}


def test_training_has_two_stages(tiny):
    """With ae_steps = 1 the first step trains the autoencoder (and measures the latents' spread),
    the next ones the denoiser and text encoder on frozen latents."""
    config = FAM.config("tiny")
    tiny.train()
    (x, y, a), _ = FAM.examples(config, "train")
    batch = (x[:8], y[:8], a[:8])
    first = FAM.train_step(tiny, batch, config)
    assert "reconstruction" in first and tiny.latent_std.item() != 1.0
    first["loss"].backward()
    assert tiny.ae.encoder[0].weight.grad is not None and tiny.denoiser.inp.weight.grad is None
    tiny.zero_grad(set_to_none=True)
    second = FAM.train_step(tiny, batch, config)
    assert "reconstruction" not in second
    second["loss"].backward()
    assert tiny.ae.encoder[0].weight.grad is None
    assert tiny.denoiser.inp.weight.grad is not None and tiny.text.embed.weight.grad is not None


def test_cross_attention_maps_are_distributions_over_the_prompt(tiny):
    """Each latent position's attention over the prompt's real tokens sums to 1; padding gets none."""
    frames = list(ldm.generate(tiny, 2, seeded(0), prompt="a thin seven", steps=5, keep_attention=True))
    assert len(frames) == 5 and [f.step for f in frames] == [1, 2, 3, 4, 5]
    att = frames[-1].attention
    assert att.shape == (2, ldm.MAX_TOKENS, 7, 7)
    assert torch.allclose(att[:, :3].sum(1), torch.ones(2, 7, 7), atol=1e-5)
    assert att[:, 3:].abs().max() == 0
    assert frames[-1].z.shape == (2, 2, 7, 7)


def test_prompt_changes_the_sample_and_a_seed_repeats_it(tiny):
    a = last(FAM.sample(tiny, 2, seeded(0), prompt="a thick seven", steps=5))
    b = last(FAM.sample(tiny, 2, seeded(0), prompt="a thick seven", steps=5))
    c = last(FAM.sample(tiny, 2, seeded(0), prompt="a thin two", steps=5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    per_sample = last(FAM.sample(tiny, 2, seeded(0), prompt=["a thick seven", "a thin two"], steps=5))
    assert per_sample.shape == (2, 1, 28, 28)


def test_bad_sampler_input_is_refused(tiny):
    with pytest.raises(ValueError, match="one per sample"):
        last(FAM.sample(tiny, 3, seeded(0), prompt=["a one", "a two"]))
    with pytest.raises(ValueError, match="guidance"):
        last(FAM.sample(tiny, 2, seeded(0), prompt="a one", guidance=-1.0))
    with pytest.raises(ValueError, match="steps"):
        last(FAM.sample(tiny, 2, seeded(0), prompt="a one", steps=tiny.T + 1))
    with pytest.raises(ValueError, match="Unknown word"):
        last(FAM.sample(tiny, 2, seeded(0), prompt="a dog"))


def follows(model, dataset: str, per_class: int, words: str = ""):
    """Prompts "a <words><class noun>" for every class ``per_class`` times (seed 0, 30 steps): the
    share the project classifier reads as the prompted class, and the two attribute measures."""
    nouns = [n[0] for n in ldm.VOCABULARY[dataset]["nouns"]]
    labels = torch.arange(10).repeat(per_class)
    x = last(FAM.sample(model, len(labels), seeded(0), prompt=[f"a {words}{nouns[i]}" for i in labels], steps=30))
    probs = evaluate.features_and_probs(evaluate.load_classifier(dataset), x)[1]
    return (probs.argmax(1) == labels).double().mean().item(), ldm.attribute_measures(x.numpy(), dataset)


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped latent-diffusion checkpoint is not in this checkout")
def test_shipped_checkpoint_follows_prompts():
    """The bar, with a margin: "a <digit>" is drawn as that digit (the card: every digit >= 95 %), and a
    combined prompt keeps its digit while both attributes move their measures ("thick" carries more
    ink than "thin", "slanted" shears more than "upright"); an untrained model of the same shape fails."""
    model, config, _ = checkpoint.load(SHIPPED)
    follows_mnist = functools.partial(follows, dataset="mnist", per_class=6)
    accuracy, _ = follows_mnist(model)
    assert accuracy >= 0.9, accuracy
    strong_acc, (ink_s, shear_s) = follows_mnist(model, words="thick slanted ")
    weak_acc, (ink_w, shear_w) = follows_mnist(model, words="thin upright ")
    assert min(strong_acc, weak_acc) >= 0.8, (strong_acc, weak_acc)
    assert ink_s.mean() > 1.8 * ink_w.mean() and shear_s.mean() > 1.5 * shear_w.mean()
    card = json.loads(SHIPPED.with_suffix(".json").read_text())["metrics"]
    assert min(card["prompt_class_per_class"].values()) >= 0.95 and card["combined_prompt_class_accuracy"] >= 0.9
    torch.manual_seed(0)
    untrained_accuracy, _ = follows_mnist(FAM.build(config).eval())
    assert untrained_accuracy < 0.3


FASHION = SHIPPED.with_name("ldm_fashion.safetensors")


@pytest.mark.skipif(not FASHION.exists(), reason="the shipped Fashion text-to-image checkpoint is not in this checkout")
def test_shipped_fashion_checkpoint_follows_prompts():
    """The Fashion text-to-image model: "a <class>" is mostly drawn as that class (the card: 83 %;
    its long-sleeved shirts are read as pullovers or coats), "dark" clothes are darker than "bright"
    ones and "wide" ones wider than "narrow" ones; an untrained model of the same shape fails."""
    model, config, _ = checkpoint.load(FASHION)
    follows_fashion = functools.partial(follows, dataset="fashion", per_class=4)
    accuracy, _ = follows_fashion(model)
    assert accuracy >= 0.7, accuracy
    _, (dark, wide) = follows_fashion(model, words="dark wide ")
    _, (bright, narrow) = follows_fashion(model, words="bright narrow ")
    assert dark.mean() > bright.mean() + 0.2 and wide.mean() > narrow.mean() + 1, (dark.mean(), bright.mean())
    card = json.loads(FASHION.with_suffix(".json").read_text())["metrics"]
    assert card["prompt_class_accuracy"] >= 0.8
    torch.manual_seed(0)
    untrained_accuracy, _ = follows_fashion(FAM.build(config).eval())
    assert untrained_accuracy < 0.3
