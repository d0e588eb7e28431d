"""The shared training loop: progress, checkpoints and cards, cancel, resume, divergence, the CLI.

Every test trains the tiny VAE for a handful of steps into a temporary folder; the optimizer state
and curve history that ``train`` keeps under ``models.core.train.STATE`` are redirected there too.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import threading

import pytest
import torch
from safetensors.torch import load_file

from models import FAMILIES
from models.core import checkpoint, train as training

VAE = FAMILIES["vae"]


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    """Keep train's optimizer state and history out of runs/."""
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    return tmp_path / "state"


def run(tmp_path, steps=6, name="run", **kw):
    """Train the tiny VAE on CPU into tmp_path/out, skipping sample scoring unless asked."""
    kw.setdefault("score_samples", 0)
    kw.setdefault("log_every", 2)
    config = kw.pop("config", None) or VAE.config("tiny", steps=steps)
    family = kw.pop("family", VAE)
    return training.train(family, config, name=name, out=tmp_path / "out", device="cpu", **kw)


def test_progress_reports_increasing_steps_and_finite_metrics(tmp_path):
    """The callback sees every log_every steps in order, with finite metrics and a sensible speed."""
    seen = []
    result = run(tmp_path, steps=6, on_progress=seen.append)
    assert result.status == "finished" and result.step == 6
    assert [p.step for p in seen] == [2, 4, 6]
    assert all(p.total == 6 for p in seen)
    for p in seen:
        assert {"loss", "reconstruction", "kl"} <= set(p.metrics)
        assert all(math.isfinite(v) for v in p.metrics.values())
        assert p.images_per_s > 0 and p.elapsed >= 0
    assert [h["step"] for h in result.history] == [2, 4, 6]


def test_preview_is_sent_when_due(tmp_path):
    """With preview_every set, the callback gets 16 fixed-seed samples on the first report, every
    preview_every steps and the last step, and no preview otherwise."""
    seen = []
    run(tmp_path, steps=7, log_every=1, preview_every=3, on_progress=seen.append)
    with_preview = [p.step for p in seen if p.preview is not None]
    assert with_preview == [1, 3, 6, 7]
    assert all(p.preview.shape == (16, 1, 28, 28) for p in seen if p.preview is not None)
    assert [p.step for p in seen] == list(range(1, 8))


def test_finished_run_writes_checkpoint_and_card(tmp_path):
    """A finished run leaves a loadable checkpoint and a card with config, metrics and provenance."""
    result = run(tmp_path, steps=4, command="python -m models.train vae --preset tiny")
    assert result.path == tmp_path / "out" / "run.safetensors"
    model, config, meta = checkpoint.load(result.path)
    assert config == VAE.config("tiny", steps=4) and meta["step"] == 4
    card = json.loads(result.path.with_suffix(".json").read_text())
    assert card == json.loads(json.dumps(result.card))
    assert card["family"] == "vae" and card["name"] == "run" and card["steps"] == 4
    assert card["config"] == json.loads(json.dumps(dataclasses.asdict(config)))
    assert card["data"] == {"dataset": "mnist", "title": "MNIST digits", "train_images": 60000, "test_images": 10000}
    assert card["command"] == "python -m models.train vae --preset tiny"
    assert card["hardware"].startswith("CPU")
    assert math.isfinite(card["metrics"]["neg_elbo_nats"]) and card["metrics"]["neg_elbo_nats"] > 0
    assert "sample_scores" not in card["metrics"]


def test_card_carries_sample_scores(tmp_path):
    """With score_samples, the card holds the classifier's scores of that many samples."""
    result = run(tmp_path, steps=2, score_samples=500)
    scores = result.card["metrics"]["sample_scores"]
    assert set(scores) == {"confidence", "class_coverage", "inception_score", "n", "frechet_distance"}
    assert scores["n"] == 500
    assert 0 < scores["confidence"] <= 1 and 0 <= scores["class_coverage"] <= 1
    assert 1 <= scores["inception_score"] <= 10 and scores["frechet_distance"] > 0


def test_same_seed_same_weights(tmp_path):
    """Two runs with the same seed and config end with bit-identical weights (the card's command
    reproduces its checkpoint); another seed gives other weights."""
    a, b = run(tmp_path, steps=3, name="a"), run(tmp_path, steps=3, name="b")
    c = run(tmp_path, steps=3, name="c", seed=1)
    wa, wb, wc = (load_file(r.path) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def cancel_at(step: int):
    """A cancel event and a progress callback that sets it once training reaches ``step``."""
    event = threading.Event()

    def on_progress(p):
        if p.step >= step:
            event.set()

    return event, on_progress


def test_cancel_stops_and_saves(tmp_path):
    """Setting the cancel event stops the run at the next step with a loadable checkpoint of that step."""
    event, on_progress = cancel_at(4)
    result = run(tmp_path, steps=10, cancel=event, on_progress=on_progress)
    assert result.status == "cancelled" and result.step == 4
    assert "Cancelled at step 4" in result.message
    assert result.path.exists()
    _, _, meta = checkpoint.load(result.path)
    assert meta["step"] == result.step
    assert not result.path.with_suffix(".json").exists()  # cards are for finished runs only


def test_resume_continues_to_the_full_step_count(tmp_path, state_in_tmp):
    """A cancelled run resumed with the same settings finishes at config.steps with a continuous history."""
    event, on_progress = cancel_at(4)
    first = run(tmp_path, steps=10, cancel=event, on_progress=on_progress)
    assert first.status == "cancelled"
    seen = []
    result = run(tmp_path, steps=10, resume=True, on_progress=seen.append)
    assert result.status == "finished" and result.step == 10
    assert [p.step for p in seen] == [6, 8, 10]
    assert [h["step"] for h in result.history] == [2, 4, 6, 8, 10]
    assert result.history[:2] == first.history[:2]
    assert checkpoint.load(result.path)[2]["step"] == 10
    assert result.card["steps"] == 10
    optim, _ = checkpoint.load_tensors(state_in_tmp / "run.optim.safetensors")
    assert optim["adam:0.step"].item() == 10  # Adam's state was carried over, not restarted at step 4


def test_resume_can_raise_steps(tmp_path):
    """A finished run can be trained further by raising steps (the one setting that may change)."""
    run(tmp_path, steps=4)
    result = run(tmp_path, steps=6, resume=True)
    assert result.status == "finished" and result.step == 6
    assert [h["step"] for h in result.history] == [2, 4, 6]


def test_resume_with_other_settings_is_refused(tmp_path):
    """Resuming with any setting other than steps changed is a ValueError."""
    run(tmp_path, steps=4)
    with pytest.raises(ValueError, match="same settings"):
        run(tmp_path, config=VAE.config("tiny", steps=6, lr=5e-4), resume=True)


def test_resume_past_the_end_is_refused(tmp_path):
    """Resuming a run that already has config.steps steps is a ValueError asking for more steps."""
    run(tmp_path, steps=4)
    with pytest.raises(ValueError, match="already has 4 steps"):
        run(tmp_path, steps=4, resume=True)


def test_a_torchrun_restart_after_the_last_checkpoint_finishes_the_run(tmp_path):
    """A worker lost after the last step's checkpoint (while the card was written) is restarted by
    torchrun; the restart finds the run at its end and writes the card instead of refusing."""
    card = run(tmp_path, steps=4).path.with_suffix(".json")
    card.unlink()
    again = run(tmp_path, steps=4, resume=True, restarted=True)
    assert again.status == "finished" and again.step == 4 and card.exists()


def test_resume_with_nothing_to_resume_is_refused(tmp_path):
    """Resuming a name that was never trained is a ValueError."""
    with pytest.raises(ValueError, match="Nothing to resume"):
        run(tmp_path, name="never", resume=True)


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path):
    """When the loss turns NaN the run stops as diverged, pointing at a checkpoint from before it."""
    calls = {"n": 0}

    def nan_after_5(model, batch, config):
        calls["n"] += 1
        out = VAE.train_step(model, batch, config)
        if calls["n"] > 5:
            out["loss"] = torch.tensor(float("nan"))
        return out

    family = dataclasses.replace(VAE, train_step=nan_after_5)
    result = run(tmp_path, steps=10, family=family, checkpoint_every=2)
    assert result.status == "diverged" and result.step == 5
    assert "nan" in result.message and "at step 6" in result.message
    assert "last good checkpoint (step 4)" in result.message
    model, _, meta = checkpoint.load(result.path)
    assert meta["step"] == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_before_any_checkpoint_says_so(tmp_path):
    """A run that diverges before its first checkpoint returns no path and says nothing was written."""
    family = dataclasses.replace(VAE, train_step=lambda m, b, c: {"loss": torch.tensor(float("inf"))})
    result = run(tmp_path, steps=10, family=family)
    assert result.status == "diverged" and result.path is None
    assert "no checkpoint was written" in result.message
    assert not (tmp_path / "out" / "run.safetensors").exists()


@pytest.mark.parametrize("name", ["../x", "", "a/b", "a b", "x.safetensors"])
def test_bad_names_are_refused(tmp_path, name):
    """Checkpoint names are plain letters, digits, '_' and '-': no paths, no empty name."""
    with pytest.raises(ValueError, match="Checkpoint name"):
        run(tmp_path, name=name)
    assert not (tmp_path / "out").exists()


def test_cli_writes_checkpoint_and_a_reproducing_command(tmp_path, capsys):
    """`python -m models.train` writes NAME.safetensors and NAME.json whose command, run again,
    gives the same weights."""
    out = tmp_path / "cli"
    argv = ["vae", "--preset", "tiny", "--set", "steps=3", "--out", str(out), "--name", "x"]
    training.main(argv)
    assert "Finished 3 steps" in capsys.readouterr().out
    weights, card_path = out / "x.safetensors", out / "x.json"
    model, config, meta = checkpoint.load(weights)
    assert config == VAE.config("tiny", steps=3) and meta["step"] == 3
    card = json.loads(card_path.read_text())
    assert card["metrics"]["sample_scores"]["n"] == 2000

    words = shlex.split(card["command"])
    assert words[:3] == ["python", "-m", "models.train"] and words[3:] == argv
    first = load_file(weights)
    training.main(words[3:])
    again = load_file(weights)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_cli_rejects_a_malformed_set(tmp_path):
    """--set without '=' is a usage error, not a crash."""
    with pytest.raises(SystemExit):
        training.main(["vae", "--preset", "tiny", "--set", "steps", "--out", str(tmp_path)])


def test_resume_reads_optimizer_state_written_before_optimizers_had_names(tmp_path, state_in_tmp):
    """Runs saved by earlier versions (one unnamed Adam state) still resume with their Adam state."""
    event, on_progress = cancel_at(4)
    run(tmp_path, steps=10, cancel=event, on_progress=on_progress)
    path = state_in_tmp / "run.optim.safetensors"
    tensors, meta = checkpoint.load_tensors(path)
    old = {k.split(":", 1)[1]: v for k, v in tensors.items()}
    checkpoint.save_tensors(path, old, optimizer=meta["optimizers"]["adam"])
    result = run(tmp_path, steps=10, resume=True)
    assert result.status == "finished"
    assert checkpoint.load_tensors(path)[0]["adam:0.step"].item() == 10
