"""Faults while training and saving: nothing good is ever lost.

* the process is killed (SIGKILL) while a checkpoint is being written: the previous file is intact and
  loads, and the next write sweeps the temporary file the dead writer left;
* the disk fills up, or the folder turns read-only, mid-run: the run stops with a message saying
  which, and the last good checkpoint loads;
* the loss turns NaN, or the weights do, mid-run, in every family of the registry: the run stops and
  the last good checkpoint (finite) is what is kept;
* a checkpoint whose card is missing or corrupt, or whose weights are corrupt, is reported as such.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint, train as training
from studio import jobs, parts, widgets

ROOT = Path(__file__).resolve().parent.parent
VAE = FAMILIES["vae"]


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "STATE", tmp_path / "state")


# --- kill -9 mid-save -----------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, torch
    from models import FAMILIES
    from models.core import checkpoint
    fam = FAMILIES["vae"]
    config = fam.config("tiny", channels=(32, 64), hidden=1024)  # about 26 MB: a write takes a while
    model = fam.build(config)
    for step in range(1, 1000):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)  # every version's weights say which step wrote them
        print("begin", step, flush=True)
        checkpoint.save(sys.argv[1], model, "vae", config, step=step)
        print("end", step, flush=True)
""")


def test_kill_9_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path):
    path = tmp_path / "run.safetensors"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in child.stdout:  # let two versions land, then kill it while the third is written
            if line.split() == ["begin", "3"]:
                break
        deadline = time.time() + 30
        while not list(tmp_path.glob(".run.safetensors.*.tmp")) and time.time() < deadline:
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".run.safetensors.*.tmp"))
    assert leftovers, "the kill did not land mid-write (no temporary file left), so nothing was tested"
    model, _, meta = checkpoint.load(path)
    assert meta["step"] == 2
    assert all(bool((p == 2).all()) for p in model.parameters())  # the whole of version 2, not a mix

    # the next write to that path (a restarted studio) sweeps the dead writer's temporary file
    old = time.time() - checkpoint.STALE_TMP_S - 1
    for f in leftovers:
        os.utime(f, (old, old))
    checkpoint.save(path, model, "vae", VAE.config("tiny", channels=(32, 64), hidden=1024), step=3)
    assert sorted(os.listdir(tmp_path)) == ["run.safetensors"]


# --- a full disk, a read-only folder ----------------------------------------------------------------

def _fails_after(monkeypatch, first_ok: int, err: int):
    """Let ``first_ok`` checkpoint writes through, then fail every write with OSError(err)."""
    made = {"n": 0}
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("suffix") == ".tmp" and str(kwargs.get("prefix", "")).endswith(".safetensors."):
            made["n"] += 1
            if made["n"] > first_ok:
                raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("err, said", [(errno.ENOSPC, "the disk is full"),
                                       (errno.EROFS, "read-only"), (errno.EACCES, "not writable")])
def test_a_run_whose_disk_fills_or_turns_read_only_stops_with_a_message_and_keeps_the_last_good(
        tmp_path, monkeypatch, err, said):
    out = tmp_path / "out"
    _fails_after(monkeypatch, 2, err)  # step 3's weights and optimizer state are written, then nothing
    config = VAE.config("tiny", steps=12)
    with pytest.raises(ValueError, match=f"Could not write run.safetensors .*{said}.*previous file is kept"):
        training.train(VAE, config, name="run", out=out, device="cpu", checkpoint_every=3, log_every=3,
                       score_samples=0)
    monkeypatch.undo()
    model, _, meta = checkpoint.load(out / "run.safetensors")
    assert meta["step"] == 3
    assert not list(out.glob(".*.tmp"))


def test_the_page_says_why_a_run_stopped_when_the_disk_is_full(user_dir, monkeypatch):
    _fails_after(monkeypatch, 2, errno.ENOSPC)
    job = jobs.JOBS.start("vae", "full_disk", VAE.config("tiny", steps=30), checkpoint_every=3, score_samples=0,
                          preview_every=None)
    job.thread.join(60)
    assert "failed" in job.status() and "the disk is full" in job.status()
    monkeypatch.undo()
    assert checkpoint.load(user_dir / "full_disk.safetensors")[2]["step"] == 3


# --- NaN mid-run, every family ---------------------------------------------------------------------

def _poisoned(fam, at: int, weights: bool):
    """``fam`` whose train_step, from call ``at`` on, returns a NaN loss, or (``weights``) gets NaN
    gradients while its loss is finite: the optimizer then writes NaN into the weights, and the blow-up
    is only in the model, not in the loss the loop checks."""
    calls = {"n": 0}

    def step(model, batch, config, *opts):
        calls["n"] += 1
        if weights and calls["n"] == at:
            for p in model.parameters():
                p.register_hook(lambda g: torch.full_like(g, float("nan")))
        out = fam.train_step(model, batch, config, *opts)
        if not weights and calls["n"] >= at:
            out = {**out, "loss": torch.tensor(float("nan"))}
        return out

    return dataclasses.replace(fam, train_step=step)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_nan_mid_run_keeps_the_last_good_checkpoint_in_every_family(tmp_path, name):
    fam = FAMILIES[name]
    config = fam.config("tiny", steps=8)
    out = tmp_path / "out"
    # the loss turns NaN at step 5: the run stops as diverged, pointing at step 3's file
    result = training.train(_poisoned(fam, 5, weights=False), config, name="nan_loss", out=out, device="cpu",
                            checkpoint_every=3, log_every=8, score_samples=0)
    assert result.status == "diverged" and "last good checkpoint (step 3)" in result.message
    assert checkpoint.load(result.path)[2]["step"] == 3
    # the weights turn NaN in step 6 while its loss is finite: step 6's save is refused (or, for families
    # whose step reports gradient norms, the run stops as diverged first); step 3's file is kept
    try:
        result = training.train(_poisoned(fam, 6, weights=True), config, name="nan_weights", out=out,
                                device="cpu", checkpoint_every=3, log_every=8, score_samples=0)
        assert result.status == "diverged" and "last good checkpoint (step 3)" in result.message
    except ValueError as e:
        assert "non-finite" in str(e) and "last good checkpoint is kept" in str(e)
    model, _, meta = checkpoint.load(out / "nan_weights.safetensors")
    assert meta["step"] == 3
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


# --- missing or corrupt cards and files --------------------------------------------------------------

@pytest.fixture
def user_run(user_dir):
    """A small finished-looking VAE checkpoint of the user's, with a card."""
    config = VAE.config("tiny")
    path = checkpoint.save(user_dir / "mine.safetensors", VAE.build(config), "vae", config, step=2)
    checkpoint.write_json(path.with_suffix(".json"), {"name": "mine", "family": "vae", "steps": 2,
                                                      "config": widgets.config_dict(config), "metrics": {}})
    return path


def test_a_missing_card_is_reported_as_missing(user_run):
    user_run.with_suffix(".json").unlink()
    assert "mine" in widgets.checkpoint_paths("vae")
    assert "No card yet" in parts.card_of(("vae",), "mine")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"], ids=["broken", "not-an-object", "binary"])
def test_a_corrupt_card_is_reported_as_corrupt(user_run, text):
    user_run.with_suffix(".json").write_bytes(text.encode("latin-1"))
    assert "mine" in widgets.checkpoint_paths("vae")  # still listed: its header says which family it is
    shown = parts.card_of(("vae",), "mine")
    assert "card" in shown and "corrupt" in shown


def test_corrupt_weights_with_no_card_are_reported_as_corrupt(user_run):
    user_run.with_suffix(".json").unlink()
    blob = user_run.read_bytes()
    user_run.write_bytes(blob[: len(blob) // 2])
    card = widgets.read_card(user_run)
    assert "truncated" in card["error"]
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.load(user_run)


def test_corrupt_weights_behind_a_good_card_are_refused_when_used(user_run):
    blob = bytearray(user_run.read_bytes())
    user_run.write_bytes(bytes(blob[:8]) + b"[" + bytes(blob[9:]))  # header JSON broken
    with pytest.raises(Exception) as info:
        widgets.load("vae", "mine")
    assert "corrupt" in str(info.value)


def test_a_studio_training_run_gives_the_global_rng_back(user_dir):
    """The loop seeds the global RNG (initial weights, training noise); a run started from the page
    leaves the process-wide state as it found it."""
    import torch

    before = torch.get_rng_state()
    job = jobs.JOBS.start("vae", "rng_back", VAE.config("tiny", steps=6), score_samples=0, preview_every=None)
    job.thread.join(60)
    assert job.result is not None and job.result.status == "finished"
    assert torch.equal(torch.get_rng_state(), before)
