"""EMA of weights in the shared training loop: torch's AveragedModel under the warm-up rule, the EMA
weights in the checkpoint (so sampling and cards use them), the raw ones kept for resume, and a
resumed run that continues both exactly as an uninterrupted one."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from models import FAMILIES
from models.core import ASSETS, checkpoint, train as training

DIFFUSION, GAN = FAMILIES["diffusion"], FAMILIES["gan"]


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    return tmp_path / "state"


def run(tmp_path, family, steps, name="run", **kw):
    config = family.config("tiny", steps=steps, ema_decay=kw.pop("ema_decay", 0.9))
    kw.setdefault("score_samples", 0)
    kw.setdefault("log_every", 1)
    return training.train(family, config, name=name, out=tmp_path / "out", device="cpu", **kw)


def test_ema_follows_the_warm_up_rule_by_hand():
    """θ_EMA starts as θ, then θ_EMA ← d_n θ_EMA + (1 - d_n) θ with d_n = min(decay, (1+n)/(10+n))."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = training.EMA(net, ("",), decay=0.5)
    expected = None
    for n in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(4, 3))  # moves the batch-norm running statistics (buffers)
        ema.update(net)
        current = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}
        if expected is None:
            expected = current
        else:
            d = min(0.5, (1 + n) / (10 + n))
            assert d == ema.decay_at(n)
            expected = {k: d * expected[k] + (1 - d) * current[k] for k in current}
        got = ema.model(net).state_dict()
        for k, v in expected.items():
            torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-7)
    assert ema.updates == 6
    assert ema.decay_at(10**6) == 0.5 and training.EMA(net, ("",), 0.999).decay_at(100) == pytest.approx(101 / 110)


def test_checkpoint_holds_the_ema_weights_and_sampling_uses_them(tmp_path, state_in_tmp):
    """The file everyone loads holds the averaged generator; previews and samples come from it; the raw
    weights sit in the state file; D (not averaged) is raw in both."""
    seen = []
    result = run(tmp_path, GAN, steps=3, preview_every=1, on_progress=seen.append)
    model, config, meta = checkpoint.load(result.path)
    assert config.ema_decay == 0.9 and meta["ema_updates"] == 3
    raw = {k[len(training.RAW):]: v for k, v in load_file(state_in_tmp / "run.optim.safetensors").items()
           if k.startswith(training.RAW)}
    saved = model.state_dict()
    assert set(raw) == set(saved)
    assert all(torch.equal(saved[k], raw[k]) for k in saved if k.startswith("D."))
    assert not all(torch.equal(saved[k], raw[k]) for k in saved if k.startswith("G."))
    torch.testing.assert_close(training.preview(GAN, model), seen[-1].preview, rtol=0, atol=0)
    raw_model = GAN.build(config)
    raw_model.load_state_dict(raw)
    assert not torch.equal(training.preview(GAN, raw_model.eval()), seen[-1].preview)


@pytest.mark.parametrize("family", [DIFFUSION, GAN], ids=["diffusion", "gan"])
def test_resume_continues_raw_and_ema_exactly(tmp_path, state_in_tmp, family):
    """2 steps, then a resume to 4, gives bit for bit the raw and EMA weights of 4 steps in one go."""
    run(tmp_path / "a", family, steps=4, name="whole")
    run(tmp_path / "b", family, steps=2, name="split")
    run(tmp_path / "b", family, steps=4, name="split", resume=True)
    ema_a = load_file(tmp_path / "a" / "out" / "whole.safetensors")
    ema_b = load_file(tmp_path / "b" / "out" / "split.safetensors")
    state_a = load_file(state_in_tmp / "whole.optim.safetensors")
    state_b = load_file(state_in_tmp / "split.optim.safetensors")
    assert ema_a.keys() == ema_b.keys() and state_a.keys() == state_b.keys()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)  # raw weights, Adam moments, RNG
    assert checkpoint.read_meta(tmp_path / "b" / "out" / "split.safetensors")["ema_updates"] == 4


def test_card_says_which_weights_it_scored(tmp_path):
    ema = run(tmp_path, DIFFUSION, steps=2, name="ema", ema_decay=0.999)
    raw = run(tmp_path, DIFFUSION, steps=2, name="raw", ema_decay=0.0)
    assert ema.card["weights"] == "EMA, decay 0.999"
    assert raw.card["weights"] == "raw"
    assert json.loads((tmp_path / "out" / "ema.json").read_text())["weights"] == "EMA, decay 0.999"
    assert not any(k.startswith(training.RAW) for k in load_file(training.STATE / "raw.optim.safetensors"))


def test_checkpoints_from_before_ema_load_as_raw_and_presets_choose_ema():
    """Shipped cards and checkpoints have no ema_decay: they load with EMA off (so they resume as
    before); the cpu presets of the families that benefit turn it on; a decay of 1 is refused."""
    shipped = [p for p in sorted((ASSETS / "checkpoints").glob("*.safetensors"))
               if checkpoint.read_meta(p)["family"] in ("gan", "diffusion", "ldm", "musegan", "cyclegan")]
    assert len(shipped) >= 5
    for path in shipped:
        _, config, meta = checkpoint.load(path)
        card = json.loads(path.with_suffix(".json").read_text())
        if "ema_decay" not in card["config"]:  # written before EMA
            assert config.ema_decay == 0.0 and "ema_updates" not in meta
    for fam in ("gan", "diffusion", "ldm", "musegan", "cyclegan"):
        assert FAMILIES[fam].config("cpu").ema_decay == 0.999
    assert DIFFUSION.config("book").ema_decay == 0.999 and GAN.config("book").ema_decay == 0.0
    with pytest.raises(ValueError, match="EMA decay"):
        DIFFUSION.config("tiny", ema_decay=1.0)
