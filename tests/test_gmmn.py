"""GMMN: the MMD estimate (0 for identical samples, its spread shrinking with the batch), the two phases
of GMMN+AE, the 2-D lab, and the shipped checkpoint against the bar."""
import pytest
import torch

from models.core import checkpoint, evaluate
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.image import gmmn

SHIPPED_GMMN = SHIPPED / "gmmn_mnist.safetensors"
BW = (0.5, 1.0, 2.0)


def test_mmd_of_identical_samples_is_about_zero():
    g = seeded(0)
    x = torch.randn(200, 5, generator=g)
    assert abs(float(gmmn.mmd2(x, x, BW))) < 1e-5
    y = torch.randn(200, 5, generator=g)  # same distribution, other draws: the unbiased estimate ≈ 0
    assert abs(float(gmmn.mmd2(x, y, BW, unbiased=True))) < 0.02
    assert float(gmmn.mmd2(x, y + 1.5, BW, unbiased=True)) > 0.3


def test_the_estimates_spread_shrinks_as_the_batch_grows():
    g = seeded(1)
    pool_a, pool_b = torch.randn(2048, 2, generator=g), torch.randn(2048, 2, generator=g)
    rows = gmmn.estimate_spread(pool_a, pool_b, BW, [16, 256], repeats=20, generator=g)
    assert rows[1]["std"] < rows[0]["std"] / 3


def test_bandwidths_are_checked():
    for bad in ((), (0.0,), (float("nan"),), ("x",), tuple(range(1, 20))):
        with pytest.raises(ValueError, match="Bandwidths"):
            gmmn.check_bandwidths(bad)
    with pytest.raises(ValueError, match="ae_steps"):
        gmmn.FAMILY.config("tiny", ae_steps=5, steps=5)


def test_gmmn_ae_trains_the_autoencoder_first_then_g():
    config = gmmn.FAMILY.config("tiny", ae_steps=1, steps=3)
    torch.manual_seed(0)
    model = gmmn.build(config)
    x = torch.rand(8, 1, 28, 28)
    first, second = gmmn.train_step(model, (x, None), config), gmmn.train_step(model, (x, None), config)
    assert "reconstruction" in first and "mmd2" in second
    second["loss"].backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    assert any(p.grad is not None for p in model.G.parameters())


def test_the_2d_lab_learns_the_toy_distribution():
    lab = gmmn.make_lab2d("grid", batch_size=128, seed=0)
    g = seeded(3)
    with torch.no_grad():
        before = float(gmmn.mmd2(gmmn.lab_real(lab, 500, g), gmmn.lab_fake(lab, 500, g), lab.bandwidths, True))
    gmmn.train2d(lab, 150)
    with torch.no_grad():
        after = float(gmmn.mmd2(gmmn.lab_real(lab, 500, g), gmmn.lab_fake(lab, 500, g), lab.bandwidths, True))
    assert after < before / 3
    with pytest.raises(ValueError, match="Unknown 2-D dataset"):
        gmmn.make_lab2d("spiral")


@pytest.mark.skipif(not SHIPPED_GMMN.exists(), reason="gmmn_mnist not shipped")
def test_shipped_checkpoint_meets_the_bar_and_an_untrained_model_fails():
    model, config, _ = checkpoint.load(SHIPPED_GMMN)
    s = evaluate.score(last(gmmn.sample(model.eval(), 1000, seeded(0))), "mnist")
    assert s["confidence"] >= 0.8 and s["class_coverage"] >= 0.8, s
    torch.manual_seed(0)
    u = evaluate.score(last(gmmn.sample(gmmn.build(config).eval(), 1000, seeded(0))), "mnist")
    assert not (u["confidence"] >= 0.8 and u["class_coverage"] >= 0.8), u
