"""Scale-out through torchrun: training samples/s of the shared loop with 1 and 2 processes on this
machine's CPUs (gloo; the cores split between the processes), and with 1 and every GPU when there
are GPUs (NCCL), printed with the scaling ratio; then torch.compile against eager, and bf16 autocast
against fp32 on a GPU. Each figure is one real ``torchrun --standalone -m models.train`` run of a
preset, read from its JSON progress lines (the speed of the last report, warm-up excluded).

    python bench/ddp_scaling.py [--family vae] [--preset cpu] [--steps 300] [--compile]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

from timing import ROOT  # noqa: F401  (puts the repository on sys.path)


def speed(family: str, preset: str, steps: int, processes: int, threads: int, *extra: str) -> float:
    """Samples/s between the first and the last progress report of one torchrun run."""
    with tempfile.TemporaryDirectory() as runs:
        every = max(1, steps // 6)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "models.train", family, "--preset", preset, "--set", f"steps={steps}", "--name", "bench",
               "--out", f"{runs}/out", "--log-every", str(every), "--checkpoint-every", str(10 * steps),
               "--score-samples", "0", "--json-progress", *extra]
        env = {**os.environ, "STUDIO_RUNS": runs, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
        reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{\"step\"")]
    first, last = reports[0], reports[-1]
    seen = lambda r: r["images_per_s"] * r["elapsed"]  # noqa: E731  (examples so far)
    return (seen(last) - seen(first)) / (last["elapsed"] - first["elapsed"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="vae")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling on CPU)")
    a = p.parse_args()
    cores = os.cpu_count() or 1
    print(f"{a.family} --preset {a.preset}, {a.steps} steps per run, {cores} CPU cores")
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        one = speed(a.family, a.preset, a.steps, 1, cores)
        print(f"GPU  1 process : {one:8.0f} samples/s")
        if gpus > 1:
            many = speed(a.family, a.preset, a.steps, gpus, max(1, cores // gpus))
            print(f"GPU  {gpus} processes: {many:8.0f} samples/s  scaling ×{many / one:.2f} (ideal ×{gpus})")
        bf16 = speed(a.family, a.preset, a.steps, 1, cores, "--precision", "bf16")
        print(f"GPU  bf16 autocast: {bf16:8.0f} samples/s  ×{bf16 / one:.2f} of fp32")
        if a.compile:
            comp = speed(a.family, a.preset, a.steps, 1, cores, "--compile")
            print(f"GPU  torch.compile: {comp:8.0f} samples/s  ×{comp / one:.2f} of eager")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # then the CPU figures
    one = speed(a.family, a.preset, a.steps, 1, cores)
    print(f"CPU  1 process  × {cores} threads: {one:8.0f} samples/s")
    if cores >= 2:
        half = max(1, cores // 2)
        alone = speed(a.family, a.preset, a.steps, 1, half)
        print(f"CPU  1 process  × {half} threads: {alone:8.0f} samples/s  (a process's share of the cores)")
        two = speed(a.family, a.preset, a.steps, 2, half)
        print(f"CPU  2 processes × {half} threads: {two:8.0f} samples/s  scaling ×{two / one:.2f} against "
              f"1 process on all cores, ×{two / alone:.2f} against 1 on its share (ideal ×2)")
    if a.compile:
        comp = speed(a.family, a.preset, a.steps, 1, cores, "--compile")
        print(f"CPU  torch.compile, 1 process: {comp:8.0f} samples/s  ×{comp / one:.2f} of eager")


if __name__ == "__main__":
    main()
