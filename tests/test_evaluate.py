"""The scoring classifiers and the scores built on them (models/evaluate.py).

Quality tests on the shipped classifiers: they must be accurate, and their scores must tell real
images from noise by a wide margin. The Fréchet distance is checked against hand-computed closed
forms and SciPy's matrix square root.
"""
from __future__ import annotations

import math

import pytest
import torch

from models.core import data, evaluate


@pytest.mark.parametrize("dataset, floor", [("mnist", 0.98), ("fashion", 0.88)])
def test_shipped_classifier_accuracy(dataset, floor):
    """The shipped classifier is accurate on the first 2000 held-out test images."""
    model = evaluate.load_classifier(dataset)
    x, y = data.images(dataset, "test")
    _, probs = evaluate.features_and_probs(model, x[:2000])
    accuracy = (probs.argmax(1) == y[:2000]).double().mean().item()
    assert accuracy >= floor


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_scores_tell_real_images_from_noise(dataset):
    """1000 real test images score as confident, covering every class, near the reference
    statistics; uniform noise scores far worse on Fréchet distance, coverage and inception score."""
    real = evaluate.score(data.images(dataset, "test")[0][:1000], dataset)
    noise = evaluate.score(torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)), dataset)
    assert real["n"] == noise["n"] == 1000
    assert real["confidence"] > 0.9
    assert real["class_coverage"] == 1.0
    assert real["inception_score"] > 7
    assert noise["frechet_distance"] > 20 * real["frechet_distance"]
    assert noise["class_coverage"] <= 0.3
    assert noise["inception_score"] < 1.5 < real["inception_score"] / 4
    # Not asserted: noise "confidence". The shipped MNIST classifier calls uniform noise one digit
    # with confidence ~1.0, so that score alone cannot tell noise from digits there.


def test_collapsed_samples_lose_coverage_and_inception_score():
    """Copies of one real digit (mode collapse) keep high confidence but lose coverage and IS."""
    x, y = data.images("mnist", "test")
    collapsed = x[:1].repeat(600, 1, 1, 1)
    s = evaluate.score(collapsed, "mnist")
    assert s["confidence"] > 0.9
    assert s["class_coverage"] == 0.1
    assert s["inception_score"] < 1.1


def test_frechet_distance_needs_500_images():
    """Fewer than 500 images give the other scores but leave the Fréchet distance out."""
    s = evaluate.score(data.images("mnist", "test")[0][:100], "mnist")
    assert "frechet_distance" not in s and s["n"] == 100


def test_frechet_of_a_gaussian_with_itself_is_zero():
    """d(N(mu, S), N(mu, S)) = 0 for a full, correlated covariance."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 50, generator=g, dtype=torch.float64)
    cov = a @ a.T / 50 + 0.1 * torch.eye(50, dtype=torch.float64)
    mu = torch.randn(50, generator=g, dtype=torch.float64)
    assert evaluate.frechet_distance(mu, cov, mu, cov) == pytest.approx(0, abs=1e-8)


def test_frechet_one_dimensional_closed_form():
    """In 1-D, d = (m1 - m2)² + (s1 - s2)²: N(1, 2²) vs N(-2, 3²) gives 9 + 1 = 10."""
    d = evaluate.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                                  torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert d == pytest.approx(10.0, rel=1e-6)


def test_frechet_diagonal_closed_form():
    """For diagonal covariances, d = |mu1 - mu2|² + Σ (s1_i - s2_i)², computed by hand."""
    mu1, sd1 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    mu2, sd2 = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 2.0, 1.5], dtype=torch.float64)
    # means: 1 + 0 + 4 = 5; spreads: 4 + 0 + 1 = 5
    d = evaluate.frechet_distance(mu1, torch.diag(sd1**2), mu2, torch.diag(sd2**2))
    assert d == pytest.approx(10.0, rel=1e-9)


def test_frechet_matches_scipy_and_is_symmetric():
    """For full covariances the eigendecomposition route agrees with SciPy's sqrtm formula."""
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    cov1, cov2 = a @ a.T + 0.1 * torch.eye(8, dtype=torch.float64), b @ b.T + 0.1 * torch.eye(8, dtype=torch.float64)
    mu1, mu2 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    cross = linalg.sqrtm(cov1.numpy() @ cov2.numpy()).real.trace()
    expected = float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross)
    d = evaluate.frechet_distance(mu1, cov1, mu2, cov2)
    assert d == pytest.approx(expected, rel=1e-7)
    assert evaluate.frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(d, rel=1e-7)
    assert d > 0 and math.isfinite(d)


@pytest.mark.parametrize("shape", [(10, 28, 28), (10, 3, 28, 28), (10, 1, 32, 32), (784,)])
def test_bad_shapes_are_refused(shape):
    """Only (N, 1, 28, 28) batches can be scored."""
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        evaluate.score(torch.rand(shape), "mnist")


def test_too_few_images_or_unknown_dataset_are_refused():
    """One image, or a dataset with no classifier, is a ValueError."""
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.score(torch.rand(1, 1, 28, 28), "mnist")
    with pytest.raises(ValueError, match="Unknown dataset"):
        evaluate.score(torch.rand(4, 1, 28, 28), "cifar")


def test_blur_keeps_mass_and_softens():
    """The calibration blur is a normalised Gaussian: total ink is kept, a point spreads out."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 14, 14] = 1.0
    y = evaluate.blur(x)
    assert y.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert 0.2 < y.max().item() < 0.5 and y[0, 0, 14, 15] > 0.05


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_calibration_rows_order_real_blurred_noise(dataset):
    """The three reference rows a card prints: real beats blurred beats noise on Fréchet distance,
    the rows are reproducible, and they are the rows a shipped card carries at its own n."""
    rows = evaluate.calibration(dataset, 500)
    real, blurred, noise = (rows[k]["frechet_distance"] for k in rows)
    assert real < blurred < noise and blurred > 5 * real
    assert evaluate.calibration.__wrapped__(dataset, 500) == rows


def test_shipped_cards_carry_calibration_and_the_studio_shows_it():
    """Every shipped image card with sample scores has the calibration rows at the same n, and the
    card text shows them next to the score."""
    import json

    from models.core import ASSETS
    from studio import widgets

    cards = [json.loads(p.read_text()) for p in (ASSETS / "checkpoints").glob("*.json")]
    scored = [c for c in cards if c.get("metrics", {}).get("sample_scores")]
    assert len(scored) >= 8
    for c in scored:
        rows = c["metrics"]["calibration"]
        assert {r["n"] for r in rows.values()} == {c["metrics"]["sample_scores"]["n"]}, c["name"]
        text = widgets.card_markdown(c)
        assert "blurred real" in text and "uniform noise" in text and "real held-out" in text


def test_shipped_cards_score_the_sampler_their_family_uses_now():
    """A card's sample scores (and its every-class row) were drawn with the sampler settings its family
    scores and its page opens with today: after a sampler change, `python -m models.core.evaluate all
    NAME` rescores the card, and a stale card fails here."""
    import json

    from models import FAMILIES
    from models.core import ASSETS

    checked = 0
    for path in sorted((ASSETS / "checkpoints").glob("*.json")):
        card = json.loads(path.read_text())
        m = card.get("metrics", {})
        if not m.get("sample_scores") or card.get("family") not in FAMILIES:
            continue
        fam = FAMILIES[card["family"]]
        assert m["sample_scores"].get("sampler", {}) == fam.score_kwargs, card["name"]
        if "sampler" in m.get("class_scores", {}):
            assert m["class_scores"]["sampler"] == {**fam.score_kwargs, **fam.class_kwargs}, card["name"]
        checked += 1
    assert checked >= 8
