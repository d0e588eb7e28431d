"""C, the controller: one linear layer from what V and M know, ``[z, h]``, to the action.

    a = squash(W [z, h] + b),   steer = tanh(·), gas = (tanh(·) + 1) / 2, brake = clip(tanh(·), 0, 1)

(the paper's squashing). C is tiny on purpose (867 numbers with h, 99 with z alone): the world
knowledge lives in V and M, and so few parameters can be searched without gradients. CMA-ES
(Hansen 2016; PyPI ``cma``) keeps a Gaussian over the parameter vector; each *generation* it
draws a population of controllers, scores each by driving, and moves the mean and reshapes the
covariance towards the best. The score is the environment's reward, so nothing needs to be
differentiable, and M can stand in for the environment (training "in the dream").

Departures from the paper, for two CPU cores: the search starts from a least-squares fit of C to
a hand-written lane-keeping driver's actions (:class:`models.world.env.LaneKeeper`) instead of from
zero, episodes during the search are short and stop early when the car leaves the road or stops
collecting tiles, and the population is small; the shipped controller reads z alone (the paper's
"V only" variant, about 630 there), which CMA-ES can search in far fewer generations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.core.family import check_range
from models.world import env as E
from models.world import vision as V


@dataclass
class ControllerConfig:
    latent_dim: int = 32
    hidden: int = 256  # M's h size (used when use_h)
    use_h: bool = True  # the paper's C reads [z, h]; False is its "V only" variant
    population: int = 16  # CMA-ES candidates per generation (the paper: 64)
    generations: int = 30
    rollouts: int = 1  # tracks each candidate drives per generation (the paper: 16)
    steps: int = 300  # frames per search episode (a full one is 1000)
    sigma: float = 0.1  # CMA-ES's initial step size
    patience: int = 60  # frames without a new tile (or on the grass) before a search episode stops

    def validate(self):
        check_range("population", self.population, 2, 512)
        check_range("generations", self.generations, 1, 10_000)
        check_range("rollouts", self.rollouts, 1, 64)
        check_range("episode steps", self.steps, 10, E.MAX_STEPS)
        check_range("initial step size", self.sigma, 1e-4, 10.0)
        check_range("patience", self.patience, 5, E.MAX_STEPS)

    @property
    def inputs(self) -> int:
        return self.latent_dim + (self.hidden if self.use_h else 0)


PRESETS = {
    "book": {"population": 64, "rollouts": 16, "steps": 1000, "generations": 300},
    "cpu": {"use_h": False, "population": 8, "generations": 20, "steps": 250, "sigma": 0.05},
    "tiny": {"latent_dim": 4, "hidden": 8, "population": 2, "generations": 1, "steps": 10},
}


class Controller(nn.Module):
    def __init__(self, c: ControllerConfig):
        super().__init__()
        self.use_h = c.use_h
        self.linear = nn.Linear(c.inputs, 3)
        nn.init.zeros_(self.linear.weight), nn.init.zeros_(self.linear.bias)

    def features(self, z, h=None):
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
        if not self.use_h:
            return z
        h = torch.zeros(self.linear.in_features - len(z)) if h is None else torch.as_tensor(h).reshape(-1)
        return torch.cat([z, h])

    @torch.no_grad()
    def forward(self, z, h=None) -> torch.Tensor:
        return squash(self.linear(self.features(z, h)))


def build(config: ControllerConfig) -> Controller:
    return Controller(config)


def squash(y: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(y)
    return torch.stack([t[..., 0], (t[..., 1] + 1) / 2, t[..., 2].clamp(0, 1)], -1)


def unsquash(a: np.ndarray) -> np.ndarray:
    """Pre-activations that :func:`squash` maps (close) to actions ``a`` (N, 3), for least squares."""
    a = np.asarray(a, np.float64)
    y = np.empty_like(a)
    y[:, 0] = np.arctanh(np.clip(a[:, 0], -0.95, 0.95))
    y[:, 1] = np.arctanh(np.clip(2 * a[:, 1] - 1, -0.95, 0.95))
    y[:, 2] = np.where(a[:, 2] > 0, np.arctanh(np.clip(a[:, 2], 0, 0.95)), -0.3)
    return y


def get_vector(model: Controller) -> np.ndarray:
    return torch.cat([model.linear.weight.reshape(-1), model.linear.bias]).detach().double().numpy()


def set_vector(model: Controller, x) -> Controller:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    w = model.linear.weight
    if x.numel() != w.numel() + 3:
        raise ValueError(f"A controller vector has {w.numel() + 3} numbers; got {x.numel()}.")
    with torch.no_grad():
        w.copy_(x[:w.numel()].view_as(w)), model.linear.bias.copy_(x[w.numel():])
    return model


def fit_actions(model: Controller, features: np.ndarray, actions: np.ndarray, ridge: float = 1.0) -> Controller:
    """Least squares (ridge) of C's pre-activations on ``features`` (N, inputs) to ``actions`` (N, 3)."""
    X = np.concatenate([features, np.ones((len(features), 1))], 1)
    Y = unsquash(actions)
    A = X.T @ X + ridge * np.eye(X.shape[1])
    W = np.linalg.solve(A, X.T @ Y)  # (inputs + 1, 3)
    return set_vector(model, np.concatenate([W[:-1].T.reshape(-1), W[-1]]))


class Driver:
    """C driving from frames: V encodes each frame to ``mu``, M (when given) tracks h."""

    def __init__(self, controller: Controller, vision: V.Vision, memory=None):
        from models.world.memory import Tracker

        self.c, self.v = controller, vision
        self.tracker = Tracker(memory) if (memory is not None and controller.use_h) else None
        self.z = self.h = None
        self.action = None

    def __call__(self, frame) -> np.ndarray:
        self.z = V.encode(self.v, E.to_tensor(frame)[None])[0][0]
        self.h = self.tracker.h if self.tracker else None
        a = self.c(self.z, self.h)
        if self.tracker:
            self.tracker.step(self.z, a)
        self.action = a.numpy().astype(np.float32)
        return self.action


def search_episode(driver: Driver, seed: int, steps: int, patience: int, env) -> float:
    """A short episode that stops once ``patience`` frames pass without a new tile: its score."""
    obs, _ = env.reset(seed=int(seed))
    total, idle = 0.0, 0
    for t in range(steps):
        obs, r, term, trunc, _ = env.step(driver(E.frame64(obs)))
        total += r
        idle = 0 if r > 0 else idle + 1
        if term or trunc or (t > 50 and idle >= patience):
            break
    return total


@dataclass
class Generation:
    generation: int
    scores: list  # each candidate's mean score
    best: float
    mean: float
    seconds: float


def cma_search(controller: Controller, vision, memory, config: ControllerConfig, seed: int = 0, env=None,
               start_generation: int = 0, should_stop=lambda: False):
    """CMA-ES on C's parameters in the real environment, yielding a :class:`Generation` each
    generation; ``controller`` ends holding the search's mean (its best guess). All candidates of
    a generation drive the same tracks (common random numbers), new tracks each generation."""
    import time

    import cma

    own = env is None
    env = env or E.make()
    x0 = get_vector(controller)
    es = cma.CMAEvolutionStrategy(x0, config.sigma, {"popsize": config.population, "seed": seed + 1 + start_generation,
                                                     "verbose": -9, "CMA_diagonal": len(x0) > 200})
    probe = build_like(controller)
    try:
        for g in range(start_generation, start_generation + config.generations):
            if should_stop():
                return
            t0 = time.time()
            tracks = [seed * 100_000 + g * config.rollouts + i for i in range(config.rollouts)]
            xs = es.ask()
            scores = []
            for x in xs:
                set_vector(probe, x)
                scores.append(float(np.mean([search_episode(Driver(probe, vision, memory), s, config.steps,
                                                            config.patience, env) for s in tracks])))
            es.tell(xs, [-s for s in scores])
            set_vector(controller, es.mean)
            yield Generation(g + 1, scores, max(scores), float(np.mean(scores)), time.time() - t0)
    finally:
        if own:
            env.close()


def build_like(controller: Controller) -> Controller:
    c = Controller.__new__(Controller)
    nn.Module.__init__(c)
    c.use_h = controller.use_h
    c.linear = nn.Linear(controller.linear.in_features, 3)
    return c
