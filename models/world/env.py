"""The real environment: gymnasium's CarRacing-v3, its frames at 64×64, and random rollouts.

World Models (Ha & Schmidhuber 2018; Foster 1st ed. ch. 8) learn from what a car *sees*: each
96×96 frame of CarRacing is cropped above the dashboard (84 rows, as the paper's code does) and
resized to 64×64 for V. An action is ``[steer ∈ [-1, 1], gas ∈ [0, 1], brake ∈ [0, 1]]``; the reward
is −0.1 per frame plus 1000/N for each of the track's N tiles the car visits first, so driving the
whole track in under 1000 frames scores about 900.

gymnasium, box2d and pygame are *optional* dependencies: :func:`missing` names what is not
installed and :func:`install_hint` says how to install it, so the rest of the studio works
without them.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ENV_ID = "CarRacing-v3"
FRAME = 64  # V's input size, as in the paper
CROP = 84  # rows above CarRacing's dashboard
MAX_STEPS = 1000  # a full episode (gymnasium's time limit)
REQUIREMENTS = {"gymnasium": "gymnasium==1.4.0", "Box2D": "box2d==2.3.10", "pygame": "pygame==2.6.1"}
EVAL_SEEDS = tuple(range(1000, 1010))  # the fixed tracks every controller card is scored on


def missing() -> list[str]:
    """The pip requirements of the optional packages that are not installed (empty when all are)."""
    def absent(module):
        try:
            return importlib.util.find_spec(module) is None
        except (ValueError, ImportError):  # a module hidden with sys.modules[name] = None
            return True

    return [req for module, req in REQUIREMENTS.items() if absent(module)]


def install_hint() -> str:
    """What to run to make the World Models tab work, or "" when nothing is missing."""
    need = missing()
    if not need:
        return ""
    return ("World Models needs the optional CarRacing packages, which are not installed: "
            f"`pip install {' '.join(need)}` (or `pip install -r requirements.txt`), then restart the studio.")


def check_available() -> None:
    hint = install_hint()
    if hint:
        raise ValueError(hint)


def make(seed: int | None = None):
    """A CarRacing-v3 environment that renders frames off-screen (no window)."""
    check_available()
    import gymnasium as gym

    env = gym.make(ENV_ID, render_mode="rgb_array")
    _cull_offscreen(env.unwrapped)
    return env


def _cull_offscreen(car_racing) -> None:
    """Make CarRacing draw only the polygons that touch the screen: the same pixels, several times faster.

    gymnasium transforms all ~800 grass and road polygons in Python every frame and draws every one
    within a generous margin of the screen. Here one numpy pass transforms all corners at once and
    keeps only the polygons whose bounding box meets the 1000×800 drawing surface (plus a pixel for
    anti-aliasing); the others cannot change a pixel of it, and the drawing order stays the same.
    """
    from gymnasium.envs.box2d import car_racing as cr

    cache = {}
    grass = [[(cr.GRASS_DIM * x + cr.GRASS_DIM, cr.GRASS_DIM * y), (cr.GRASS_DIM * x, cr.GRASS_DIM * y),
              (cr.GRASS_DIM * x, cr.GRASS_DIM * y + cr.GRASS_DIM),
              (cr.GRASS_DIM * x + cr.GRASS_DIM, cr.GRASS_DIM * y + cr.GRASS_DIM)]
             for x in range(-20, 20, 2) for y in range(-20, 20, 2)]

    def corners(key, polys, vertices=lambda p: p):
        if cache.get(key, (None,))[0] is not polys:  # a new track: its corners once
            arr = np.array([[tuple(v) for v in vertices(p)] for p in polys], dtype=np.float64).reshape(-1, 4, 2)
            cache[key] = (polys, arr)
        return cache[key][1]  # (N, 4, 2) world coordinates

    def on_screen(points, zoom, translation, angle):
        if len(points) == 0:
            return []
        c, s = math.cos(angle), math.sin(angle)
        x = (points[..., 0] * c - points[..., 1] * s) * zoom + translation[0]
        y = (points[..., 0] * s + points[..., 1] * c) * zoom + translation[1]
        keep = ((x.max(1) >= -2) & (x.min(1) <= cr.WINDOW_W + 2) & (y.max(1) >= -2) & (y.min(1) <= cr.WINDOW_H + 2))
        return keep.nonzero()[0]

    def render_road(zoom, translation, angle):
        self = car_racing
        b = cr.PLAYFIELD
        self._draw_colored_polygon(self.surf, [(b, b), (b, -b), (-b, -b), (-b, b)], self.bg_color, zoom,
                                   translation, angle, clip=False)
        for i in on_screen(corners("grass", grass), zoom, translation, angle):
            self._draw_colored_polygon(self.surf, grass[i], self.grass_color, zoom, translation, angle)
        road = self.road_poly
        for i in on_screen(corners("road", road, lambda p: p[0]), zoom, translation, angle):
            poly, color = road[i]
            self._draw_colored_polygon(self.surf, [(p[0], p[1]) for p in poly], [int(c) for c in color], zoom,
                                       translation, angle)

    car_racing._render_road = render_road


def frame64(obs: np.ndarray) -> np.ndarray:
    """A (96, 96, 3) uint8 frame -> V's (64, 64, 3) uint8 view (dashboard cropped, area-resized)."""
    x = torch.from_numpy(np.ascontiguousarray(obs[:CROP])).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(FRAME, FRAME), mode="area")
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., 64, 64, 3) uint8 -> (..., 3, 64, 64) float in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames)).float() / 255.0
    return x.movedim(-1, -3)


def check_action(action) -> np.ndarray:
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise ValueError(f"An action is three finite numbers [steer, gas, brake]; got {action!r}.")
    for name, v, lo, hi in (("steer", a[0], -1, 1), ("gas", a[1], 0, 1), ("brake", a[2], 0, 1)):
        if not lo <= v <= hi:
            raise ValueError(f"{name} must be between {lo} and {hi}; got {v}.")
    return a.astype(np.float32)


class RandomPolicy:
    """The paper's random driver for collecting V's data: an action held for a random few frames,
    steering uniform, gas more often than brake (so the car moves and sees the track)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.left, self.action = rng, 0, np.zeros(3, np.float32)

    def __call__(self, obs) -> np.ndarray:
        if self.left <= 0:
            r = self.rng
            self.action = np.array([r.uniform(-1, 1), r.uniform(0, 1) if r.random() < 0.8 else 0.0,
                                    r.uniform(0, 0.3) if r.random() < 0.1 else 0.0], np.float32)
            self.left = int(r.integers(1, 12))
        self.left -= 1
        return self.action


def uniform_random(rng: np.random.Generator):
    """The random policy the controller card compares against: a fresh uniform action every frame."""
    return lambda obs: np.array([rng.uniform(-1, 1), rng.uniform(0, 1), rng.uniform(0, 1)], np.float32)


def full_gas(obs) -> np.ndarray:
    """The card's other baseline: full gas, no steering."""
    return np.array([0.0, 1.0, 0.0], np.float32)


@dataclass
class Rollout:
    frames: np.ndarray  # (T, 64, 64, 3) uint8: what the car saw before each action
    actions: np.ndarray  # (T, 3) float32
    rewards: np.ndarray  # (T,) float32
    seed: int

    @property
    def score(self) -> float:
        return float(self.rewards.sum())


def rollout(policy, seed: int, steps: int = MAX_STEPS, env=None) -> Rollout:
    """Run ``policy(frame64) -> action`` on the track of ``seed`` for up to ``steps`` frames."""
    own = env is None
    env = env or make()
    try:
        obs, _ = env.reset(seed=int(seed))
        frames, actions, rewards = [], [], []
        for _ in range(steps):
            f = frame64(obs)
            a = np.asarray(policy(f), np.float32)
            obs, r, term, trunc, _ = env.step(a)
            frames.append(f), actions.append(a), rewards.append(r)
            if term or trunc:
                break
    finally:
        if own:
            env.close()
    return Rollout(np.stack(frames), np.stack(actions), np.asarray(rewards, np.float32), int(seed))


class LaneKeeper:
    """A hand-written driver that reads only the 64×64 frame: steer towards the middle of the road
    a little ahead of the car, ease off the gas in bends. It is the teacher whose actions give the
    controller a starting point (a least-squares fit on V's codes) before CMA-ES improves it."""

    def __init__(self, gain: float = 2.5, gas: float = 0.35, noise: float = 0.0, rng=None):
        self.gain, self.gas, self.noise = gain, gas, noise
        self.rng = rng or np.random.default_rng(0)
        self.t = 0

    @staticmethod
    def road(frame: np.ndarray) -> np.ndarray:
        f = frame.astype(np.int16)
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        return (g < 150) & (abs(r - g) < 25) & (abs(b - g) < 25) & (g > 60)

    def __call__(self, frame) -> np.ndarray:
        road = self.road(frame)
        cols = np.arange(road.shape[1])

        def centre(rows):
            m = road[rows]
            n = m.sum()
            return (m * cols).sum() / n if n else None

        self.t += 1
        near, far = centre(slice(36, 46)), centre(slice(22, 32))
        near = near if near is not None else (far if far is not None else centre(slice(0, 48)))
        if near is None:  # no road in sight: creep forward
            return np.array([0.0, 0.1, 0.0], np.float32)
        far = near if far is None else far
        err, bend = (near - 31.5) / 32, (far - near) / 32
        steer = float(np.clip(self.gain * err + 2.0 * bend, -1, 1))
        gas = self.gas * max(0.0, 1 - 4 * abs(bend) - 2 * abs(err)) if self.t > 50 else 0.0
        brake = 0.1 if abs(bend) > 0.3 else 0.0
        a = np.array([steer, gas, brake], np.float32)
        if self.noise:
            a[0] = np.clip(a[0] + self.rng.normal(0, self.noise), -1, 1)
        return a


def scores(make_policy, seeds=EVAL_SEEDS, steps: int = MAX_STEPS, env=None) -> list[float]:
    """Episode scores of ``make_policy(seed)`` (a fresh policy per track) on each track seed."""
    own = env is None
    env = env or make()
    try:
        return [rollout(make_policy(s), s, steps, env=env).score for s in seeds]
    finally:
        if own:
            env.close()


def baselines(seeds=EVAL_SEEDS, steps: int = MAX_STEPS) -> dict:
    """The controller card's comparison: a uniform random policy and "full gas, no steering"."""
    rand = scores(lambda s: uniform_random(np.random.default_rng(s)), seeds, steps)
    gas = scores(lambda s: full_gas, seeds, steps)
    return {"random": rand, "full_gas": gas, "random_mean": float(np.mean(rand)), "full_gas_mean": float(np.mean(gas))}
