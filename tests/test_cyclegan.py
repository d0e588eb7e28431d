"""CycleGAN: the unpaired domains, the three losses, the PatchGAN map, and the shipped checkpoint."""
import json
from pathlib import Path

import pytest
import torch

from models.core import checkpoint
from models.paint import cyclegan
from models.core.family import last, seeded

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "cyclegan_mnist.safetensors"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    config = cyclegan.FAMILY.config("tiny")
    torch.manual_seed(0)
    return cyclegan.build(config), config


def test_domains_are_unpaired_images_in_range():
    a, b, yb = cyclegan.domains("mnist", "test", 2_000)
    assert a.shape == b.shape == (2_000, 1, 28, 28) and len(yb) == 2_000
    assert a.min() >= 0 and a.max() <= 1 and b.min() >= 0 and b.max() <= 1
    # B is textured (a busy background), A is black around the digit
    assert (b[:, :, :4] > 0.05).float().mean() > 0.5 > (a[:, :, :4] > 0.05).float().mean()
    # the same call gives the same domains (seeded patches)
    assert torch.equal(cyclegan.blend_onto_patches(a[:3], 5), cyclegan.blend_onto_patches(a[:3], 5))


def test_reconstruction_loss_falls_over_a_few_steps_on_a_tiny_model():
    config = cyclegan.FAMILY.config("tiny", lr=3e-3)
    torch.manual_seed(0)
    model = cyclegan.build(config)
    opts = cyclegan.optimizers(model, config)
    a, b, _ = cyclegan.domains("mnist", "test", 2_000)
    batch = (a[:8], b[:8])
    first = cyclegan.train_step(model, batch, config, opts)["reconstruction"]
    for _ in range(10):
        out = cyclegan.train_step(model, batch, config, opts)
    assert out["reconstruction"] < 0.7 * first


def test_identity_off_preset_has_no_identity_loss():
    config = cyclegan.FAMILY.config("identity_off")
    assert config.lambda_id == 0.0 and config.lambda_reconstr == 10.0
    tiny = cyclegan.FAMILY.config("tiny", lambda_id=0.0)
    model = cyclegan.build(tiny)
    a, b, _ = cyclegan.domains("mnist", "test", 2_000)
    out = cyclegan.train_step(model, (a[:4], b[:4]), tiny, cyclegan.optimizers(model, tiny))
    assert float(out["identity"]) == 0.0


def test_six_panel_and_patch_map_shapes(tiny):
    model, _ = tiny
    a, b, _ = cyclegan.domains("mnist", "test", 2_000)
    p = cyclegan.six_panel(model, a[:3], b[:3])
    assert set(p) == {"a", "a_to_b", "a_reconstructed", "a_identity", "b", "b_to_a", "b_reconstructed", "b_identity"}
    assert all(v.shape == (3, 1, 28, 28) for v in p.values())
    assert cyclegan.patch_map(model, a[:2], "b").shape == (2, 7, 7)
    assert cyclegan.preview(model, seeded(0)).shape == (32, 1, 28, 28)


@pytest.mark.parametrize("call, words", [
    (lambda m: cyclegan.patch_map(m, torch.rand(1, 3, 28, 28), "a"), "grayscale"),
    (lambda m: cyclegan.patch_map(m, torch.rand(1, 1, 28, 28) * 2, "a"), "between 0 and 1"),
    (lambda m: cyclegan.patch_map(m, torch.rand(1, 1, 28, 28), "c"), "Unknown domain"),
    (lambda m: last(cyclegan.sample(m, 2, seeded(0), direction="sideways")), "Unknown direction"),
    (lambda m: cyclegan.test_images("mnist", "a", [2_000]), "from 0 to 1999"),
])
def test_bad_input_is_refused(tiny, call, words):
    with pytest.raises(ValueError, match=words):
        call(tiny[0])


def test_held_out_metrics(tiny):
    model, _ = tiny
    a, b, yb = cyclegan.domains("mnist", "test", 2_000)
    m = cyclegan.evaluate(model, a[:100], b[:100], yb[:100])
    assert set(m) == {"reconstruction_a", "reconstruction_b", "identity_a", "identity_b",
                      "b_to_a_digit_accuracy", "textured_input_accuracy"}
    assert all(0 <= v <= 1 for v in m.values())


def test_both_directions_sample_and_reproduce(tiny):
    model, _ = tiny
    for direction in cyclegan.DIRECTIONS:
        x = last(cyclegan.sample(model, 3, seeded(4), direction=direction))
        assert x.shape == (3, 1, 28, 28)
        assert torch.equal(x, last(cyclegan.sample(model, 3, seeded(4), direction=direction)))


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped CycleGAN checkpoint")
def test_shipped_checkpoint_translates_b_to_a_keeping_the_digit():
    """Quality: B→A translations of held-out textured digits are read right by the MNIST classifier
    far more often than chance, and the round trip is close to the original."""
    model, config, _ = checkpoint.load(SHIPPED)
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    m = card["metrics"]
    assert m["b_to_a_digit_accuracy"] > 0.5
    a, b, _ = cyclegan.domains("mnist", "test", 2_000)
    p = cyclegan.six_panel(model, a[:200], b[:200])
    assert float((p["a_reconstructed"] - p["a"]).abs().mean()) < 0.1
    # translated A looks textured: its border is no longer black
    assert float(p["a_to_b"][:, :, :4].mean()) > 0.1 > float(p["a"][:, :, :4].mean())


def test_describe_and_card_lines_speak_the_familys_terms():
    cfg = cyclegan.FAMILY.summary(vars(cyclegan.FAMILY.config("identity_off")))
    assert cfg == "loss weights: validation 1, reconstruction 10, identity 0"
    metrics = {"reconstruction_a": 0.05, "reconstruction_b": 0.08, "identity_a": 0.1, "identity_b": 0.12,
               "b_to_a_digit_accuracy": 0.87, "textured_input_accuracy": 0.4}
    (line,) = cyclegan.FAMILY.metric_lines(metrics)
    assert "cycle error (mean |x − x̂|) A 0.050, B 0.080" in line and "**87%** of B→A" in line and "(40% of" in line
    assert cyclegan.FAMILY.metric_lines({"other": 1.0}) == ["Held-out: other **1**"]  # an older card: generic


@pytest.mark.skipif(not SHIPPED.with_name("cyclegan_mnist_identity_off.safetensors").exists(),
                    reason="no shipped identity_off checkpoint")
def test_shipped_identity_off_ablation_shows_the_colour_shift():
    """The book's lesson (Foster ch. 5, Fig. 5-9): without the identity loss a generator fed an image
    of its own domain changes it, B's photo background most of all; with the loss it is left nearly alone."""
    off_path = SHIPPED.with_name("cyclegan_mnist_identity_off.safetensors")
    off, _, _ = checkpoint.load(off_path)
    on, _, _ = checkpoint.load(SHIPPED)
    a, b, _ = cyclegan.domains("mnist", "test", 2_000)
    change = {}
    for name, model in (("off", off), ("on", on)):
        p = cyclegan.six_panel(model, a[:100], b[:100])
        change[name] = float((p["b_identity"] - p["b"]).abs().mean())
    assert change["off"] > 2 * change["on"], change
    card = json.loads(off_path.with_suffix(".json").read_text())
    assert card["config"]["lambda_id"] == 0.0 and "Fig. 5-9" in card["note"]
