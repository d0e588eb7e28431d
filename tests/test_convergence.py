"""Training that converges: the learning-rate schedule of the shared loop (warm-up, cosine decay),
resumes that may change how training proceeds but not what is trained, diffusion's min-SNR-γ loss
weighting, and the per-class scores a class-conditional card carries."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from models import FAMILIES
from models.core import checkpoint, data, evaluate, train as training
from models.image import diffusion

DIFFUSION, GAN = FAMILIES["diffusion"], FAMILIES["gan"]


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    return tmp_path / "state"


def run(tmp_path, family, steps, name="run", resume=False, **overrides):
    config = family.config("tiny", steps=steps, **overrides)
    return training.train(family, config, name=name, out=tmp_path / "out", device="cpu", resume=resume,
                          score_samples=0, log_every=1)


def test_lr_factor_warms_up_linearly_then_decays_to_zero_on_a_half_cosine():
    c = DIFFUSION.config("tiny", steps=100, warmup_steps=10, lr_decay="cosine")
    assert training.lr_factor(c, 0) == pytest.approx(0.1 * 1.0)
    assert training.lr_factor(c, 4) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    assert training.lr_factor(c, 50) == pytest.approx(0.5)
    assert training.lr_factor(c, 100) == pytest.approx(0.0, abs=1e-12)
    assert training.lr_factor(DIFFUSION.config("tiny"), 7) == 1.0  # no schedule: the constant rate


def test_the_optimizer_steps_with_the_scheduled_rate(tmp_path, monkeypatch):
    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    run(tmp_path, DIFFUSION, steps=4, lr_decay="cosine", lr=1e-3)
    assert seen == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)])


def test_a_scheduled_run_cancelled_halfway_and_resumed_equals_the_run_in_one_go(tmp_path):
    """The schedule depends on the run's total steps, so the split run is one 4-step run cancelled
    after step 2 (not a 2-step run extended, whose cosine ended at step 2)."""
    import threading

    kw = {"lr_decay": "cosine", "warmup_steps": 2, "ema_decay": 0.9, "min_snr_gamma": 5.0}
    run(tmp_path / "a", DIFFUSION, steps=4, name="whole", **kw)
    stop = threading.Event()
    config = DIFFUSION.config("tiny", steps=4, **kw)
    cancelled = training.train(DIFFUSION, config, name="split", out=tmp_path / "b" / "out", device="cpu",
                               score_samples=0, log_every=1, cancel=stop,
                               on_progress=lambda p: stop.set() if p.step == 2 else None)
    assert cancelled.status == "cancelled" and cancelled.step == 2
    run(tmp_path / "b", DIFFUSION, steps=4, name="split", resume=True, **kw)
    a = load_file(tmp_path / "a" / "out" / "whole.safetensors")
    b = load_file(tmp_path / "b" / "out" / "split.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_may_add_ema_and_a_decay_but_not_change_the_network(tmp_path):
    run(tmp_path, GAN, steps=2, name="g", ema_decay=0.0)
    result = run(tmp_path, GAN, steps=3, name="g", resume=True, ema_decay=0.9, lr_decay="cosine")
    assert result.status == "finished"
    with pytest.raises(ValueError, match="only steps, ema_decay, lr_decay.* may change"):
        run(tmp_path, GAN, steps=4, name="g", resume=True, ema_decay=0.9, lr_decay="cosine", latent_dim=9)


def test_a_resume_may_drop_the_label_more_often_to_strengthen_the_unguided_model(tmp_path):
    """p_uncond is how often the class is hidden in training: raising it on a resume trains the
    unconditional (unguided) half of a guided model more, on the same network."""
    run(tmp_path, DIFFUSION, steps=2, name="d", conditional=True, p_uncond=0.1)
    result = run(tmp_path, DIFFUSION, steps=3, name="d", resume=True, conditional=True, p_uncond=0.3)
    assert result.status == "finished"
    assert checkpoint.read_meta(tmp_path / "out" / "d.safetensors")["config"]["p_uncond"] == 0.3
    with pytest.raises(ValueError, match="may change"):
        run(tmp_path, DIFFUSION, steps=4, name="d", resume=True, conditional=False, p_uncond=0.3)


def test_min_snr_weights_cap_the_clean_timesteps_and_leave_the_noisy_ones_at_one():
    ab = diffusion.alpha_bars("linear", 1000)
    t = torch.tensor([0, 50, 200, 999])
    w = diffusion.min_snr_weights(ab, t, 5.0)
    snr = ab[t] / (1 - ab[t])
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and w[-1] == 1.0 and torch.all(w[1:] >= w[:-1])


def test_without_gamma_the_loss_is_the_plain_noise_mse():
    torch.manual_seed(0)
    c = DIFFUSION.config("tiny", conditional=True)
    m = DIFFUSION.build(c)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = diffusion._loss(m, x, y, generator=g())
    x0 = diffusion.to_model_space(x)
    gen = g()
    t = torch.randint(0, m.T, (6,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    torch.rand(6, generator=gen)
    ref = F.mse_loss(m(diffusion.q_sample(m.alpha_bar, x0, t, noise), t, y), noise)
    torch.testing.assert_close(plain, ref)
    assert diffusion._loss(m, x, y, generator=g(), min_snr_gamma=5.0) < plain  # weights ≤ 1


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ValueError, match="lr_decay must be"):
        DIFFUSION.config("tiny", lr_decay="step")
    with pytest.raises(ValueError, match="min-SNR"):
        DIFFUSION.config("tiny", min_snr_gamma=-1.0)
    with pytest.raises(ValueError, match="lr_decay must be"):
        GAN.config("tiny", lr_decay="linear")
    with pytest.raises(ValueError, match="lr_decay must be"):
        FAMILIES["musegan"].config("tiny", lr_decay="cosin")


def test_class_accuracy_is_high_for_real_labels_and_chance_for_shuffled_ones():
    x, y = data.images("mnist", "test")
    x, y = x[:500], y[:500]
    right = evaluate.class_accuracy(x, y, "mnist")
    wrong = evaluate.class_accuracy(x, (y + 1) % 10, "mnist")
    assert right["accuracy"] > 0.97 and wrong["accuracy"] < 0.05
    assert set(right["per_class"]) == set(data.class_names("mnist"))
    assert right["worst"] == min(right["per_class"].values()) == right["per_class"][right["worst_class"]]


def test_a_conditional_card_scores_every_class_with_the_pages_settings(tmp_path):
    config = DIFFUSION.config("tiny", conditional=True, steps=1, T=100)  # T covers the cards' 100 steps
    model = DIFFUSION.build(config).eval()
    c = training.class_scores(DIFFUSION, model, "mnist", 20)
    assert c["n"] == 20 and c["sampler"]["guidance"] == 3.0 and len(c["per_class"]) == 10
    assert c["real"]["accuracy"] > 0.9 and "confidence" in c["scores"]
