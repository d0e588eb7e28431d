"""GAN speed on this CPU: one training step (D then G) at batch 64 for the cpu and book presets,
BCE and WGAN-GP (5 critic steps), unconditional and class-conditional; sampling speed of the shipped
generator; and one GAN Lab step (2-D toy data, batch 256) on one thread.

    python bench/gan_speed.py [--threads N]
"""
import argparse

import torch

from timing import ROOT, median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core import checkpoint  # noqa: E402
from models.image import gan, gan2d  # noqa: E402
from models.core.family import seeded  # noqa: E402

CKPT = ROOT / "assets" / "checkpoints" / "gan_mnist.safetensors"


def train_step_ms(preset: str, runs: int, **overrides) -> float:
    config = gan.FAMILY.config(preset, **overrides)
    torch.manual_seed(0)
    model = gan.build(config)
    opts = gan.optimizers(model, config)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    return median_ms(lambda: gan.train_step(model, (x, y), config, opts), runs=runs, warmup=2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; G+D training step at batch 64")
    for preset, runs, overrides in [("cpu", 20, {}), ("cpu", 20, {"conditional": True}),
                                    ("cpu", 10, {"loss": "wgan-gp", "critic_steps": 5}), ("book", 5, {})]:
        ms = train_step_ms(preset, runs, **overrides)
        what = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "bce"
        print(f"  {preset:4s} {what:32s} {ms:7.1f} ms/step  {64 / ms * 1000:6.0f} images/s")
    if CKPT.exists():
        model, config, _ = checkpoint.load(CKPT)
        for n in (64, 1000):
            z = gan.noise(n, model.latent_dim, seeded(0))
            labels = torch.arange(n) % 10
            ms = median_ms(lambda: gan.generate(model, z, labels), runs=10)
            print(f"sampling gan_mnist, batch {n:4d}: {ms:7.1f} ms  ({n / ms * 1000:,.0f} samples/s)")
    with gan2d.one_thread():
        lab = gan2d.make_lab()
        ms = median_ms(lambda: gan2d.train_step(lab), runs=50)
    print(f"GAN Lab step (ring, batch 256, MLP 2×64, one thread): {ms:.1f} ms")


if __name__ == "__main__":
    main()
