"""Gibbs sampling and AIS speed on this CPU: block Gibbs sweeps v → h → v′ per second of a 784-500 RBM
(ours and, as a same-size reference in the same run, scikit-learn's ``BernoulliRBM.gibbs``), the
odd/even sweeps of a 784-500-500 DBM, one CD-1 / PCD-1 training step, and the seconds one AIS estimate
of log Z takes (100 runs; 1,000 and the paper's 14,500 temperatures, the latter extrapolated).

    python bench/gibbs_speed.py
"""
import numpy as np
import torch

from timing import median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core.family import seeded  # noqa: E402
from models.energy import ais, deep_boltzmann as deep, rbm  # noqa: E402

BATCH = 100
SWEEPS = 20


def main():
    torch.set_num_threads(2)
    g = seeded(0)
    model = rbm.RBM(784, 500)
    v = torch.bernoulli(torch.full((BATCH, 784), 0.2), generator=g)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; RBM 784-500, {BATCH} chains")

    def ours():
        x = v
        with torch.no_grad():
            for _ in range(SWEEPS):
                x = model.gibbs(x, g)[3]

    ms = median_ms(ours, runs=5) / SWEEPS
    print(f"RBM Gibbs sweeps (ours):          {1000 / ms:8.0f} sweeps/s of {BATCH} chains ({ms:.2f} ms each)")
    try:
        from sklearn.neural_network import BernoulliRBM

        ref = BernoulliRBM(n_components=500, random_state=0).fit(v.numpy()[:10])  # weights of the same shape
        ref.components_ = model.W.detach().numpy().T.astype(np.float64)
        ref.intercept_hidden_ = model.c.detach().numpy().astype(np.float64)
        ref.intercept_visible_ = model.b.detach().numpy().astype(np.float64)
        x0 = v.numpy().astype(np.float64)

        def sklearn():
            x = x0
            for _ in range(SWEEPS):
                x = ref.gibbs(x)

        ms_ref = median_ms(sklearn, runs=5) / SWEEPS
        print(f"reference, sklearn BernoulliRBM:  {1000 / ms_ref:8.0f} sweeps/s ({ms_ref:.2f} ms each, float64 numpy)")
    except ImportError:
        print("reference: scikit-learn is not installed")

    dbm = deep.DBM([784, 500, 500], BATCH)
    x = deep.start_states(dbm, BATCH, g)

    def dbm_sweeps():
        y = x
        with torch.no_grad():
            for _ in range(SWEEPS):
                y = deep.gibbs_sweep(dbm, y, g)

    ms_dbm = median_ms(dbm_sweeps, runs=3) / SWEEPS
    print(f"DBM 784-500-500 odd/even sweeps:  {1000 / ms_dbm:8.0f} sweeps/s ({ms_dbm:.2f} ms each)")

    for method in ("cd", "pcd"):
        cfg = rbm.FAMILY.config("cpu", method=method, k=1)
        m = rbm.FAMILY.build(cfg)
        opts = rbm.FAMILY.optimizers(m, cfg)
        batch = (v.reshape(-1, 1, 28, 28), None)
        step = median_ms(lambda: rbm.FAMILY.train_step(m, batch, cfg, opts), runs=10)
        print(f"{method.upper()}-1 training step, batch {BATCH}:  {step:8.1f} ms")

    with torch.no_grad():
        model.W.normal_(0, 0.05, generator=g)
    seconds = ais.log_partition(model.W, model.b, model.c, runs=100, betas=1000, generator=g).seconds
    print(f"AIS, 100 runs × 1,000 temperatures: {seconds:6.1f} s per estimate "
          f"(× 14,500 temperatures ≈ {seconds * 14.5:.0f} s)")


if __name__ == "__main__":
    main()
