"""PixelCNN sampling speed: seconds per 28×28 sample at batch 1 and 16, with the cache of activations
(gated stacks: the vertical stack once per row, one small matrix product per layer per pixel) and
without it (the whole network once per pixel, on the rows so far), for the shipped checkpoint.

    python bench/pixelcnn_speed.py [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

import timing  # noqa: F401  (puts the repository on sys.path)
from models.core import checkpoint
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.density import pixelcnn


def seconds_per_sample(model, n: int, cache: bool, repeats: int = 1) -> float:
    best = float("inf")
    for k in range(repeats):
        t0 = time.perf_counter()
        last(pixelcnn.sample(model, n, generator=seeded(k), cache=cache, every=784))
        best = min(best, time.perf_counter() - t0)
    return best / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--checkpoint", default=str(SHIPPED / "pixelcnn_mnist.safetensors"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, config, _ = checkpoint.load(a.checkpoint)
    print(f"{a.checkpoint}: {pixelcnn.describe(vars(config))}, {a.threads} threads")
    for n in (1, 16):
        cached = seconds_per_sample(model, n, cache=True, repeats=2)
        full = seconds_per_sample(model, n, cache=False)
        print(f"batch {n:2d}: {cached:.3f} s per sample with the cache, {full:.3f} s without "
              f"({full / cached:.1f}× faster)")


if __name__ == "__main__":
    main()
