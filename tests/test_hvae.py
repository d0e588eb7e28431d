"""The hierarchical VAE: its ELBO terms, the IWAE bound, level resampling, seeded samples, and the
shipped pair's bar (two levels beat one at the same latent size; an untrained model fails)."""
import math

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.image import hvae

FAMILY = FAMILIES["hvae"]


def tiny(**overrides):
    torch.manual_seed(0)
    return FAMILY.build(FAMILY.config("tiny", **overrides)).eval()


def binary(n=6, seed=0):
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(seed))


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu_q, lv_q, mu_p, lv_p = torch.tensor([[0.5, -1.0]]), torch.tensor([[-0.5, 0.3]]), torch.tensor([[0.1, 0.2]]), \
        torch.tensor([[0.2, -0.4]])
    z = mu_q + torch.exp(0.5 * lv_q) * torch.randn(200_000, 2, generator=g)
    mc = (hvae.gaussian_logpdf(z, mu_q, lv_q) - hvae.gaussian_logpdf(z, mu_p, lv_p)).mean()
    assert hvae.gaussian_kl(mu_q, lv_q, mu_p, lv_p).item() == pytest.approx(mc.item(), abs=0.01)


@pytest.mark.parametrize("preset", ["tiny", "one_level"])
def test_train_step_is_finite_and_the_bound_is_the_sum_of_its_terms(preset):
    config = FAMILY.config(preset, hidden=16, batch_size=8)
    torch.manual_seed(0)
    model = FAMILY.build(config)
    out = FAMILY.train_step(model, (binary(8), torch.zeros(8)), config)
    assert torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx((out["reconstruction"] + out["kl_bottom"] + out["kl_top"]).item())
    if preset == "one_level":
        assert out["kl_top"].item() == 0.0
    out["loss"].backward()


def test_iwae_bound_is_tighter_than_the_elbo_and_k1_is_the_elbo():
    model, x = tiny(), binary(20)
    elbo = hvae.log_likelihood(model, x)
    terms = hvae.elbo_terms(model, x, torch.Generator().manual_seed(0))
    assert torch.allclose(elbo, -(terms["reconstruction"] + terms["kl_bottom"] + terms["kl_top"]), atol=5.0)
    assert hvae.log_likelihood(model, x, k=20).mean() >= elbo.mean()


def test_log_likelihood_refuses_grey_or_misshapen_images():
    with pytest.raises(ValueError, match="binarised"):
        hvae.log_likelihood(tiny(), torch.full((2, 1, 28, 28), 0.5))
    with pytest.raises(ValueError, match="28"):
        hvae.log_likelihood(tiny(), torch.zeros(2, 784))


def test_resampling_holds_the_other_level_and_replays_from_a_seed():
    model = tiny()
    torch.nn.init.normal_(model.p_bottom[2].weight, std=1.0)  # a prior that depends on z₂
    a = hvae.resample_level(model, "top", 2, 3, seeded(4))
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, hvae.resample_level(model, "top", 2, 3, seeded(4)))
    z2, eps1 = torch.randn(1, 2), torch.randn(1, 2)
    held = hvae.decode_levels(model, z2.repeat(3, 1), eps1.repeat(3, 1))
    assert torch.allclose(held[0], held[2], atol=1e-6)  # holding both levels gives the same image
    for bad in (dict(level="middle"), dict(level="top", rows=0)):
        with pytest.raises(ValueError):
            hvae.resample_level(model, bad["level"], bad.get("rows", 2), 3, seeded(0))
    with pytest.raises(ValueError, match="one-level"):
        hvae.resample_level(tiny(top_dim=0), "top", 2, 2, seeded(0))


def test_samples_are_seeded_probabilities():
    model = tiny()
    a = last(FAMILY.sample(model, 4, generator=seeded(1), temperature=0.8))
    assert a.shape == (4, 1, 28, 28) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, last(FAMILY.sample(model, 4, generator=seeded(1), temperature=0.8)))


def test_shipped_two_levels_beat_one_level_at_the_same_latent_size_and_untrained_fails():
    (x, _), info = FAMILY.examples(FAMILY.config("cpu"), "test")
    x = x[:1000]
    scores = {}
    for name in ("hvae_mnist", "hvae_mnist_one_level"):
        model, config, _ = checkpoint.load(SHIPPED / f"{name}.safetensors")
        scores[name] = (-hvae.log_likelihood(model, x).mean().item(), config.top_dim + config.bottom_dim)
    (two, size2), (one, size1) = scores["hvae_mnist"], scores["hvae_mnist_one_level"]
    assert size2 == size1 == 16
    assert two < one, scores
    untrained = -hvae.log_likelihood(FAMILY.build(FAMILY.config("cpu")).eval(), x).mean().item()
    assert untrained > one + 100
    assert info["binarisation"] == "stochastic"
