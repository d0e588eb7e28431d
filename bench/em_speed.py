"""EM speed on this machine's CPU: iterations/s of the step-by-step Gaussian mixture
(models/density/gmm.py) at 10k 2-D points, beside scikit-learn's GaussianMixture on the same data
from the same start, as a same-size reference.

    python bench/em_speed.py [--points 10000] [--k 3 5 10] [--iterations 50] [--threads 2]

On a machine shared with other busy processes, torch's 2-thread elementwise kernels wait on each
other far more than numpy's single-threaded ones: compare with ``--threads 1``.

Prints figures only; never part of pass/fail.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import timing  # noqa: F401  (puts the repository on sys.path)

from models.core.family import seeded  # noqa: E402
from models.density import gaussian, gmm  # noqa: E402


def ours(x, k: int, iterations: int) -> tuple[float, float]:
    em = gmm.EM(x, k, "k-means++", seeded(0))
    em.step()  # warm-up
    t = time.perf_counter()
    for _ in range(iterations):
        em.step()
    return iterations / (time.perf_counter() - t), em.log_likelihood() / len(x)


def sklearn(x, k: int, iterations: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    em = gmm.EM(x, k, "k-means++", seeded(0))  # the same start
    sk = GaussianMixture(k, covariance_type="full", max_iter=iterations, tol=0, reg_covar=em.reg,
                         weights_init=em.weights.numpy(), means_init=em.means.numpy(),
                         precisions_init=np.linalg.inv(em.covs.numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        sk.fit(x.numpy())
        wall = time.perf_counter() - t
    return sk.n_iter_ / wall, sk.score(x.numpy())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--k", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = gaussian.dataset("three blobs", seeded(0), args.points).points
    print(f"{args.points:,} points in 2-D (three blobs), {args.iterations} iterations, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"{'k':>3}  {'ours it/s':>10}  {'sklearn it/s':>12}  {'ours ll/pt':>10}  {'sklearn ll/pt':>13}")
    for k in args.k:
        a, la = ours(x, k, args.iterations)
        b, lb = sklearn(x, k, args.iterations)
        print(f"{k:>3}  {a:>10.1f}  {b:>12.1f}  {la:>10.4f}  {lb:>13.4f}")


if __name__ == "__main__":
    main()
