"""The VAE family: the shipped checkpoint's held-out quality, and the latent-space tools the studio
draws with (grid, interpolation, encode/decode)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.core import checkpoint, data
from models.image import vae

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "vae_mnist.safetensors"
NEG_ELBO_BOUND = 165.0  # nats per image; the card says ~150.6, an untrained model ~540


@pytest.fixture(scope="module")
def shipped():
    """The shipped 2-D MNIST VAE and its config."""
    model, config, _ = checkpoint.load(SHIPPED)
    return model, config


@pytest.fixture(scope="module")
def test_images():
    x, y = data.images("mnist", "test")
    return x[:2000], y[:2000]


def test_shipped_vae_beats_the_elbo_bound(shipped, test_images):
    """The shipped VAE's held-out negative ELBO is below the bound, and matches its card closely."""
    model, config = shipped
    assert config.latent_dim == 2 and config.dataset == "mnist"
    metrics = vae.evaluate(model, *test_images)
    assert metrics["neg_elbo_nats"] < NEG_ELBO_BOUND
    assert metrics["neg_elbo_nats"] == pytest.approx(metrics["reconstruction_bce"] + metrics["kl"])
    assert metrics["kl"] > 1  # the latent code is used, not collapsed onto the prior


def test_untrained_vae_fails_the_same_bound(shipped, test_images):
    """A freshly built model of the same config fails the bound, so the bound measures training."""
    _, config = shipped
    torch.manual_seed(0)
    metrics = vae.evaluate(vae.build(config), *test_images)
    assert metrics["neg_elbo_nats"] > 2 * NEG_ELBO_BOUND


def test_evaluate_is_deterministic(shipped, test_images):
    """The held-out figure is the same on every call (its encoder noise is seeded)."""
    model, _ = shipped
    x, y = test_images
    assert vae.evaluate(model, x[:200], y[:200]) == vae.evaluate(model, x[:200], y[:200])


def test_latent_grid_shape_and_orientation():
    """n=30 gives 900 codes in row-major order reading like a plot: top-left (-r, +r), top-right
    (+r, +r), bottom-left (-r, -r), bottom-right (+r, -r); other latent dims are 0."""
    r = 3.0
    z = vae.latent_grid(30, r, latent_dim=4)
    assert z.shape == (900, 4)
    assert z[0, :2].tolist() == [-r, r]
    assert z[29, :2].tolist() == [r, r]
    assert z[870, :2].tolist() == [-r, -r]
    assert z[899, :2].tolist() == [r, -r]
    assert torch.all(z[:, 2:] == 0)
    rows = z[:, :2].reshape(30, 30, 2)
    assert torch.all(rows[:, 1:, 0] > rows[:, :-1, 0])  # z1 grows left to right
    assert torch.all(rows[1:, :, 1] < rows[:-1, :, 1])  # z2 falls top to bottom


def test_latent_grid_on_chosen_dims():
    """dims picks which two latent dimensions the grid spans."""
    z = vae.latent_grid(3, 1.0, latent_dim=5, dims=(3, 1))
    assert z[0].tolist() == [0, 1, 0, -1, 0]
    assert torch.all(z[:, [0, 2, 4]] == 0)


@pytest.mark.parametrize("n, extent", [(0, 3.0), (1000, 3.0), (10, 0.0), (10, -1.0), (10, 1e6)])
def test_latent_grid_extremes_are_refused(n, extent):
    """Grid sizes outside 1..64 and ranges outside 0.01..20 raise a ValueError."""
    with pytest.raises(ValueError, match="must be between"):
        vae.latent_grid(n, extent, latent_dim=2)


def test_linear_interpolation_has_exact_endpoints():
    """Linear interpolation starts exactly at z_a, ends exactly at z_b, with equal spacing."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=g), torch.randn(8, generator=g)
    path = vae.interpolate(a, b, 5, "linear")
    assert path.shape == (5, 8)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    steps = path[1:] - path[:-1]
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-6)


def test_spherical_interpolation_keeps_the_norm():
    """Slerp between equal-norm codes ends at both codes and keeps that norm all the way, while the
    straight line cuts through the low-norm centre (the reason slerp exists)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    b = b * a.norm() / b.norm()
    path = vae.interpolate(a, b, 9, "spherical")
    assert path.shape == (9, 16)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    norms = path.norm(dim=1)
    assert torch.allclose(norms, a.norm().expand(9), rtol=1e-4)
    assert vae.interpolate(a, b, 9, "linear")[4].norm() < 0.9 * a.norm()


def test_spherical_interpolation_norms_stay_between_endpoints():
    """For codes of different norms the slerp path's norms stay within (a little of) the endpoints'."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, generator=g), 2 * torch.randn(16, generator=g)
    norms = vae.interpolate(a, b, 17, "spherical").norm(dim=1)
    low, high = min(a.norm(), b.norm()), max(a.norm(), b.norm())
    assert norms.min() >= 0.9 * low and norms.max() <= 1.1 * high


def test_parallel_codes_interpolate_without_nan():
    """Slerp between (nearly) parallel codes falls back to a straight line, not 0/0."""
    a = torch.tensor([1.0, 2.0])
    path = vae.interpolate(a, 3 * a, 4, "spherical")
    assert torch.isfinite(path).all()
    assert torch.allclose(path, vae.interpolate(a, 3 * a, 4, "linear"))


def test_interpolation_extremes_are_refused():
    """An unknown method or a step count outside 2..64 is a ValueError."""
    a, b = torch.zeros(2), torch.ones(2)
    with pytest.raises(ValueError, match="'linear' or 'spherical'"):
        vae.interpolate(a, b, 5, "cubic")
    for steps in (1, 1000):
        with pytest.raises(ValueError, match="must be between"):
            vae.interpolate(a, b, steps)


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 1), (2, 4)])
def test_decode_refuses_wrong_latent_shapes(shipped, shape):
    """decode wants (N, latent_dim) codes; anything else is a ValueError naming the expected shape."""
    model, _ = shipped
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        vae.decode(model, torch.zeros(shape))


def test_encode_gives_mu_and_positive_sigma(shipped, test_images):
    """encode returns (N, latent_dim) means and strictly positive standard deviations."""
    model, _ = shipped
    mu, sigma = vae.encode(model, test_images[0][:64])
    assert mu.shape == sigma.shape == (64, 2)
    assert torch.isfinite(mu).all()
    assert (sigma > 0).all() and (sigma < 1).all()  # a trained encoder is surer than the prior


def test_decoding_a_30x30_grid(shipped):
    """The studio's latent map: 900 codes decode to 900 images in [0, 1], varying across the grid."""
    model, config = shipped
    images = vae.decode(model, vae.latent_grid(30, 3.0, config.latent_dim))
    assert images.shape == (900, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert (images[0] - images[-1]).abs().mean() > 0.05  # opposite corners draw different things


def test_sample_with_given_codes_matches_decode(shipped):
    """sample(z=...) decodes exactly those codes, ignoring the generator."""
    model, _ = shipped
    z = vae.latent_grid(3, 2.0, 2)
    assert torch.equal(next(vae.sample(model, 9, z=z)), vae.decode(model, z))


def test_sample_refuses_codes_of_the_wrong_shape(shipped):
    """sample(z=...) with codes that are not (N, latent_dim) is a ValueError, like decode."""
    model, _ = shipped
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        next(vae.sample(model, 2, z=torch.zeros(2, 3)))


def test_mixture_sampling_scale_zero_gives_component_means():
    """Sampling from a fitted mixture: scale 0 decodes exactly the component means drawn."""
    model = vae.build(vae.VAEConfig(channels=(4, 8), hidden=8))
    x, _ = data.images("mnist", "test")
    mix = vae.aggregate_posterior(model, x[:300], k=3, generator=torch.Generator().manual_seed(0), max_iter=20)
    out = next(vae.sample(model, 6, generator=torch.Generator().manual_seed(1), scale=0.0, mixture=mix))
    means = vae.decode(model, mix.means.float())
    assert all(any(torch.allclose(o, mu, atol=1e-5) for mu in means) for o in out)


def _class_shares(model, dataset: str, n: int) -> torch.Tensor:
    """Each class's share of ``n`` samples drawn as the page opens (from q(z)), by the project's classifier."""
    from models.core import evaluate
    from models.core.family import last, seeded

    setting, kwargs = vae.opening(model, vae.VAEConfig(dataset=dataset))
    images = last(vae.sample(model, n, generator=seeded(0), **kwargs))
    _, probs = evaluate.features_and_probs(evaluate.load_classifier(dataset), images)
    return torch.bincount(probs.argmax(1), minlength=10).double() / n


def test_shipped_2d_vae_covers_nine_digits_from_its_aggregate_posterior(shipped):
    """Sampled where its codes are, the 2-D VAE draws 9 of the 10 digits at least at half their fair
    share (5 %), and the tenth (5s, a sliver of the plane) still appears; the issue's bar is all 10.
    Its card scores that setting (coverage 90 %) beside the prior's holes (80 %)."""
    import json

    model, config = shipped
    shares = _class_shares(model, config.dataset, 1000)
    assert int((shares >= 0.05).sum()) >= 9 and shares.min() >= 0.01, shares
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    opening = card["metrics"]["opening_scores"]
    assert opening["class_coverage"] >= 0.9 and "aggregate posterior" in opening["setting"]
    assert card["metrics"]["sample_scores"]["class_coverage"] < opening["class_coverage"]


def test_untrained_vae_misses_the_coverage_mark(shipped):
    torch.manual_seed(0)
    shares = _class_shares(vae.build(shipped[1]), "mnist", 300)
    assert int((shares >= 0.05).sum()) < 9, shares


def test_decoder_hidden_layer_is_optional_and_old_layouts_still_load():
    """decoder_hidden = 0 keeps the book's single dense lift (and the key names of checkpoints
    written before the option); > 0 lifts the code through one more hidden layer."""
    book = vae.build(vae.VAEConfig(channels=(4, 8), hidden=8))
    wide = vae.build(vae.VAEConfig(channels=(4, 8), hidden=8, decoder_hidden=32))
    assert "decoder.0.weight" in book.state_dict() and "decoder.0.2.weight" in wide.state_dict()
    assert wide.decode(torch.zeros(3, 2)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="decoder hidden"):
        vae.VAEConfig(decoder_hidden=-1).validate()
    with pytest.raises(ValueError, match="lr_decay"):
        vae.VAEConfig(lr_decay="linear").validate()
