"""The 2-D GAN Lab: toy data, the three losses, one-sided steps, the views, the KL/JS estimate, and
that a small GAN really learns the ring on a CPU in a few hundred steps."""
import math

import pytest
import torch

from models.image import gan2d


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is much faster than two on a busy machine. (Tests may choose this;
    the studio may not, since the setting is the whole process's.)"""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("dataset", ["ring", "grid", "moons"])
def test_toy_data_is_seeded_and_on_the_plane(dataset):
    a = gan2d.real_points(dataset, 500, torch.Generator().manual_seed(0))
    b = gan2d.real_points(dataset, 500, torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert a.abs().max() < gan2d.EXTENT


def test_ring_points_lie_on_the_circle():
    r = gan2d.real_points("ring", 2000, torch.Generator().manual_seed(0)).norm(dim=1)
    assert r.mean().item() == pytest.approx(1.2, abs=0.02) and r.std() < 0.1


def test_drawn_distribution_needs_enough_points():
    with pytest.raises(ValueError, match="at least 8 points.*you have 3"):
        gan2d.make_lab(dataset="drawn", points=[[0, 0], [1, 1], [0.5, 0.2]])
    with pytest.raises(ValueError, match="at least 8 points.*you have 0"):
        gan2d.make_lab(dataset="drawn")
    with pytest.raises(ValueError, match="inside"):
        gan2d.make_lab(dataset="drawn", points=[[5.0, 0.0]] * 8)
    lab = gan2d.make_lab(dataset="drawn", points=[[0.1 * i, -0.1 * i] for i in range(8)])
    row = gan2d.train_step(lab)
    assert math.isfinite(row["kl"])


@pytest.mark.parametrize("overrides, words", [
    ({"dataset": "spiral"}, "Unknown 2-D dataset"),
    ({"loss": "hinge"}, "Loss must be one of"),
    ({"lr_d": 0.0}, "learning rate"),
    ({"hidden": 1}, "hidden neurons"),
    ({"seed": -1}, "Seed"),
])
def test_bad_settings_are_refused(overrides, words):
    with pytest.raises(ValueError, match=words):
        gan2d.make_lab(**overrides)


def test_a_lab_draws_only_from_its_own_generator():
    """Building and training a lab neither uses nor changes the global RNG: the lab's generator (from
    its seed, or the one passed in) initialises the networks and draws every batch."""
    before = torch.random.get_rng_state()
    a = gan2d.make_lab(seed=3)
    gan2d.run(a, 3)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(99)  # whatever the global RNG holds, the same seed gives the same lab
    b = gan2d.make_lab(seed=3)
    gan2d.run(b, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.G.parameters(), b.G.parameters()))
    c = gan2d.make_lab(seed=3, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(gan2d.make_lab(seed=3).D.parameters(), c.D.parameters()))
    d = gan2d.make_lab(seed=3, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(next(c.D.parameters()), next(d.D.parameters())) and d.generator is not c.generator


def test_default_initialisation_matches_pytorchs_linear():
    lab = gan2d.make_lab(hidden=64, layers=2)
    first, last = lab.G[0], lab.G[-1]
    assert first.weight.abs().max() <= 1 / 2 ** 0.5 and last.weight.abs().max() <= 1 / 8  # U(±1/√fan_in)
    assert first.weight.std() > 0.3 and first.weight.device.type == "cpu"


def test_run_stops_early_when_cancelled():
    import threading

    lab, cancel = gan2d.make_lab(), threading.Event()
    gan2d.run(lab, 2, cancel=cancel)
    cancel.set()
    assert gan2d.run(lab, 50, cancel=cancel) == {} and lab.step == 2


def test_a_long_run_keeps_a_bounded_history(monkeypatch):
    monkeypatch.setattr(gan2d, "MAX_HISTORY", 40)
    lab = gan2d.make_lab(batch_size=8, hidden=4, layers=1)
    gan2d.run(lab, 300)
    steps = [h["step"] for h in lab.history]
    assert len(steps) <= 40 and steps == sorted(steps) and steps[-1] == 300
    assert steps[-10:] == list(range(291, 301))  # recent steps all kept, older ones thinned
    assert sum("kl" in h for h in lab.history) >= 3  # the divergence curve keeps points too


def test_same_seed_same_run():
    a, b = gan2d.make_lab(seed=3), gan2d.make_lab(seed=3)
    assert gan2d.run(a, 5) == gan2d.run(b, 5)
    assert not torch.equal(gan2d.samples(a)[1], gan2d.samples(gan2d.make_lab(seed=4))[1])


@pytest.mark.parametrize("loss", gan2d.LOSSES)
def test_each_loss_steps_and_train_only_one_network(loss):
    lab = gan2d.make_lab(loss=loss)
    g_before = [p.clone() for p in lab.G.parameters()]
    d_before = [p.clone() for p in lab.D.parameters()]
    row = gan2d.train_step(lab, train_d=True, train_g=False)
    assert row["trained"] == "D" and math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])
    assert all(torch.equal(a, b) for a, b in zip(g_before, lab.G.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d_before, lab.D.parameters()))
    d_now = [p.clone() for p in lab.D.parameters()]
    gan2d.train_step(lab, train_d=False, train_g=True)
    assert all(torch.equal(a, b) for a, b in zip(d_now, lab.D.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, lab.G.parameters()))
    with pytest.raises(ValueError, match="Train D, G or both"):
        gan2d.train_step(lab, False, False)


def test_views_have_the_promised_shapes():
    lab = gan2d.make_lab()
    heat = gan2d.d_heatmap(lab, 32)
    assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1  # P(real) for the log loss
    grid = gan2d.noise_grid(lab, lines=7, points_per_line=20)
    assert grid.shape == (14, 20, 2)
    fake, push = gan2d.fake_gradients(lab, 30)
    assert fake.shape == push.shape == (30, 2) and push.abs().sum() > 0
    assert all(p.grad is None or p.requires_grad for p in lab.D.parameters())


def test_kl_js_are_zero_for_the_same_points_and_large_for_disjoint_ones():
    g = torch.Generator().manual_seed(0)
    ring = gan2d.real_points("ring", 4000, g)
    same = gan2d.kl_js(ring, ring)
    assert same["kl"] == pytest.approx(0, abs=1e-9) and same["js"] == pytest.approx(0, abs=1e-9)
    far = gan2d.kl_js(ring, torch.zeros(4000, 2) + 0.01)
    assert far["kl"] > 5 and far["js"] == pytest.approx(math.log(2), abs=0.01)  # JS is at most log 2
    gone = gan2d.kl_js(ring, torch.full((100, 2), 50.0))  # fakes off the plane: still finite, still bad
    assert math.isfinite(gone["kl"]) and gone["kl"] > 5


def test_switching_loss_and_learning_rate_is_marked():
    lab = gan2d.make_lab()
    gan2d.run(lab, 3)
    gan2d.set_loss(lab, "least-squares")
    gan2d.set_learning_rates(lab, 1e-3, 2e-3)
    assert lab.marks == [(3, "least-squares"), (3, "lr D 0.001, G 0.002")]
    assert lab.opt_g.param_groups[0]["lr"] == 2e-3
    with pytest.raises(ValueError, match="Loss must be one of"):
        gan2d.set_loss(lab, "nope")


def test_the_ring_is_learned_in_a_few_hundred_cpu_steps():
    """From fakes bunched in a corner (KL about 9 nats), 400 steps bring the fakes onto the ring: the
    binned KL(real ‖ fake) falls below 1.5 nats (a GAN oscillates, so the best of the last 100 steps)."""
    lab = gan2d.make_lab(dataset="ring", loss="log", seed=0)
    start = gan2d.divergences(lab)["kl"]
    gan2d.run(lab, 400)
    late = [h["kl"] for h in lab.history[-100:] if "kl" in h]
    assert start > 5
    assert min(late) < 1.5, late
