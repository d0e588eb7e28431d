"""A real CarRacing episode driven one frame at a time, with what V and M make of each frame: the
frame, V's code ``mu`` and its reconstruction, M's hidden state h, the action and the running
reward. The studio steps it (controller, or a person's sliders); tests and benches use it too."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.world import env as E
from models.world import vision as V
from models.world.memory import Tracker


@dataclass
class Record:
    t: int
    frame: np.ndarray  # (96, 96, 3) uint8, what the environment renders
    frame64: np.ndarray  # (64, 64, 3) uint8, what V sees
    z: torch.Tensor  # (Z,) V's mu
    h: torch.Tensor  # (H,) M's hidden state before this frame's action
    action: np.ndarray | None  # the last action taken (None at the start)
    reward: float  # running total
    done: bool


class Episode:
    """``step(action=None)``: the controller's action when none is given."""

    def __init__(self, seed: int, vision, memory=None, controller=None, max_steps: int = E.MAX_STEPS):
        if not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"Track seed must be a whole number from 0 to {2**31 - 1}; got {seed!r}.")
        self.seed, self.vision, self.memory, self.controller = seed, vision, memory, controller
        self.env = E.make()
        obs, _ = self.env.reset(seed=seed)
        self.tracker = Tracker(memory) if memory is not None else None
        self.max_steps = max_steps
        self.t, self.total, self.done, self.action = 0, 0.0, False, None
        self._see(obs)

    def _see(self, obs):
        self.frame = obs
        self.frame64 = E.frame64(obs)
        self.z = V.encode(self.vision, E.to_tensor(self.frame64)[None])[0][0]
        self.h = self.tracker.h.clone() if self.tracker else torch.zeros(0)

    def record(self) -> Record:
        return Record(self.t, self.frame, self.frame64, self.z, self.h, self.action, self.total, self.done)

    def controller_action(self) -> np.ndarray:
        if self.controller is None:
            raise ValueError("No controller is loaded: pick one, or drive with the sliders.")
        h = self.h if (self.controller.use_h and len(self.h)) else None
        return self.controller(self.z, h).numpy().astype(np.float32)

    def step(self, action=None) -> Record:
        if self.done:
            raise ValueError(f"The episode is over (frame {self.t}, score {self.total:.1f}): start a new one.")
        a = self.controller_action() if action is None else E.check_action(action)
        if self.tracker:
            self.tracker.step(self.z, a)
        obs, r, term, trunc, _ = self.env.step(a)
        self.t += 1
        self.total += float(r)
        self.action = a
        self.done = bool(term or trunc or self.t >= self.max_steps)
        self._see(obs)
        return self.record()

    def close(self):
        self.env.close()
