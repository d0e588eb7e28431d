"""Langevin sampling speed of the deep EBM on this CPU: steps per second at batch 64 for the book's energy
network (16-32-64-64 swish convolutions, 32×32), through ``ebm.langevin`` (noise, clip, gradient clip,
blow-up check), beside a same-size reference in the same run: the bare loop in plain torch (the same
network, ``torch.autograd.grad`` and the two clamps, nothing else), so the sampler's own overhead shows.
A training step of the book's preset costs 60 of these steps plus one forward/backward of two batches.

    python bench/langevin_speed.py
"""
import torch

from timing import median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core.family import seeded  # noqa: E402
from models.energy import ebm  # noqa: E402

BATCH, STEPS = 64, 20


def bare(model, x, steps, step_size=10.0, noise=0.005, clip=0.03):
    for _ in range(steps):
        x = (x + noise * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x)
        x = (x.detach() - step_size * g.clamp(-clip, clip)).clamp(-1, 1)
    return x


def main():
    torch.set_num_threads(2)
    config = ebm.FAMILY.config("book")
    torch.manual_seed(0)
    model = ebm.build(config).eval()
    x = ebm.uniform(BATCH, seeded(0))
    params = sum(p.numel() for p in model.net.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; energy net {params / 1e3:.0f} k params, "
          f"batch {BATCH}, {STEPS} steps per run")
    run = lambda: ebm._last(ebm.langevin(model, x, STEPS, 10.0, 0.005, 0.03, every=STEPS))  # noqa: E731
    ours = median_ms(run, runs=3, warmup=1) / 1000
    ref = median_ms(lambda: bare(model, x, STEPS), runs=3, warmup=1) / 1000
    print(f"ebm.langevin:           {STEPS / ours:8.1f} steps/s ({BATCH * STEPS / ours:8.0f} image-steps/s)")
    print(f"reference, bare loop:   {STEPS / ref:8.1f} steps/s ({BATCH * STEPS / ref:8.0f} image-steps/s)")
    per_train_step = config.langevin_steps * ours / STEPS
    print(f"one book training step ≈ {config.langevin_steps} steps: {per_train_step:.2f} s of sampling "
          f"at batch {BATCH}")


if __name__ == "__main__":
    main()
