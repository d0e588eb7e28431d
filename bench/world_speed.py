"""World Models speeds on this machine: environment steps/s (gymnasium's rendering and the culled
one), V encode frames/s, M dream steps/s and one CMA-ES generation of the shipped-size search.

    OMP_NUM_THREADS=1 python bench/world_speed.py
"""
from __future__ import annotations

import time

import numpy as np
import torch
from timing import ROOT  # noqa: F401  (puts the repository on sys.path)

from models.core.family import seeded
from models.world import SHIPPED, load
from models.world import controller as C
from models.world import env as E
from models.world import memory as M
from models.world import vision as V


def per_s(n, fn):
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def env_steps(env, n=300):
    env.reset(seed=0)
    a = np.array([0.0, 0.3, 0.0], np.float32)
    return per_s(n, lambda: [env.step(a) for _ in range(n)])


def main():
    E.check_available()
    import gymnasium as gym

    print(f"env steps/s, gymnasium's rendering: {env_steps(gym.make(E.ENV_ID, render_mode='rgb_array')):.0f}")
    print(f"env steps/s, culled rendering (models.world.env.make): {env_steps(E.make()):.0f}")
    vis, _, _ = load(SHIPPED / "world_vision.safetensors", "vision")
    with np.load("assets/world/start_frames.npz") as f:
        x = E.to_tensor(np.repeat(f["frames"], 32, 0))
    print(f"V encode frames/s, batch 256: {per_s(len(x), lambda: V.encode(vis, x)):.0f}")
    one = x[:1]
    print(f"V encode frames/s, one at a time (driving): {per_s(100, lambda: [V.encode(vis, one) for _ in range(100)]):.0f}")
    mem, _, _ = load(SHIPPED / "world_memory.safetensors", "memory")
    acts = np.tile(np.array([0, 0.3, 0], np.float32), (200, 1))
    print(f"M dream steps/s (batch 1, with sampling): "
          f"{per_s(200, lambda: list(M.dream(mem, torch.zeros(32), acts, 1.0, seeded(0)))):.0f}")
    cfg = C.ControllerConfig(use_h=False, population=8, generations=1, steps=250, sigma=0.05, patience=50)
    ctl = C.build(cfg)
    t = time.perf_counter()
    list(C.cma_search(ctl, vis, None, cfg))
    print(f"CMA-ES generation (population 8, episodes up to 250 frames, untrained C): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
