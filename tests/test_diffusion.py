"""The diffusion family's maths: schedules, the forward process, DDIM determinism, branching that
replays the original run, guidance controls, and the shipped checkpoint's sample quality."""
from pathlib import Path

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.image import diffusion
from models.core import train as training
from models.core.family import last, seeded

FAM = FAMILIES["diffusion"]
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "diffusion_mnist_cond.safetensors"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FAM.build(FAM.config("tiny", T=20, conditional=True)).eval()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alpha_bar_falls_from_one_to_almost_zero(schedule):
    ab = diffusion.alpha_bars(schedule, 1000)
    assert ab.shape == (1000,)
    assert (ab[1:] < ab[:-1]).all()
    assert ab[0] > 0.99 and ab[-1] < 1e-3


def test_linear_schedule_matches_the_closed_form():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(diffusion.alpha_bars("linear", 1000).double(), torch.cumprod(1 - betas, 0), atol=1e-6)


def test_q_sample_keeps_unit_variance():
    """With x_0 of unit variance, x_t = √ᾱ x_0 + √(1-ᾱ) ε has unit variance at every t."""
    ab = diffusion.alpha_bars("linear", 1000)
    g = seeded(0)
    x0, noise = torch.randn(4000, 1, 28, 28, generator=g), torch.randn(4000, 1, 28, 28, generator=g)
    for t in (0, 300, 999):
        xt = diffusion.q_sample(ab, x0, torch.full((4000,), t), noise)
        assert xt.var().item() == pytest.approx(1.0, abs=0.02)


def test_forward_strip_is_the_closed_form_with_one_noise():
    """Every column of the strip is √ᾱ_t x_0 + √(1-ᾱ_t) ε with the same ε, in [0, 1]."""
    ab = diffusion.alpha_bars("linear", 1000)
    ts = diffusion.strip_timesteps(1000)
    assert ts == [0, 50, 100, 200, 300, 400, 500, 600, 800, 999]
    x0 = torch.rand(1, 1, 28, 28, generator=seeded(3))
    strip = diffusion.forward_strip(x0, ab, ts, seeded(0))
    assert strip.shape == (10, 1, 28, 28) and strip.min() >= 0 and strip.max() <= 1
    eps = torch.randn(1, 1, 28, 28, generator=seeded(0))
    for i, t in enumerate(ts):
        expected = ((ab[t].sqrt() * (2 * x0 - 1) + (1 - ab[t]).sqrt() * eps).clamp(-1, 1) + 1) / 2
        assert torch.allclose(strip[i], expected[0], atol=1e-6)
    assert (strip[0] - x0[0]).abs().mean() < 0.01  # t = 0 keeps almost all of the image
    with pytest.raises(ValueError, match="t must be"):
        diffusion.forward_strip(x0, ab, [1000], seeded(0))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_replay_rebuilds_any_state_of_a_run_from_its_seed(tiny, eta):
    seed, ts = 5, diffusion.timesteps(tiny.T, 8)
    g = seeded(seed)
    x_T = diffusion.initial_noise(3, g)
    xs = [x_T] + [x for _, x, _ in diffusion.denoise(tiny, x_T, ts, g, eta, [1, 2, 3], 2.0)]
    for k in (0, 1, 5, len(ts)):
        assert torch.equal(diffusion.replay(tiny, 3, seed, ts, k, eta, [1, 2, 3], 2.0), xs[k])
    with pytest.raises(ValueError, match="replay step"):
        diffusion.replay(tiny, 3, seed, ts, len(ts) + 1, eta)


def test_timesteps_are_decreasing_and_end_at_zero():
    assert diffusion.timesteps(1000, 10) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert diffusion.timesteps(1000, 1000) == list(range(999, -1, -1))
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="sampling steps"):
            diffusion.timesteps(1000, bad)


def test_ddim_eta_zero_is_deterministic(tiny):
    """With η = 0 the only randomness is x_T: other generator states give the same images."""
    x_T = diffusion.initial_noise(3, seeded(4))
    ts = diffusion.timesteps(tiny.T, 8)
    a = [x for _, x, _ in diffusion.denoise(tiny, x_T, ts, seeded(1), eta=0.0)][-1]
    b = [x for _, x, _ in diffusion.denoise(tiny, x_T, ts, seeded(2), eta=0.0)][-1]
    c = [x for _, x, _ in diffusion.denoise(tiny, x_T, ts, seeded(1), eta=1.0)][-1]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_branch_with_the_original_seed_reproduces_the_run(tiny, eta):
    seed = 11
    g = seeded(seed)
    ts = diffusion.timesteps(tiny.T, tiny.T)
    x_T = diffusion.initial_noise(2, g)
    xs = [x_T] + [x for _, x, _ in diffusion.denoise(tiny, x_T, ts, g, eta)]
    for i in (0, 7, len(ts) - 1):
        out = [x for _, x, _ in diffusion.branch(tiny, xs[i], ts, i, seed, eta=eta)]
        assert torch.equal(out[-1], xs[-1])
    other = [x for _, x, _ in diffusion.branch(tiny, xs[7], ts, 7, seed + 1, eta=eta)][-1]
    assert torch.equal(other, xs[-1]) == (eta == 0.0)
    fewer = list(diffusion.branch(tiny, xs[7], ts, 7, seed, steps=5, eta=eta))
    assert fewer[0][0] == ts[7] and fewer[-1][0] == 0 and len(fewer) < len(ts) - 7


def test_guidance_and_labels_are_checked(tiny):
    with pytest.raises(ValueError, match="guidance"):
        last(FAM.sample(tiny, 2, generator=seeded(0), labels=[1, 2], guidance=-1.0))
    with pytest.raises(ValueError, match="class label"):
        last(FAM.sample(tiny, 2, generator=seeded(0), labels=[1, 10]))
    with pytest.raises(ValueError, match="class label"):
        last(FAM.sample(tiny, 2, generator=seeded(0), labels=[1]))
    unconditional = FAM.build(FAM.config("tiny"))
    with pytest.raises(ValueError, match="class-conditional"):
        last(FAM.sample(unconditional, 2, generator=seeded(0), labels=[1, 2]))
    with pytest.raises(ValueError, match="class-conditional"):
        last(FAM.sample(unconditional, 2, generator=seeded(0), guidance=2.0))
    with pytest.raises(ValueError, match="steps"):
        last(FAM.sample(tiny, 2, generator=seeded(0), steps=tiny.T + 1))


def test_guidance_changes_samples(tiny):
    a = last(FAM.sample(tiny, 2, generator=seeded(0), labels=[3, 3], guidance=1.0, steps=5))
    b = last(FAM.sample(tiny, 2, generator=seeded(0), labels=[3, 3], guidance=4.0, steps=5))
    assert a.shape == (2, 1, 28, 28) and not torch.equal(a, b)


@pytest.mark.parametrize("name", ["diffusion_mnist_cond", "diffusion_fashion_cond"])
def test_shipped_card_unguided_samples_are_no_worse_than_blurred_real(name):
    """Issue 13's unguided bar, read from the card: 2,000 unguided samples at the page's sampler are no
    further from the test set (Fréchet distance) than 2,000 blurred real images, with a margin. Drawing
    them takes about 15 minutes on a CPU, so the suite reads the card; the card scores are rebuilt by
    `python -m models.core.evaluate all NAME`, and test_evaluate's check that they match today's sampler
    keeps them current. The untrained-model side of this bar is the class test below."""
    import json

    from models.core import evaluate

    path = SHIPPED.with_name(f"{name}.json")
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    m = json.loads(path.read_text())["metrics"]
    blurred = m["calibration"][f"blurred real (σ {evaluate.BLUR_SIGMA:g} px)"]
    assert m["sample_scores"]["n"] == blurred["n"] >= 2000
    fd = m["sample_scores"]["frechet_distance"]
    assert fd <= 0.97 * blurred["frechet_distance"], (fd, blurred["frechet_distance"])
    assert m["sample_scores"]["class_coverage"] == 1.0


@pytest.mark.parametrize("name, bar", [("diffusion_mnist_cond", 0.98), ("diffusion_fashion_cond", 0.95)])
def test_shipped_checkpoint_draws_the_class_it_is_asked_for(name, bar):
    """Issue 13's bar at the page's default (100 steps, η = 1, w = 3): 100 samples asked for each class in
    turn are drawn as that class ≥ 98 % on MNIST (the card: 100 % of 2,000); Fashion is held at 95 %
    (its card: 98.9 %, shirts 91 %, against 91 % for real held-out images). An untrained model fails."""
    path = SHIPPED.with_name(f"{name}.safetensors")
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    model, config, _ = checkpoint.load(path)
    c = training.class_scores(FAM, model.eval(), config.dataset, 100)
    assert c["accuracy"] >= bar, c["per_class"]
    torch.manual_seed(0)
    assert training.class_scores(FAM, FAM.build(config).eval(), config.dataset, 20)["accuracy"] < 0.5
