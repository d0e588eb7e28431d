"""Training speed of every family through the shared loop: steps/s of its ``cpu`` preset as it was
(no EMA, constant learning rate) and with issue 13's convergence settings where the family has them
(EMA of the weights at 0.999, cosine learning-rate decay, min-SNR-γ 5 for diffusion), in one run on
this machine, so the cost of each change is read side by side. The two settings run alternately
``--repeats`` times and each keeps its fastest run, so a busy neighbour process slows both alike.

    python bench/train_speed.py [--steps 30] [--repeats 2] [--families gan diffusion ...] [--threads 1]

Each figure is the speed between the first and the last progress report of a real ``train()`` run
(the first report's steps, warm-up included, are left out); nothing is scored and the checkpoint goes
to a temporary folder. Prints figures only; never part of pass/fail.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from timing import ROOT  # noqa: F401  (puts the repository on sys.path)

from models import FAMILIES  # noqa: E402
from models.core import train as training  # noqa: E402

PLAIN = {"ema_decay": 0.0, "lr_decay": "none", "min_snr_gamma": 0.0}
CONVERGENCE = {"ema_decay": 0.999, "lr_decay": "cosine", "min_snr_gamma": 5.0}


def steps_per_s(family, config, steps: int) -> float:
    """Steps/s between the first and the last report of a ``steps``-step run of ``config``."""
    config = dataclasses.replace(config, steps=steps)
    marks = []
    every = max(1, steps // 5)
    with tempfile.TemporaryDirectory() as out:
        training.train(family, config, name="bench", out=out, log_every=every, checkpoint_every=10 * steps,
                       score_samples=0, on_progress=lambda p: marks.append((p.step, time.perf_counter())))
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--families", nargs="*", default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.steps} steps per run; steps/s")
    print(f"{'family':18} {'plain':>8} {'EMA + decay':>12} {'ratio':>6}  changed")
    for name in a.families or sorted(FAMILIES):
        family = FAMILIES[name]
        if "cpu" not in family.presets:
            print(f"{name:18} (no cpu preset)")
            continue
        config = family.config("cpu")
        fields = {f.name for f in dataclasses.fields(config)}
        plain = {k: v for k, v in PLAIN.items() if k in fields}
        tuned = {k: v for k, v in CONVERGENCE.items() if k in fields}
        if not tuned:
            before = steps_per_s(family, dataclasses.replace(config, **plain), a.steps)
            print(f"{name:18} {before:8.2f} {'—':>12} {'':>6}  (no EMA or decay fields)")
            continue
        before = after = 0.0
        for _ in range(a.repeats):
            before = max(before, steps_per_s(family, dataclasses.replace(config, **plain), a.steps))
            after = max(after, steps_per_s(family, dataclasses.replace(config, **tuned), a.steps))
        print(f"{name:18} {before:8.2f} {after:12.2f} {after / before:6.2f}  {', '.join(tuned)}")


if __name__ == "__main__":
    main()
