"""VAE speed on this machine's CPU: training throughput and the latent-map latencies the studio needs.

    python bench/vae_speed.py [--steps 300] [--threads 2]

Prints figures only; never part of pass/fail. Training uses the shared loop (models.core.train.train)
with the book config, so the images/s is what the studio's progress bar would show; its files go
to a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from timing import median_ms  # noqa: E402  (also puts the repository on sys.path)

from models import FAMILIES  # noqa: E402
from models.core import checkpoint, data  # noqa: E402
from models.image import vae  # noqa: E402
from models.core import train as training  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "vae_mnist.safetensors"


def train_speed(steps: int) -> tuple[float, float]:
    """Images/s of the book-config VAE over ``steps`` steps at batch 128 on MNIST, and wall seconds."""
    fam = FAMILIES["vae"]
    config = fam.config("book", steps=steps)
    data.images(config.dataset, "train")  # load the data outside the timing
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        training.STATE = Path(tmp) / "state"
        t = time.perf_counter()
        training.train(fam, config, name="bench", out=Path(tmp), device="cpu", log_every=steps,
                       checkpoint_every=10 * steps, score_samples=0, on_progress=reports.append)
        wall = time.perf_counter() - t
    return reports[-1].images_per_s, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps at batch 128")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f} (figures are only meaningful on an idle machine)")

    model, config, _ = checkpoint.load(SHIPPED)
    grid = vae.latent_grid(30, 3.0, config.latent_dim)  # (900, 2)
    one = grid[:1]
    grid_ms = median_ms(lambda: vae.decode(model, grid), runs=20)
    one_ms = median_ms(lambda: vae.decode(model, one), runs=200)
    verdict = "ok" if grid_ms < 200 else "SLOW"
    print(f"decode 30×30 latent grid (vae_mnist): {grid_ms:7.1f} ms median of 20   target 30×30 grid < 200 ms: {verdict}")
    print(f"decode one image (vae_mnist):         {one_ms:7.2f} ms median of 200")

    ips, wall = train_speed(a.steps)
    print(f"train VAE book config, batch 128:     {ips:7.0f} images/s over {a.steps} steps "
          f"({wall:.1f} s with the held-out evaluation; a 14,000-step book run ≈ {14_000 * 128 / ips / 60:.0f} min)")


if __name__ == "__main__":
    main()
