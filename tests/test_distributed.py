"""The shared loop under torchrun (gloo on CPU): two processes give the losses and weights of one
process on the same global batch (VAE, the GAN with EMA, GPT, CycleGAN), a checkpoint crosses world
sizes both ways with the same next loss, and a worker killed mid-run is restarted by torchrun and
the run finishes from its last checkpoint. See tests/ddp_worker.py for the training noise."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models import FAMILIES
from models.core import checkpoint, train as training
import ddp_worker  # beside this file: pytest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def env(runs: Path) -> dict:
    return {**os.environ, "STUDIO_RUNS": str(runs), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def launch(cmd, runs: Path, timeout=120) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env(runs), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def copy_run(src_out: Path, src_runs: Path, name: str, dst_out: Path, dst_state: Path, new: str) -> None:
    dst_out.mkdir(parents=True, exist_ok=True)
    dst_state.mkdir(parents=True, exist_ok=True)
    shutil.copy(src_out / f"{name}.safetensors", dst_out / f"{new}.safetensors")
    for suffix in (".optim.safetensors", ".history.json"):
        shutil.copy(src_runs / "state" / f"{name}{suffix}", dst_state / f"{new}{suffix}")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The worker's runs alone, then as two gloo ranks (which also continue the lone run's half)."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    launch([sys.executable, "tests/ddp_worker.py", str(one / "out")], one / "runs")
    copy_run(one / "out", one / "runs", "gpt_half", two / "out", two / "runs" / "state", "gpt_from1")
    launch([*TORCHRUN, "--nproc_per_node=2", "tests/ddp_worker.py", str(two / "out"), "gpt_from1"], two / "runs")
    return one, two


def history(folder: Path, name: str) -> list:
    return json.loads((folder / "out" / f"{name}.history.json").read_text())


def assert_same_weights(a: Path, b: Path, atol=1e-5) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=atol, msg=k)


@pytest.mark.parametrize("name", list(ddp_worker.RUNS))
def test_two_processes_match_one_on_the_same_global_batch(worlds, name):
    """Every step's losses and the final weights (the GAN's EMA generator too) agree to float tolerance."""
    one, two = worlds
    h1, h2 = history(one, name), history(two, name)
    assert [h["step"] for h in h1] == [h["step"] for h in h2] == list(range(1, ddp_worker.STEPS + 1))
    for a, b in zip(h1, h2):
        assert a.keys() == b.keys()
        for k in a:
            if not k.endswith("grad_norm"):  # a rank's own gradient norm, measured before averaging
                assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (name, a["step"], k)
    # CycleGAN's conv biases before instance norm have a true gradient of 0: Adam turns the rounding noise
    # of summing over 8 or over 2 × 4 examples into steps of ±lr, so its weights can only agree to within
    # 2 × steps × lr (its losses, above, agree to 1e-4)
    atol = 2 * ddp_worker.STEPS * FAMILIES["cyclegan"].config("tiny").lr if name == "cyclegan" else 1e-5
    assert_same_weights(one / "out" / f"{name}.safetensors", two / "out" / f"{name}.safetensors", atol)
    card = json.loads((two / "out" / f"{name}.json").read_text())
    assert card["processes"] == 2 and card["hardware"].startswith("2 processes")
    assert json.loads((one / "out" / f"{name}.json").read_text())["processes"] == 1
    if name == "gan":
        assert card["weights"] == "EMA, decay 0.9"


def losses(h: list) -> dict:
    """step -> loss after the step-2 checkpoint."""
    return {r["step"]: r["loss"] for r in h[2:]}


def test_a_one_process_checkpoint_resumes_in_two(worlds):
    """The 1-process run's step-2 checkpoint, continued by two processes, gives the next losses and the
    final weights of the uninterrupted 1-process run."""
    one, two = worlds
    assert losses(history(two, "gpt_from1")) == pytest.approx(losses(history(one, "gpt")), rel=1e-4)
    assert_same_weights(one / "out" / "gpt.safetensors", two / "out" / "gpt_from1.safetensors")


def test_a_two_process_checkpoint_resumes_in_one(worlds, tmp_path, monkeypatch):
    """Continued here in one process, the 2-process run's step-2 checkpoint gives the next losses and the
    final weights of the uninterrupted 1-process run."""
    one, two = worlds
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    copy_run(two / "out", two / "runs", "gpt_half", tmp_path / "out", tmp_path / "state", "gpt_from2")
    assert checkpoint.read_meta(tmp_path / "state" / "gpt_from2.optim.safetensors")["processes"] == 2
    fam = FAMILIES["gpt"]
    result = training.train(fam, fam.config("tiny", steps=4, dropout=0.0), name="gpt_from2", out=tmp_path / "out",
                            resume=True, device="cpu", log_every=1, score_samples=0)
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]
    assert losses(result.history) == pytest.approx(losses(history(one, "gpt")), rel=1e-4)
    assert_same_weights(one / "out" / "gpt.safetensors", tmp_path / "out" / "gpt_from2.safetensors")


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, monkeypatch):
    """Equal shares make the ranks' mean losses the global mean: a batch of 7 over 2 processes is refused
    before anything is built or written."""
    monkeypatch.setattr(training, "world", lambda: training.World(rank=0, size=2))
    fam = FAMILIES["vae"]
    with pytest.raises(ValueError, match="Batch size 7 does not split evenly over 2 processes"):
        training.train(fam, fam.config("tiny", batch_size=7), name="odd", out=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def workers(parent: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_a_killed_worker_is_restarted_and_the_run_finishes(tmp_path):
    """torchrun --max-restarts: SIGKILL one worker after the first checkpoint; the restarted workers
    resume from the last checkpoint (losing at most checkpoint_every steps) and finish with a card.
    (Spare restarts: on a loaded machine a restarted gloo mesh can time out connecting once.)"""
    steps, every = 300, 100
    out, state = tmp_path / "out", tmp_path / "runs" / "state" / "kill.optim.safetensors"
    log = open(tmp_path / "log.txt", "w+")
    proc = subprocess.Popen([*TORCHRUN, "--nproc_per_node=2", "--max-restarts=3", "-m", "models.train", "vae",
                             "--preset", "tiny", "--set", f"steps={steps}", "--name", "kill", "--out", str(out),
                             "--log-every", str(every), "--checkpoint-every", str(every)],
                            cwd=ROOT, env=env(tmp_path / "runs"), stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while not state.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert state.exists(), "no checkpoint was written"
        killed = workers(proc.pid)
        assert len(killed) == 2
        os.kill(killed[1], signal.SIGKILL)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    text = log.read()
    assert proc.returncode == 0, text[-3000:]
    restarted = [line for line in text.splitlines() if "torchrun restarted this run" in line]
    assert restarted, text[-3000:]
    resumed_at = int(restarted[0].rsplit(" ", 1)[1])
    assert resumed_at % every == 0 and 0 < resumed_at < steps
    model, config, meta = checkpoint.load(out / "kill.safetensors")
    assert meta["step"] == steps
    card = json.loads((out / "kill.json").read_text())
    assert card["steps"] == steps and card["processes"] == 2
    steps_logged = [h["step"] for h in json.loads((tmp_path / "runs" / "state" / "kill.history.json").read_text())]
    assert steps_logged == list(range(every, steps + 1, every))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the Train panel offers as many processes as cores")
def test_the_studio_runs_a_torchrun_job_follows_it_and_cancels_it(user_dir):
    """The Train panel's slot with processes=2: a torchrun job whose JSON progress fills the status and
    curves; live changes are refused; Cancel saves the current step; the run resumes in one process."""
    from studio import jobs

    fam = FAMILIES["vae"]
    job = jobs.JOBS.start("vae", "page_ddp", fam.config("tiny", steps=100_000), owner="me", processes=2,
                          log_every=5, checkpoint_every=10_000)
    deadline = time.time() + 90
    while (job.progress is None or len(job.progress.history) < 2) and job.running and time.time() < deadline:
        time.sleep(0.1)
    assert job.progress is not None, list(job.log)
    assert "2 processes (torchrun)" in job.status()
    assert [h["step"] for h in job.progress.history[:2]] == [5, 10] and "loss" in job.progress.history[0]
    with pytest.raises(ValueError, match="torchrun job of 2 processes"):
        jobs.JOBS.change("me", "vae", {"lr": 1e-4}, lambda config, changes: [])
    assert "cancelling" in jobs.JOBS.cancel("me").lower()
    job.thread.join(60)
    assert job.result is not None and job.result.status == "cancelled", (job.error, list(job.log)[-5:])
    saved = checkpoint.read_meta(user_dir / "page_ddp.safetensors")["step"]
    assert saved == job.result.step and saved >= 10
    more = jobs.JOBS.resume("page_ddp", saved + 3, owner="me", processes=1)
    more.thread.join(60)
    assert more.result.status == "finished" and more.result.step == saved + 3
    with pytest.raises(ValueError, match="does not split evenly over 2"):
        jobs.JOBS.start("vae", "odd", fam.config("tiny", batch_size=7), owner="me", processes=2)
