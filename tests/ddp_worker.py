"""Worker for tests/test_distributed.py: trains tiny presets, alone (``python tests/ddp_worker.py OUT``)
or as one rank of ``torchrun --nproc_per_node=2 tests/ddp_worker.py OUT``, and writes each run's
per-step losses to OUT/NAME.history.json beside its checkpoint.

Two processes can only draw the same training noise as one process if the noise of each example is
fixed whatever process draws it, so this worker (and only it) replaces ``torch.randn``/``torch.rand``
calls made without a generator (the GAN's z, the VAE's ε) by draws for the whole global batch, of
which each rank keeps its own rows. With dropout and label noise at 0, what remains is exactly the
arithmetic the scale-out must reproduce: sharding, gradient averaging for every optimizer, EMA.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import torch

from models import FAMILIES
from models.core import train as training

RUNS = {  # name -> (family, tiny-preset overrides)
    "vae": ("vae", {}),
    "gan": ("gan", {"dropout": 0.0, "label_noise": 0.0, "ema_decay": 0.9}),
    "gpt": ("gpt", {"dropout": 0.0}),
    "cyclegan": ("cyclegan", {}),  # four networks, two optimizers, no noise, instance norm
}
STEPS = 4


def per_example_noise(draw):
    calls = itertools.count()

    def drawn(*size, generator=None, dtype=None, device=None, **kwargs):
        if generator is not None:
            return draw(*size, generator=generator, dtype=dtype, device=device, **kwargs)
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        w = training.world()
        full = draw((shape[0] * w.size, *shape[1:]), generator=torch.Generator().manual_seed(next(calls)),
                    dtype=dtype)
        return full[w.rank * shape[0]:(w.rank + 1) * shape[0]].to(device or "cpu")

    return drawn


def run(name: str, family: str, overrides: dict, out: Path, steps: int, resume: bool = False) -> None:
    fam = FAMILIES[family]
    config = fam.config("tiny", steps=steps, **overrides)
    result = training.train(fam, config, name=name, out=out, resume=resume, device="cpu", log_every=1,
                            checkpoint_every=2, score_samples=0)
    assert result.status == "finished", result.message
    if training.world().main:
        (out / f"{name}.history.json").write_text(json.dumps(result.history))


def main(out: str, *resumes: str) -> None:
    out = Path(out)
    training.init_distributed()
    torch.randn, torch.rand = per_example_noise(torch.randn), per_example_noise(torch.rand)
    for name, (family, overrides) in RUNS.items():
        run(name, family, overrides, out, STEPS)
    run("gpt_half", "gpt", RUNS["gpt"][1], out, STEPS // 2)  # a checkpoint to resume elsewhere
    for name in resumes:  # checkpoints another world size wrote, continued here
        run(name, "gpt", RUNS["gpt"][1], out, STEPS, resume=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
