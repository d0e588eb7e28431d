"""The deep EBM: Langevin dynamics (descent at zero noise, chains into known 2-D minima, a blow-up
refused), the replay buffer, the book's settings, and the shipped checkpoint against the bar."""
import pytest
import torch

from models.core import checkpoint, evaluate
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.energy import ebm, toy2d

SHIPPED_EBM = SHIPPED / "ebm_mnist.safetensors"


@pytest.fixture(scope="module")
def tiny():
    config = ebm.FAMILY.config("tiny")
    torch.manual_seed(0)
    return ebm.build(config).eval(), config


def test_book_preset_has_the_books_settings():
    c = ebm.FAMILY.config("book")
    assert c.channels == (16, 32, 64, 64) and c.dense == 64
    assert (c.langevin_steps, c.step_size, c.noise, c.grad_clip) == (60, 10.0, 0.005, 0.03)
    assert (c.buffer_size, c.fresh, c.alpha, c.lr, c.batch_size) == (8192, 0.05, 0.1, 1e-4, 128)


def test_chain_takes_every_step_it_is_asked_for(tiny):
    """The book's sampler returns inside its loop (one step); this one runs all of them."""
    model, _ = tiny
    snaps = list(ebm.chain(model, 3, seeded(0), steps=60, every=1))
    assert [s.step for s in snaps] == list(range(61))
    assert not torch.equal(snaps[1].x, snaps[-1].x)


def test_zero_noise_langevin_lowers_the_energy_monotonically(tiny):
    model, _ = tiny
    x = ebm.uniform(4, seeded(1))
    snaps = list(ebm.langevin(model, x, 40, step_size=0.05, noise=0.0, grad_clip=0.0, bounds=None))
    e = torch.stack([s.energy for s in snaps])  # (steps + 1, chains)
    assert (e[1:] <= e[:-1] + 1e-6).all()
    assert (e[-1] < e[0]).all()


@pytest.mark.parametrize("name", list(toy2d.ENERGIES))
def test_chains_on_a_2d_energy_end_near_its_known_minima(name):
    snaps = toy2d.chains(name, 30, 400, step_size=0.02, noise=0.0, generator=seeded(0))
    assert toy2d.distance_to_minimum(name, snaps[-1].x).max() < 0.05
    assert toy2d.distance_to_minimum(name, snaps[0].x).median() > 0.1
    # with Langevin noise σ = √(2η) the chains sample exp(−E): they stay near the minima, not on them
    noisy = toy2d.chains(name, 30, 400, 0.01, toy2d.langevin_noise(0.01), seeded(0))
    assert toy2d.distance_to_minimum(name, noisy[-1].x).median() < 0.5


def test_a_step_size_that_blows_up_stops_the_chain_with_a_message(tiny):
    with pytest.raises(ValueError, match="blew up at step .*lower it"):
        toy2d.chains("double well", 10, 100, step_size=0.5, noise=0.0, generator=seeded(0))
    model, _ = tiny
    with pytest.raises(ValueError, match="blew up|between"):
        last(ebm.chain(model, 2, seeded(0), steps=50, step_size=1e4, grad_clip=0.0, clip=False))


def test_bad_chain_controls_are_refused(tiny):
    model, _ = tiny
    for kwargs, words in (({"steps": -1}, "between"), ({"step_size": float("nan")}, "must be a number"),
                          ({"start": "moon"}, "Unknown start"), ({"start": "image"}, "needs an image")):
        with pytest.raises(ValueError, match=words):
            last(ebm.sample(model, 2, seeded(0), **kwargs))


def test_training_refreshes_the_replay_buffer_oldest_first(tiny):
    model, config = ebm.build(ebm.FAMILY.config("tiny")), ebm.FAMILY.config("tiny")
    x = torch.rand(config.batch_size, 1, 28, 28)
    before = model.replay.clone()
    out = ebm.train_step(model, (x, None), config)
    assert torch.isfinite(out["loss"]) and {"cd", "reg", "energy_real", "energy_fake", "contrast_vs_noise"} <= set(out)
    changed = (model.replay != before).flatten(1).any(1)
    assert changed[:config.batch_size].all() and not changed[config.batch_size:].any()
    assert int(model.filled) == config.batch_size


def test_images_pad_to_32_and_crop_back():
    x = torch.rand(3, 1, 28, 28)
    m = ebm.to_model(x)
    assert m.shape == (3, 1, 32, 32) and m[..., :2, :].eq(-1).all()
    assert torch.allclose(ebm.to_images(m), x, atol=1e-6)


@pytest.fixture(scope="module")
def shipped_scores():
    """Scores of what the page opens with (buffered chains run 60 more steps, the card's sampler) for the
    shipped model and for an untrained one of the same settings."""
    if not SHIPPED_EBM.exists():
        pytest.skip("ebm_mnist not shipped")
    model, config, _ = checkpoint.load(SHIPPED_EBM)
    kwargs = ebm.FAMILY.score_kwargs
    s = evaluate.score(last(ebm.sample(model.eval(), 200, seeded(0), **kwargs)), "mnist")
    torch.manual_seed(0)
    u = evaluate.score(last(ebm.sample(ebm.build(config).eval(), 200, seeded(0), **kwargs)), "mnist")
    contrast = ebm.evaluate(model, *ebm.FAMILY.examples(config, "test")[0], n=200)["contrast_vs_noise"]
    return s, u, contrast


def passes(s: dict) -> bool:
    return s["confidence"] >= 0.8 and s["class_coverage"] >= 0.8


def test_shipped_checkpoint_meets_the_bar(shipped_scores):
    s, _, _ = shipped_scores
    assert passes(s), s


def test_shipped_checkpoint_clearly_beats_an_untrained_model(shipped_scores):
    s, u, contrast = shipped_scores
    assert not passes(u), u
    assert s["confidence"] >= 0.7 and s["class_coverage"] >= 0.5, s
    assert s["class_coverage"] >= u["class_coverage"] + 0.3, (s, u)
    assert contrast > 0  # held-out digits have lower energy than uniform noise
