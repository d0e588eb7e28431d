"""Gradient descent on the Rosenbrock function, with torch's autograd (Deep Learning from Scratch 5,
ch. 6, where PyTorch is introduced):

    f(x₀, x₁) = 100 (x₁ - x₀²)² + (1 - x₀)²

Its minimum is f(1, 1) = 0, at the end of a long, curved, nearly flat valley: the gradient points
mostly across the valley, so plain gradient descent zig-zags down its walls and then crawls along
its floor. The book starts at (0, 2) with learning rate 0.001 for 10,000 iterations::

    x ← x - lr · ∇f(x)          (∇f from ``loss.backward()``)

Momentum and Adam (``torch.optim``) are offered beside it, to see what they change. A step size
that is too large makes the iterates fly off; :func:`descend` then stops and says at which step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BOOK = {"x0": 0.0, "x1": 2.0, "lr": 0.001, "iterations": 10_000}
OPTIMIZERS = ("gradient descent", "momentum 0.9", "Adam")
MAX_ITERATIONS = 50_000
LIMIT = 1e6  # |x| beyond this counts as diverged
EXTENT = ((-2.0, 2.0), (-1.0, 3.0))  # the plane drawn: x₀ range, x₁ range


def rosenbrock(x0, x1):
    return 100 * (x1 - x0 ** 2) ** 2 + (1 - x0) ** 2


def gradient_at(x0: float, x1: float) -> tuple[float, tuple[float, float]]:
    """f and ∇f at a point, by autograd (not by the formula)."""
    for name, v in (("x₀", x0), ("x₁", x1)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > LIMIT:
            raise ValueError(f"{name} must be a finite number within ±{LIMIT:g}; got {v!r}.")
    x = torch.tensor([float(x0), float(x1)], dtype=torch.float64, requires_grad=True)
    y = rosenbrock(x[0], x[1])
    y.backward()
    return y.item(), (x.grad[0].item(), x.grad[1].item())


@dataclass
class Path:
    """The iterates of one descent: points (n + 1, 2), f at each, and where it diverged, if it did."""

    points: torch.Tensor
    values: torch.Tensor
    diverged_at: int | None = None

    @property
    def end(self) -> tuple[float, float]:
        return float(self.points[-1, 0]), float(self.points[-1, 1])


def check(x0, x1, lr, iterations, optimizer) -> None:
    gradient_at(x0, x1)  # checks the start
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 1 or not math.isfinite(lr):
        raise ValueError(f"Learning rate must be a number > 0 and ≤ 1; got {lr!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"Iterations must be a whole number from 1 to {MAX_ITERATIONS:,}; got {iterations!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Optimizer must be one of {OPTIMIZERS}; got {optimizer!r}.")


def descend(x0: float = 0.0, x1: float = 2.0, lr: float = 0.001, iterations: int = 10_000,
            optimizer: str = "gradient descent") -> Path:
    """Minimise the Rosenbrock function from (x0, x1): the book's loop (``backward``, then
    ``x -= lr * grad``) or a ``torch.optim`` optimizer doing the same update its own way."""
    check(x0, x1, lr, iterations, optimizer)
    # two scalar leaves, not one 2-vector: indexing a vector costs more than the maths here
    p0 = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    p1 = torch.tensor(float(x1), dtype=torch.float64, requires_grad=True)
    opt = None
    if optimizer == "momentum 0.9":
        opt = torch.optim.SGD([p0, p1], lr=lr, momentum=0.9)
    elif optimizer == "Adam":
        opt = torch.optim.Adam([p0, p1], lr=lr)
    rows = []  # (x0, x1, f) per iterate
    diverged = None
    for i in range(iterations + 1):
        y = rosenbrock(p0, p1)
        row = (p0.item(), p1.item(), y.item())
        rows.append(row)
        if not all(math.isfinite(v) for v in row) or max(abs(row[0]), abs(row[1])) > LIMIT:
            diverged = i
            break
        if i == iterations:
            break
        if opt is None:  # the book's loop: backward, then x -= lr * grad
            p0.grad = p1.grad = None
            y.backward()
            with torch.no_grad():
                p0 -= lr * p0.grad
                p1 -= lr * p1.grad
        else:
            opt.zero_grad()
            y.backward()
            opt.step()
    t = torch.tensor(rows, dtype=torch.float64)
    return Path(t[:, :2], t[:, 2], diverged_at=diverged)
