"""Paint speed on this machine's CPU: seconds per style-transfer optimisation step (one loss
evaluation: VGG16 forward + backward through the five style layers and the content layer) at 256
and 512 px, for Adam and L-BFGS, and the time of one DeepDream octave.

    python bench/paint_speed.py [--threads 2] [--runs 3] [--sizes 256 512]

Prints figures only; never part of pass/fail. The load average is printed too: on a shared machine
the figures scale with it.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from timing import median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.paint import deepdream, pretrained, style_transfer  # noqa: E402

IMAGES = pretrained.FOLDER.parent.parent / "images"


def photo(name: str, side: int) -> torch.Tensor:
    return pretrained.fit(pretrained.read_image(IMAGES / f"{name}.jpg"), side)[0]


def style_step_s(side: int, optimizer: str, runs: int) -> float:
    """Median seconds per step (one loss evaluation) between snapshots of a run at one size."""
    cfg = style_transfer.StyleConfig(size=side, preview_size=0, steps=runs + 1, optimizer=optimizer, snapshot_every=1)
    snaps = style_transfer.transfer(photo("chelsea", side), photo("starry_night", side), cfg)
    step = next(snaps)["step"]  # the first step also builds the targets
    times, t = [], time.perf_counter()
    for snap in snaps:
        now = time.perf_counter()
        times.append((now - t) / max(1, snap["step"] - step))  # L-BFGS's line search may take several
        t, step = now, snap["step"]
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, load average {os.getloadavg()[0]:.1f}")
    for side in a.sizes:
        for opt in ("adam", "lbfgs"):
            print(f"style transfer {side} px, {opt}: {style_step_s(side, opt, a.runs):.2f} s per step")
    for side in a.sizes:
        x = photo("chelsea", side)
        cfg = deepdream.DreamConfig(octaves=1, iterations=10, max_loss=0, size=side)
        ms = median_ms(lambda: list(deepdream.dream(x, cfg)), runs=a.runs, warmup=1)
        print(f"DeepDream octave at {x.shape[-1]}×{x.shape[-2]} px, {cfg.iterations} iterations: {ms / 1000:.2f} s")
    x = photo("chelsea", 96)
    cfg = style_transfer.StyleConfig(size=96, preview_size=0, steps=5, snapshot_every=5)
    t = time.perf_counter()
    next(style_transfer.transfer(x, photo("starry_night", 96), cfg))
    print(f"style transfer: first 96 px preview (5 steps) after {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
