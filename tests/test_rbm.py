"""The RBM and AIS: exact checks on tiny models (free energy, Gibbs sampling, log Z), training steps,
clamped fill-in, bad input, and the shipped checkpoint's AIS figure against the issue's bar."""
import json
import math

import pytest
import torch

from models.core.family import last, seeded
from models.energy import ais, rbm



def tiny(visible=5, hidden=3, scale=1.0, seed=0) -> rbm.RBM:
    g = torch.Generator().manual_seed(seed)
    m = rbm.RBM(visible, hidden)
    with torch.no_grad():
        m.W.copy_(torch.randn(visible, hidden, generator=g) * scale)
        m.b.copy_(torch.randn(visible, generator=g) * 0.5)
        m.c.copy_(torch.randn(hidden, generator=g) * 0.5)
    return m


def states(n: int) -> torch.Tensor:
    return ((torch.arange(2 ** n)[:, None] >> torch.arange(n)) & 1).float()


def exact_p_v(m: rbm.RBM) -> torch.Tensor:
    """p(v) over every visible configuration by summing exp(−E(v, h)) over every h."""
    vs, hs = states(m.visible), states(m.hidden)
    E = -(vs @ m.b)[:, None] - (hs @ m.c)[None] - vs @ m.W @ hs.T
    return torch.softmax(torch.logsumexp(-E.double(), 1), 0)


def test_free_energy_matches_the_brute_force_sum_over_hiddens():
    m = tiny()
    vs, hs = states(5), states(3)
    with torch.no_grad():
        E = torch.stack([m.energy(vs, h.expand(len(vs), -1)) for h in hs], 1)  # (V, H states)
        assert torch.allclose(-m.free_energy(vs), torch.logsumexp(-E, 1), atol=1e-5)


def test_exact_log_z_and_ais_agree_with_the_brute_force_partition_function():
    m = tiny(8, 4, scale=1.0)
    vs, hs = states(8), states(4)
    with torch.no_grad():
        minus_e = (vs @ m.b)[:, None] + (hs @ m.c)[None] + vs @ m.W @ hs.T  # −E(v, h) for every pair
        brute = torch.logsumexp(minus_e.flatten().double(), 0)
        assert ais.exact_log_partition(m.W, m.b, m.c) == pytest.approx(float(brute), abs=1e-6)
        r = ais.log_partition(m.W, m.b, m.c, runs=200, betas=500, generator=seeded(0))
    assert r.log_z == pytest.approx(float(brute), abs=0.05)
    assert r.low <= float(brute) + 0.05 and r.high >= float(brute) - 0.05 and r.low < r.log_z < r.high


def test_gibbs_sampling_of_a_tiny_rbm_matches_its_exact_distribution():
    m = tiny(4, 3, scale=1.5, seed=1)
    exact = exact_p_v(m)
    g = seeded(0)
    v = torch.bernoulli(torch.full((20_000, 4), 0.5), generator=g)
    step = last(rbm.chain(m, v, 30, g, every=30))
    codes = (step.v * (2 ** torch.arange(4))).sum(1).long()
    empirical = torch.bincount(codes, minlength=16).double() / len(codes)
    assert 0.5 * (empirical - exact).abs().sum() < 0.03  # total variation


def test_schedule_runs_from_zero_to_one_and_is_densest_near_one():
    s = ais.schedule(1450)
    assert len(s) == 1451 and s[0] == 0 and s[-1] == 1 and torch.all(s[1:] > s[:-1])
    assert (s > 0.9).sum() > (s < 0.5).sum() * 10


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_a_training_step_is_finite_and_moves_the_weights(method):
    cfg = rbm.FAMILY.config("tiny", method=method, k=2)
    m = rbm.FAMILY.build(cfg)
    opts = rbm.FAMILY.optimizers(m, cfg)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3), generator=seeded(0))
    before = m.W.detach().clone()
    out = rbm.FAMILY.train_step(m, (x, torch.zeros(8)), cfg, opts)
    assert all(math.isfinite(float(v)) for v in out.values()) and {"free_energy", "recon_error"} <= set(out)
    assert not torch.equal(before, m.W) and int(m.updates) == 1
    assert len(m.chains) == (cfg.chains if method == "pcd" else 0)


def test_fill_in_keeps_the_clamped_pixels_and_is_reproducible():
    m = tiny(784, 10, scale=0.1)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.4), generator=seeded(1))
    known = torch.zeros_like(x, dtype=torch.bool)
    known[..., :14, :] = True
    a = last(rbm.fill_in(m, x, known, sweeps=5, generator=seeded(3)))
    b = last(rbm.fill_in(m, x, known, sweeps=5, generator=seeded(3)))
    assert torch.equal(a.v, b.v)
    assert torch.equal(a.v.reshape(2, 28, 28)[:, :14], x[:, 0, :14])


def test_filters_are_images_in_the_unit_range():
    f = rbm.filters(tiny(784, 10, 0.1), 6)
    assert f.shape == (6, 1, 28, 28) and f.min() >= 0 and f.max() <= 1


@pytest.mark.parametrize("call, message", [
    (lambda: rbm.FAMILY.config("tiny", hidden=0), "hidden units must be between 1 and 10000"),
    (lambda: rbm.FAMILY.config("tiny", hidden=2.5), "hidden units must be a whole number"),
    (lambda: rbm.FAMILY.config("tiny", method="gibbs"), "Unknown method 'gibbs'"),
    (lambda: rbm.FAMILY.config("tiny", k=0), "Gibbs steps k must be between 1 and 1000"),
    (lambda: rbm.flat(torch.full((1, 784), 0.5)), "every value must be 0 or 1"),
    (lambda: rbm.flat(torch.zeros(1, 100)), "Expected images of 784 pixels"),
    (lambda: list(rbm.sample(tiny(784, 4), 2, sweeps=0)), "Gibbs sweeps must be between 1 and 100000"),
    (lambda: ais.log_partition(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2), runs=1), "AIS runs"),
    (lambda: ais.exact_log_partition(torch.zeros(30, 30), torch.zeros(30), torch.zeros(30)), "at most 2^20"),
])
def test_bad_settings_and_inputs_are_refused_clearly(call, message):
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        call()


def test_the_shipped_rbm_meets_the_bar_and_its_card_is_consistent():
    from models.core import ASSETS, checkpoint

    path = ASSETS / "checkpoints" / "rbm_mnist.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    m = card["metrics"]
    assert m["test_log_likelihood"] >= -110  # the bar (nats, AIS estimate)
    assert m["test_ll_low"] <= m["test_log_likelihood"] <= m["test_ll_high"]
    model, config, _ = checkpoint.load(path)
    x = rbm.data(config, "test")[0][0]
    with torch.no_grad():
        minus_f = float(-model.free_energy(rbm.flat(x)).double().mean())
    assert minus_f - m["log_z"] == pytest.approx(m["test_log_likelihood"], abs=1e-3)
    noise = next(v for k, v in m["calibration"].items() if "noise" in k)
    assert m["sample_scores"]["frechet_distance"] < noise["frechet_distance"] / 5
