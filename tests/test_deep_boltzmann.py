"""DBN and DBM: greedy layer-wise training, adding a layer, the pre-training correction (doubled inputs,
halved middle weights), mean field converging, odd/even Gibbs sampling of a tiny DBM against its exact
distribution, impossible layer sizes, and the shipped checkpoints."""
import json
import math

import pytest
import torch

from models.core import ASSETS, checkpoint
from models.core.family import last, seeded
from models.energy import deep_boltzmann as deep


def binary(n=8, p=0.3, seed=0):
    return torch.bernoulli(torch.full((n, 1, 28, 28), p), generator=seeded(seed))


def train(family, cfg, steps):
    model = family.build(cfg)
    opts = family.optimizers(model, cfg)
    outs = [family.train_step(model, (binary(seed=s), torch.zeros(8)), cfg, opts) for s in range(steps)]
    return model, outs


def test_dbn_trains_one_layer_at_a_time_bottom_first():
    cfg = deep.DBN_FAMILY.config("tiny", steps=4)  # two layers, two steps each
    model = deep.DBN_FAMILY.build(cfg)
    opts = deep.DBN_FAMILY.optimizers(model, cfg)
    layers, bottom = [], []
    for s in range(4):
        layers.append(int(deep.DBN_FAMILY.train_step(model, (binary(seed=s), None), cfg, opts)["layer"]))
        bottom.append(model.rbms[0].W.detach().clone())
    assert layers == [1, 1, 2, 2]
    assert torch.equal(bottom[1], bottom[2]) and torch.equal(bottom[2], bottom[3])  # frozen once the top trains


def test_add_layer_keeps_the_layers_below_and_trains_only_the_new_top():
    model, _ = train(deep.DBN_FAMILY, deep.DBN_FAMILY.config("tiny", steps=2), 2)
    grown = deep.add_layer(model, 5, chains=4)
    assert grown.sizes == [784, 8, 6, 5]
    assert torch.equal(grown.rbms[0].W, model.rbms[0].W)
    before = [r.W.detach().clone() for r in grown.rbms]
    cfg = deep.DBNConfig(layers=grown.sizes[1:], method="pcd", batch_size=4, steps=3)
    reports = list(deep.train_layer(grown, binary(16), 3, cfg, seeded(0), every=1))
    assert [s for s, _ in reports] == [1, 2, 3] and all(math.isfinite(m["recon_error"]) for _, m in reports)
    assert torch.equal(before[0], grown.rbms[0].W) and torch.equal(before[1], grown.rbms[1].W)
    assert not torch.equal(before[2], grown.rbms[2].W)
    six = deep.DBN([784] + [4] * 6, 0)
    with pytest.raises(ValueError, match="already has 6 hidden layers"):
        deep.add_layer(six, 4)


@pytest.mark.parametrize("layers, message", [
    ([], "needs 1 to 6 hidden layers; got 0"),
    ([4] * 7, "needs 1 to 6 hidden layers; got 7"),
    ([500, 0], "hidden layer 2 size must be between 1 and 10000; got 0"),
    ([500, -3], "hidden layer 2 size must be between 1 and 10000; got -3"),
    ([2.5], "hidden layer 1 size must be a whole number"),
    ("500", "Layers must be a list of hidden layer sizes"),
    ([20_000], "hidden layer 1 size must be between 1 and 10000"),
])
def test_impossible_layer_sizes_are_refused_clearly(layers, message):
    for family in (deep.DBN_FAMILY, deep.DBM_FAMILY):
        with pytest.raises(ValueError, match=message):
            family.config("tiny", layers=layers)


def test_dbm_steps_must_cover_the_pretraining():
    with pytest.raises(ValueError, match="must cover the pre-training: 2 layers × 5 = 10"):
        deep.DBM_FAMILY.config("tiny", pretrain_steps=5, steps=6)


def test_dbm_pretraining_doubles_the_outer_inputs_and_composition_halves_the_middle_weights():
    assert deep.pretrain_scales(1) == [(1.0, 1.0)]
    assert deep.pretrain_scales(3) == [(2.0, 1.0), (1.0, 1.0), (1.0, 2.0)]
    model = deep.DBM([784, 6, 5, 4], chains=3)
    before = [r.W.detach().clone() for r in model.rbms]
    deep.compose(model, torch.bernoulli(torch.full((5, 784), 0.3), generator=seeded(0)), seeded(0))
    assert torch.equal(model.rbms[0].W, before[0]) and torch.equal(model.rbms[2].W, before[2])
    assert torch.allclose(model.rbms[1].W, before[1] / 2)
    assert bool(model.composed) and all(((f == 0) | (f == 1)).all() for f in model.fantasy())


def test_dbm_training_switches_from_pretraining_to_joint_training():
    cfg = deep.DBM_FAMILY.config("tiny", pretrain_steps=1, steps=4)
    model, outs = train(deep.DBM_FAMILY, cfg, 4)
    assert [int(o["layer"]) for o in outs] == [1, 2, 0, 0] and bool(model.composed)
    assert all(math.isfinite(float(v)) for o in outs for v in o.values())


def test_mean_field_converges_to_a_fixed_point():
    torch.manual_seed(0)
    model = deep.DBM([784, 30, 20], chains=1)
    v = torch.bernoulli(torch.full((3, 784), 0.2), generator=seeded(0))
    states = deep.mean_field(model, v, 30)
    change = [max(float((b[l] - a[l]).abs().max()) for l in (1, 2)) for a, b in zip(states[:-1], states[1:])]
    assert len(states) == 31 and change[-1] < 1e-5 and change[-1] < change[0]
    fixed = [model.conditional(states[-1], l) for l in (1, 2)]
    assert torch.allclose(fixed[0], states[-1][1], atol=1e-4) and torch.allclose(fixed[1], states[-1][2], atol=1e-4)


def exact_dbm_p_v(model) -> torch.Tensor:
    sizes = model.sizes
    grids = torch.meshgrid(*[torch.arange(2 ** n) for n in sizes], indexing="ij")
    codes = [g.reshape(-1) for g in grids]
    x = [((c[:, None] >> torch.arange(n)) & 1).float() for c, n in zip(codes, sizes)]
    with torch.no_grad():
        log_p = -model.energy(x).double()
    p = torch.softmax(log_p, 0)
    return torch.zeros(2 ** sizes[0], dtype=torch.float64).index_add_(0, codes[0], p)


def test_odd_even_gibbs_sampling_of_a_tiny_dbm_matches_its_exact_distribution():
    model = deep.DBM([3, 2, 2], chains=1)
    g = seeded(1)
    with torch.no_grad():
        for r in model.rbms:
            r.W.copy_(torch.randn(r.W.shape, generator=g) * 1.5)
            r.b.zero_()
            r.c.copy_(torch.randn(r.c.shape, generator=g) * 0.5)
        model.rbms[0].b.copy_(torch.randn(3, generator=g) * 0.5)
    exact = exact_dbm_p_v(model)
    x = deep.start_states(model, 20_000, g)
    with torch.no_grad():
        for _ in range(40):
            x = deep.gibbs_sweep(model, x, g)
    codes = (x[0] * (2 ** torch.arange(3))).sum(1).long()
    empirical = torch.bincount(codes, minlength=8).double() / len(codes)
    assert 0.5 * (empirical - exact).abs().sum() < 0.03


@pytest.mark.parametrize("family", [deep.DBN_FAMILY, deep.DBM_FAMILY])
def test_samples_are_images_and_reproducible(family):
    model = family.build(family.config("tiny"))
    a = last(family.sample(model, 3, generator=seeded(2), sweeps=4, every=2))
    b = last(family.sample(model, 3, generator=seeded(2), sweeps=4, every=2))
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="Gibbs sweeps must be between 1 and 100000"):
        list(family.sample(model, 3, sweeps=0))


def test_sampling_cost_counts_the_top_rbm_for_a_dbn_and_every_layer_for_a_dbm():
    dbn, dbm = deep.DBN([784, 10, 6], 0), deep.DBM([784, 10, 6], 1)
    assert deep.sweep_cost(dbn, "dbn") == 2 * 10 * 6
    assert deep.sweep_cost(dbm, "dbm") == 2 * (784 * 10 + 10 * 6)


@pytest.mark.parametrize("name", ["dbn_mnist", "dbm_mnist"])
def test_shipped_checkpoints_load_sample_and_beat_noise_on_their_cards(name):
    path = ASSETS / "checkpoints" / f"{name}.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    model, config, _ = checkpoint.load(path)
    assert config.layers == [500, 500]
    family = deep.DBN_FAMILY if name == "dbn_mnist" else deep.DBM_FAMILY
    x = last(family.sample(model, 4, generator=seeded(0), sweeps=20, every=20))
    assert x.shape == (4, 1, 28, 28)
    scores, rows = card["metrics"]["sample_scores"], card["metrics"]["calibration"]
    noise = next(v for k, v in rows.items() if "noise" in k)
    assert scores["frechet_distance"] < noise["frechet_distance"] / 5 and scores["class_coverage"] >= 0.5
