"""World Models: rollouts, V, M and C, and the shipped checkpoints' figures against their bars.

Tests that drive the real environment are skipped when gymnasium/box2d are not installed (the
optional dependencies); the tab's degradation without them is in test_studio_world.py.
"""
import json

import numpy as np
import pytest
import torch

from models.core.family import seeded
from models.world import SHIPPED, load, save
from models.world import controller as C
from models.world import env as E
from models.world import memory as M
from models.world import vision as V

needs_env = pytest.mark.skipif(bool(E.missing()), reason="gymnasium/box2d not installed")


def card(name):
    return json.loads((SHIPPED / f"{name}.json").read_text())


@needs_env
def test_rollout_has_frames_and_actions_of_the_right_shapes():
    r = E.rollout(E.RandomPolicy(np.random.default_rng(0)), 0, 20)
    assert r.frames.shape == (20, 64, 64, 3) and r.frames.dtype == np.uint8
    assert r.actions.shape == (20, 3) and r.rewards.shape == (20,)
    assert (r.actions[:, 0] >= -1).all() and (r.actions[:, 1:] >= 0).all()


@needs_env
def test_culled_rendering_gives_gymnasium_s_own_pixels():
    import gymnasium as gym

    plain, fast = gym.make(E.ENV_ID, render_mode="rgb_array"), E.make()
    a, _ = plain.reset(seed=3)
    b, _ = fast.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(60):  # past the first second's zoom-in
        act = np.array([rng.uniform(-1, 1), rng.uniform(0, 1), 0], np.float32)
        a, *_ = plain.step(act)
        b, *_ = fast.step(act)
    assert np.array_equal(a, b)
    plain.close(), fast.close()


def test_actions_out_of_range_are_refused():
    with pytest.raises(ValueError, match="steer must be between -1 and 1"):
        E.check_action([2, 0, 0])
    with pytest.raises(ValueError, match="three finite numbers"):
        E.check_action([0, float("nan"), 0])


def test_vision_round_trip_on_shipped_frames():
    vis, cfg, _ = load(SHIPPED / "world_vision.safetensors", "vision")
    assert cfg.latent_dim == 32
    with np.load("assets/world/start_frames.npz") as f:
        x = E.to_tensor(f["frames"])
    mu, sigma = V.encode(vis, x)
    assert mu.shape == (8, 32) and (sigma > 0).all()
    err = (V.decode(vis, mu) - x).pow(2).mean().item()
    assert err < 0.01, err  # a road-and-grass picture, not noise (0.01 would be a grey blur)
    assert card("world_vision")["metrics"]["mse"] < 0.005


def test_tiny_vision_trains_and_survives_save_load(tmp_path):
    cfg = V.VisionConfig(**V.PRESETS["tiny"])
    torch.manual_seed(0)
    vis = V.build(cfg)
    x = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    curve = V.train(vis, x, cfg, seeded(0))
    assert curve and all(np.isfinite(curve))
    save(tmp_path / "v.safetensors", "vision", vis, cfg)
    again, _, _ = load(tmp_path / "v.safetensors", "vision")
    z = torch.randn(3, cfg.latent_dim, generator=seeded(1))
    assert torch.equal(V.decode(vis, z), V.decode(again, z))
    with pytest.raises(ValueError, match="not a World Models memory"):
        load(tmp_path / "v.safetensors", "memory")


def test_memory_beats_the_single_gaussian_baseline():
    m = card("world_memory")["metrics"]
    assert m["nll"] < m["gaussian_nll"] - 0.05, m


def test_tiny_memory_loss_is_finite_and_windows_stay_in_episodes():
    cfg = M.MemoryConfig(**M.PRESETS["tiny"])
    mem = M.build(cfg)
    out = M.loss(mem, torch.randn(2, 8, cfg.latent_dim), torch.rand(2, 8, 3))
    assert torch.isfinite(out["loss"])
    starts = M.window_starts(torch.tensor([0] * 10 + [1] * 5), 8)
    assert starts.tolist() == [0]  # the second episode is shorter than a window


def test_a_seed_reproduces_a_dream_bit_for_bit():
    mem, _, _ = load(SHIPPED / "world_memory.safetensors", "memory")
    z0 = torch.randn(32, generator=seeded(5))
    actions = np.tile(np.array([0.1, 0.3, 0.0], np.float32), (12, 1))

    def run(seed, tau=1.0):
        return torch.stack([s.z for s in M.dream(mem, z0, actions, tau, seeded(seed))])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert run(0, 0.05).std() < run(0, 2.5).std() + 1.0  # both run; a cold dream is no wilder
    with pytest.raises(ValueError, match="temperature must be between"):
        next(M.dream(mem, z0, actions, 9.0, seeded(0)))


def test_controller_fit_recovers_a_linear_teacher():
    cfg = C.ControllerConfig(latent_dim=4, use_h=False)
    c = C.build(cfg)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    true = np.concatenate([rng.normal(size=12) * 0.3, [0.0, 0.2, -0.5]])
    teacher = C.set_vector(C.build(cfg), true)
    A = np.stack([teacher(x).numpy() for x in X])
    C.fit_actions(c, X, A, ridge=1e-3)
    assert np.abs(np.stack([c(x).numpy() for x in X])[:, :2] - A[:, :2]).max() < 0.05
    with pytest.raises(ValueError, match="population must be between"):
        C.ControllerConfig(population=1).validate()


def test_controller_clearly_beats_random_on_the_fixed_tracks():
    m = card("world_controller")["metrics"]
    assert m["tracks"] == list(E.EVAL_SEEDS) and len(m["scores"]) == 10
    assert m["random_mean"] < 0
    assert m["mean_score"] > m["random_mean"] + 150 and m["mean_score"] > m["full_gas_mean"] + 150
    assert m["mean_score"] >= 300  # the bar: a controller that clearly drives


@needs_env
def test_the_card_score_of_a_track_is_what_driving_it_again_gives():
    """The card is not a record of a lucky run: the first fixed track, driven again in full, scores the same."""
    vis, _, _ = load(SHIPPED / "world_vision.safetensors", "vision")
    ctl, _, _ = load(SHIPPED / "world_controller.safetensors", "controller")
    m = card("world_controller")["metrics"]
    again = E.scores(lambda s: C.Driver(ctl, vis), seeds=E.EVAL_SEEDS[:1])[0]
    assert again == pytest.approx(m["scores"][0], abs=1e-3)


@needs_env
def test_shipped_controller_collects_tiles_where_random_does_not():
    vis, _, _ = load(SHIPPED / "world_vision.safetensors", "vision")
    ctl, _, _ = load(SHIPPED / "world_controller.safetensors", "controller")
    env = E.make()
    driven = C.search_episode(C.Driver(ctl, vis), 1000, 150, 150, env)
    rand = E.rollout(E.uniform_random(np.random.default_rng(0)), 1000, 150, env=env).score
    env.close()
    assert driven > rand + 20, (driven, rand)
