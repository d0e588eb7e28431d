"""The maths of the Gaussians & EM tab: densities against scipy, maximum likelihood, the positive-
definiteness checks, CSV reading, EM (monotone, recovers known components, agrees with
scikit-learn from the same start), ancestral sampling, and gradient descent with autograd."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

from models.core.family import seeded
from models.density import descent, gaussian, gmm

MU = [1.0, -0.5]
COV = [[2.0, 1.2], [1.2, 1.5]]


def test_densities_match_scipy():
    x = np.random.default_rng(0).normal(size=(50, 2)) * 2
    assert np.allclose(gaussian.mvn_log_pdf(x, MU, COV).numpy(), multivariate_normal(MU, COV).logpdf(x))
    xs = np.linspace(-3, 3, 11)
    assert np.allclose(gaussian.normal_pdf(xs, 0.5, 1.5).numpy(), norm(0.5, 1.5).pdf(xs))
    X, Y, Z = gaussian.density_grid(MU, COV, (-8, 10), (-9, 8), 200)
    cell = (X[0, 1] - X[0, 0]) * (Y[1, 0] - Y[0, 0])
    assert Z.sum() * cell == pytest.approx(1.0, abs=1e-3)  # a density integrates to one


def test_covariance_checks_say_what_breaks():
    assert gaussian.is_positive_definite(COV)
    with pytest.raises(ValueError, match="correlation.*must be < 1"):
        gaussian.check_covariance([[1.0, 1.5], [1.5, 1.0]])
    with pytest.raises(ValueError, match="variance is 0"):
        gaussian.check_covariance([[0.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        gaussian.check_covariance([[1.0, 0.2], [0.3, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        gaussian.check_covariance([[float("nan"), 0], [0, 1]])
    with pytest.raises(ValueError, match="square"):
        gaussian.check_covariance([1.0, 2.0])
    with pytest.raises(ValueError, match="smallest eigenvalue"):
        gaussian.check_covariance(np.ones((3, 3)))


def test_maximum_likelihood_recovers_the_normal_and_is_the_maximum():
    x = gaussian.sample(MU, COV, 20_000, seeded(0))
    fit = gaussian.fit(x)
    assert np.allclose(fit.mu, MU, atol=0.05) and np.allclose(fit.cov, COV, atol=0.06)
    d, n = 2, len(x)
    closed = -n / 2 * (d * math.log(2 * math.pi) + math.log(float(torch.det(fit.cov))) + d)
    assert fit.log_likelihood == pytest.approx(closed, rel=1e-9)
    for mu, cov in ((fit.mu + torch.tensor([0.05, 0.0], dtype=torch.float64), fit.cov), (fit.mu, fit.cov * 1.05),
                    (fit.mu, fit.cov * 0.95), (torch.tensor(MU), torch.tensor(COV))):
        assert gaussian.log_likelihood(x, mu, cov) < fit.log_likelihood


def test_a_singular_data_set_is_refused():
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0)], 1)
    with pytest.raises(ValueError, match="not positive definite.*line"):
        gaussian.fit(line)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian.fit([[1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN"):
        gaussian.fit([[1.0, 2.0], [float("nan"), 1.0], [0.0, 0.0]])


def test_sampling_is_seeded_and_has_the_right_moments():
    a, b = gaussian.sample(MU, COV, 5000, seeded(3)), gaussian.sample(MU, COV, 5000, seeded(3))
    assert torch.equal(a, b) and not torch.equal(a, gaussian.sample(MU, COV, 5000, seeded(4)))
    assert np.allclose(np.cov(a.numpy().T), COV, atol=0.12)
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian.sample([0, 0], [[1, 2], [2, 1]], 10, seeded(0))


def test_shipped_tables_and_toy_shapes():
    faithful = gaussian.dataset(gaussian.REAL[0]).points
    galton = gaussian.dataset(gaussian.REAL[1]).points
    assert faithful.shape == (272, 2) and galton.shape == (934, 2)
    assert 1.5 < faithful[:, 0].min() and faithful[:, 1].max() < 100  # minutes
    assert 170 < gaussian.heights("sons").mean() < 180 and 160 < gaussian.heights("daughters").mean() < 167
    assert len(gaussian.heights("all")) == 934
    for name in gaussian.DATASETS[2:]:
        t1, t2 = gaussian.dataset(name, seeded(1)), gaussian.dataset(name, seeded(1))
        assert t1.points.shape == (gaussian.TOY_POINTS, 2) and torch.equal(t1.points, t2.points)
    with pytest.raises(ValueError, match="Unknown data set"):
        gaussian.dataset("nope", seeded(0))


def test_csv_reading_and_its_clear_refusals(tmp_path):
    good = tmp_path / "hw.csv"
    good.write_text("height,weight\n170,65\n180,80\n165,58\n175,70\n")
    t = gaussian.read_csv(good)
    assert t.points.shape == (4, 2) and (t.xlabel, t.ylabel) == ("height", "weight")
    assert gaussian.read_csv("1;2\n3;4\n5;7\n").points.shape == (3, 2)  # other delimiters
    assert gaussian.read_csv("1\t2\n3\t4\n5\t7\n").points.shape == (3, 2)
    cases = {"a,b\n1,2\n3,oops\n5,6\n": r"line 3: 'oops' is not a number",
             "height\n170\n180\n": "1 column.*exactly two",
             "170\n180\n190\n": "line 1: 1 column",
             "a,b,c\n1,2,3\n": "3 columns",
             "": "empty",
             "x,y\n1,2\n": "at least 3 points",
             "1,2\n3,nan\n4,5\n": "'nan' is not a number",
             "1,2\n3,1e300\n4,5\n": "beyond"}
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message):
            gaussian.read_csv(text, "data.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a UTF-8"):
        gaussian.read_csv(binary)


def blobs(n=3000, seed=0):
    return gaussian.dataset("three blobs", seeded(seed), n).points


def test_em_log_likelihood_never_goes_down_and_the_bound_stays_below_it():
    em = gmm.EM(blobs(600), 4, "random", seeded(5))
    for _ in range(40):
        em.e()
        em.m()
    lls = [h["log_likelihood"] for h in em.history]
    assert np.all(np.diff(lls) >= -1e-8), "the log-likelihood went down"
    assert lls[-1] > lls[0] + 100
    for h in em.history:
        if h["elbo"] is not None:
            assert h["elbo"] <= h["log_likelihood"] + 1e-8
            if h["step"] == "E":
                assert h["elbo"] == pytest.approx(h["log_likelihood"])


def test_em_recovers_known_components():
    weights, means, covs = (np.array(v) for v in gaussian.TOY_MIXTURE)
    mix = gmm.fit(blobs(), 3, generator=seeded(0))
    assert mix.converged
    order = gmm.match(mix, means)
    assert sorted(order) == [0, 1, 2]
    assert np.allclose(mix.means[order], means, atol=0.12)
    assert np.allclose(mix.weights[order], weights, atol=0.03)
    assert np.allclose(mix.covs[order], covs, atol=0.15)
    assert np.all(np.diff(mix.log_likelihoods) >= -1e-8)


def test_em_agrees_with_scikit_learn_from_the_same_start():
    from sklearn.mixture import GaussianMixture

    x = blobs(1000, seed=2)
    em = gmm.EM(x, 3, "k-means++", seeded(1))
    w0, m0, c0 = em.weights.numpy(), em.means.numpy(), em.covs.numpy()
    for _ in range(15):
        em.step()
    sk = GaussianMixture(3, covariance_type="full", max_iter=15, tol=0, reg_covar=em.reg, weights_init=w0,
                         means_init=m0, precisions_init=np.linalg.inv(c0), random_state=0)
    with pytest.warns(Warning):  # tol 0 never "converges"; the 15 iterations are what is compared
        sk.fit(x.numpy())
    assert em.log_likelihood() / len(x) == pytest.approx(sk.score(x.numpy()), abs=1e-9)
    assert np.allclose(em.means.numpy(), sk.means_, atol=1e-7)


def test_old_faithful_has_two_eruption_types():
    mix = gmm.fit(gaussian.dataset(gaussian.REAL[0]).points, 2, generator=seeded(0))
    short, long = sorted(mix.means.tolist())
    assert short[0] == pytest.approx(2.04, abs=0.05) and short[1] == pytest.approx(54.5, abs=0.5)
    assert long[0] == pytest.approx(4.29, abs=0.05) and long[1] == pytest.approx(80.0, abs=0.5)


def test_bad_k_start_and_points_are_refused():
    x = blobs(5)
    with pytest.raises(ValueError, match="more components than the 5 points"):
        gmm.EM(x, 6, "random", seeded(0))
    for k in (0, 2.5, "3", True, 11, float("nan")):
        with pytest.raises(ValueError, match="k \\(the number of components\\)"):
            gmm.EM(x, k, "random", seeded(0))
    with pytest.raises(ValueError, match="Start must be"):
        gmm.EM(x, 2, "kmeans", seeded(0))
    with pytest.raises(ValueError, match="NaN"):
        gmm.fit([[0.0, 1.0], [float("inf"), 0.0]], 1)


def test_em_survives_collapsed_and_repeated_points():
    x = np.concatenate([np.zeros((20, 2)), np.random.default_rng(0).normal(size=(50, 2))])
    mix = gmm.fit(x, 3, init="random", generator=seeded(1), max_iter=60)  # a component may sit on the 20 repeats
    assert all(math.isfinite(v) for v in mix.log_likelihoods)
    assert np.all(np.linalg.eigvalsh(mix.covs.numpy()) > 0)


def test_ancestral_sampling_is_seeded_and_follows_the_weights():
    mix = gmm.fit(blobs(), 3, generator=seeded(0))
    (x1, z1), (x2, z2) = gmm.sample(mix, 20_000, seeded(9)), gmm.sample(mix, 20_000, seeded(9))
    assert torch.equal(x1, x2) and torch.equal(z1, z2)
    assert np.allclose(np.bincount(z1.numpy(), minlength=3) / 20_000, mix.weights, atol=0.015)
    for j in range(3):
        assert np.allclose(x1[z1 == j].mean(0), mix.means[j], atol=0.06)
    refit = gmm.fit(x1, 3, generator=seeded(0))  # samples from the mixture fit back to it
    assert np.allclose(sorted(refit.weights.tolist()), sorted(mix.weights.tolist()), atol=0.02)
    with pytest.raises(ValueError, match="Number of samples"):
        gmm.sample(mix, 0, seeded(0))


def test_ellipse_axes_follow_the_covariance():
    (cx, cy), w, h, angle = gmm.ellipse([1, 2], [[4.0, 0.0], [0.0, 1.0]], 2)
    assert (cx, cy, w, h) == (1, 2, 8.0, 4.0) and angle % 180 == pytest.approx(0)
    *_, angle = gmm.ellipse([0, 0], [[1.0, 0.9], [0.9, 1.0]])
    assert angle % 180 == pytest.approx(45)


def test_gradient_by_autograd_matches_the_formula():
    for x0, x1 in ((0.0, 2.0), (-1.3, 0.7), (1.0, 1.0)):
        f, (g0, g1) = descent.gradient_at(x0, x1)
        assert f == pytest.approx(descent.rosenbrock(x0, x1))
        assert g0 == pytest.approx(-400 * x0 * (x1 - x0 ** 2) - 2 * (1 - x0))
        assert g1 == pytest.approx(200 * (x1 - x0 ** 2))
    for bad in (float("nan"), "1", None, 1e9):
        with pytest.raises(ValueError, match="x₀ must be a finite number"):
            descent.gradient_at(bad, 0.0)


def test_the_books_descent_reaches_the_valley_floor_near_the_minimum():
    path = descent.descend(**descent.BOOK)
    assert path.diverged_at is None and path.points.shape == (10_001, 2)
    assert path.end == pytest.approx((0.9944984367782456, 0.9890050527419593), abs=1e-9)  # the book's figure
    assert float(path.values[-1]) < float(path.values[0]) * 1e-5
    assert torch.equal(path.points[:501], descent.descend(0.0, 2.0, 0.001, 500).points)  # deterministic
    fast = descent.descend(0.0, 2.0, 0.001, 1000, "momentum 0.9")
    assert math.dist(fast.end, (1, 1)) < math.dist(path.points[1000].tolist(), (1, 1))


def test_too_large_a_step_is_reported_as_divergence():
    path = descent.descend(0.0, 2.0, 0.01, 1000)
    assert path.diverged_at is not None and path.diverged_at < 50 and len(path.points) == path.diverged_at + 1
    for kwargs, message in (({"lr": 0}, "Learning rate"), ({"lr": float("nan")}, "Learning rate"),
                            ({"iterations": 0}, "Iterations"), ({"iterations": 10.5}, "Iterations"),
                            ({"optimizer": "lbfgs"}, "Optimizer")):
        with pytest.raises(ValueError, match=message):
            descent.descend(**{**descent.BOOK, **kwargs})


def test_fit_api_takes_higher_dimensional_codes_as_a_vae_would_give():
    g = seeded(1)
    labels = torch.randint(0, 3, (1500, 1), generator=g)
    codes = (torch.randn(1500, 8, generator=g) + labels * 3.0).requires_grad_()  # float32, straight from a model
    mix = gmm.fit(codes, 3, generator=seeded(0))
    assert mix.converged and mix.means.shape == (3, 8)
    assert np.allclose(sorted(mix.weights.tolist()), sorted((np.bincount(labels[:, 0]) / 1500).tolist()), atol=0.01)
    x, z = gmm.sample(mix, 50, seeded(2))
    assert x.shape == (50, 8) and mix.log_prob(x).shape == (50,)
