"""Langevin chains on 2-D energies, where the whole landscape can be drawn: the energy as a heatmap and
each chain's path over it.

Three energies with minima known in closed form (so a test can check that chains end there):

* ``four wells``: ``E(x) = −log Σₖ exp(−‖x − μₖ‖² / 2s²)``, a mixture of four Gaussians at (±1, ±1);
  its minima sit at (almost exactly) the four centres;
* ``double well``: ``E(x) = 4 (x₁² − 1)² + 2 x₂²``, minima at (±1, 0) and a saddle at the origin;
* ``ring``: ``E(x) = (‖x‖ − 1)² / 2s²``, minimal on the whole unit circle.

The same :func:`models.energy.ebm.langevin` runs here as on images, without clipping: with noise 0 it
is gradient descent and every chain slides into the nearest well; with ``σ = √(2η)`` it samples
``p ∝ exp(−E)`` and chains hop between wells now and then. Past ``η = 2 / curvature`` the descent
overshoots further each step and the chain blows up (the double well's walls are steepest).
"""
from __future__ import annotations

import math

import torch

from models.core.family import check_range
from models.energy.ebm import Snapshot, langevin

EXTENT = 2.5  # the plane drawn: [-EXTENT, EXTENT]²
WELL_S = 0.35  # width of each Gaussian well
RING_S = 0.15  # width of the ring
CENTRES = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


def four_wells(x: torch.Tensor) -> torch.Tensor:
    d2 = (x[:, None, :] - CENTRES.to(x)).pow(2).sum(-1)  # (B, 4)
    return -torch.logsumexp(-d2 / (2 * WELL_S ** 2), dim=1)


def double_well(x: torch.Tensor) -> torch.Tensor:
    return 4 * (x[:, 0].pow(2) - 1).pow(2) + 2 * x[:, 1].pow(2)


def ring(x: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1).add(1e-12).sqrt() - 1).pow(2) / (2 * RING_S ** 2)


ENERGIES = {"four wells": four_wells, "double well": double_well, "ring": ring}


def energy_fn(name: str):
    if name not in ENERGIES:
        raise ValueError(f"Unknown 2-D energy {name!r}; choose from {list(ENERGIES)}.")
    return ENERGIES[name]


def distance_to_minimum(name: str, x: torch.Tensor) -> torch.Tensor:
    """How far each point (B, 2) is from the nearest minimum of energy ``name``."""
    energy_fn(name)
    if name == "four wells":
        return (x[:, None, :] - CENTRES).norm(dim=-1).min(1).values
    if name == "double well":
        return (x[:, None, :] - torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).norm(dim=-1).min(1).values
    return (x.norm(dim=1) - 1).abs()


def starts(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` chain starts uniform over the plane drawn."""
    check_range("number of chains", n, 1, 1000)
    return (torch.rand(n, 2, generator=generator) * 2 - 1) * (EXTENT - 0.3)


def chains(name: str, n: int, steps: int, step_size: float, noise: float, generator: torch.Generator,
           x0: torch.Tensor | None = None) -> list[Snapshot]:
    """Every state of ``n`` chains on energy ``name`` (no clipping: a chain may leave the plane, and a
    step size that overshoots stops it with a message)."""
    energy = energy_fn(name)
    x = starts(n, generator) if x0 is None else torch.as_tensor(x0, dtype=torch.float32).reshape(-1, 2)
    return list(langevin(energy, x, steps, step_size, noise, 0.0, bounds=None, generator=generator,
                         blow_up=1e3))


def heatmap(name: str, resolution: int = 100) -> torch.Tensor:
    """E on a (resolution, resolution) grid over [-EXTENT, EXTENT]², row 0 at the top (x₂ = EXTENT)."""
    check_range("resolution", resolution, 8, 400)
    s = torch.linspace(-EXTENT, EXTENT, resolution)
    x2, x1 = torch.meshgrid(s.flip(0), s, indexing="ij")
    with torch.no_grad():
        return energy_fn(name)(torch.stack([x1.reshape(-1), x2.reshape(-1)], 1)).reshape(resolution, resolution)


def langevin_noise(step_size: float) -> float:
    """The noise scale that makes the chain sample exp(−E) (σ = √(2η)), for the page's hint."""
    return math.sqrt(2 * max(step_size, 0.0))
