"""NADE: a normalised distribution (probabilities of all 2^n images of a tiny n sum to 1), the
hand-written backward pass equals autograd's, conditionals only see earlier pixels in the order,
in-painting by the chain rule (and its importance-resampled version against the exact conditional by
enumeration), and the shipped checkpoint's exact held-out NLL meets its bar."""
import itertools
import json
import math

import pytest
import torch

from models.core import checkpoint, data
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.density import nade as N

BAR_NATS = 100.0  # the bar (published: 88.9 nats, Larochelle & Murray 2011)
SHIPPED_NAME = "nade_mnist"


def tiny(n=10, hidden=7, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    model = N.NADE(n, hidden, torch.randperm(n, generator=g))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def every_image(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


@pytest.mark.parametrize("n, hidden, seed", [(1, 3, 0), (6, 2, 1), (10, 7, 2), (10, 30, 3)])
def test_probabilities_of_all_images_sum_to_one(n, hidden, seed):
    model = tiny(n, hidden, seed)
    p = model(every_image(n)).double().exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_samples_follow_the_model_distribution():
    """Pixel-by-pixel sampling in a random order draws each image with its probability (n = 3: 8 images)."""
    model = tiny(3, 4, 8)
    draws = last(N.sample(model, 6000, generator=seeded(0), every=3))
    codes = (draws * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=8).double() / len(draws)
    assert (freq - model(every_image(3)).double().exp()).abs().max() < 0.02


def test_hand_written_backward_matches_autograd():
    model = tiny(12, 9, 4, scale=0.5)
    x = torch.bernoulli(torch.full((7, 12), 0.4), generator=seeded(0))
    ours = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    xo = x[:, model.order]
    a = torch.cumsum(xo[:, :, None] * model.W[None], 1)
    a = torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], 1) + model.c  # a_d = c + Σ_{k<d} W_k x_k
    logits = (torch.sigmoid(a) * model.V).sum(-1) + model.b
    ref = -torch.nn.functional.binary_cross_entropy_with_logits(logits, xo, reduction="sum")
    assert torch.allclose(model(x).sum(), ref, atol=1e-4)
    for g, r in zip(ours, torch.autograd.grad(ref, list(model.parameters()))):
        assert torch.allclose(g, r, atol=1e-5)


def test_each_conditional_sees_only_earlier_pixels_in_the_order():
    model = tiny(10, 5, 5)
    x = torch.bernoulli(torch.full((1, 10), 0.5), generator=seeded(1))
    base = model.logits(x)
    for d, i in enumerate(model.order.tolist()):
        flipped = x.clone()
        flipped[0, i] = 1 - flipped[0, i]
        changed = (model.logits(flipped) - base).abs()[0] > 1e-7
        assert not changed[:d + 1].any() and (d == 9 or changed[d + 1:].any())


def test_orders_are_permutations():
    for name in N.ORDERS:
        order = N.pixel_order(name, seed=3)
        assert sorted(order.tolist()) == list(range(784))
    assert torch.equal(N.pixel_order("raster"), torch.arange(784))
    assert N.pixel_order("columns")[:2].tolist() == [0, 28]
    assert N.pixel_order("centre")[0].item() in (13 * 28 + 13, 13 * 28 + 14, 14 * 28 + 13, 14 * 28 + 14)
    assert not torch.equal(N.pixel_order("random", 0), N.pixel_order("random", 1))
    with pytest.raises(ValueError, match="Unknown order"):
        N.FAMILY.config("tiny", order="zigzag")


def test_sampling_streams_in_the_order_and_completion_keeps_what_is_known():
    model = N.build(N.FAMILY.config("tiny", order="columns"))
    frames = list(N.sample(model, 2, generator=seeded(0), every=28))
    assert len(frames) == 29
    assert (frames[0][:, :, :, 0] != N.UNKNOWN).all() and (frames[0][:, :, :, 1:] == N.UNKNOWN).all()  # column 0
    x = data.binary_images("mnist", "test")[0][:2]
    known = torch.ones_like(x, dtype=torch.bool)
    known[:, :, 14:] = False
    a = last(N.complete(model, x, known, generator=seeded(2)))
    assert torch.equal(a[:, :, :14], x[:, :, :14])
    assert torch.equal(a, last(N.complete(model, x, known, generator=seeded(2))))
    with pytest.raises(ValueError, match="0 or 1"):
        last(N.complete(model, x * 0.5, known, generator=seeded(2)))


def test_exact_conditional_is_recognised():
    raster = N.pixel_order("raster")
    known = torch.ones(28, 28, dtype=torch.bool)
    known[14:] = False  # bottom half missing: every observed pixel comes first
    assert N.exact_conditional(raster, known)
    assert not N.exact_conditional(raster, ~known)  # top half missing
    assert not N.exact_conditional(N.pixel_order("columns"), known)


def test_importance_resampling_approaches_the_exact_conditional():
    """Missing: the first two pixels in the order; observed: the rest. The exact p(x_missing | x_observed)
    comes from enumerating the four completions; one particle ignores the later observed pixels."""
    n = 6
    model = tiny(n, 4, 3)
    order = model.order
    x = torch.zeros(1, n)
    x[0, order[2:]] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    known = torch.ones(1, n, dtype=torch.bool)
    known[0, order[:2]] = False
    options = every_image(2)
    full = x.repeat(4, 1)
    full[:, order[:2]] = options
    exact = torch.softmax(model(full).double(), 0)

    def frequencies(particles, draws=1500):
        out = last(N.complete(model, x.repeat(draws, 1), known.repeat(draws, 1), generator=seeded(0),
                              every=n, particles=particles))
        codes = out[:, order[0]] * 2 + out[:, order[1]]
        return torch.bincount(codes.long(), minlength=4).double() / draws

    err_resampled = (frequencies(64) - exact).abs().max().item()
    err_ancestral = (frequencies(1) - exact).abs().max().item()
    assert err_resampled < 0.04, (frequencies(64), exact)
    assert err_ancestral > err_resampled


def test_shipped_checkpoint_meets_the_bar_and_an_untrained_one_fails_it():
    path = SHIPPED / f"{SHIPPED_NAME}.safetensors"
    model, config, _ = checkpoint.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["data"]["preprocessing"] == data.BINARISATIONS[config.binarisation]
    assert card["metrics"]["test_images"] == 10_000 and card["metrics"]["test_nll_nats"] <= BAR_NATS
    x, _ = data.binary_images("mnist", "test", config.binarisation)
    subset = x[:1000]  # the card holds the full test set's figure
    nll = -N.log_likelihood(model, subset).mean().item()
    assert nll <= BAR_NATS, f"shipped NADE: {nll:.1f} nats on 1,000 test images"
    untrained = N.build(config)
    assert -N.log_likelihood(untrained, subset[:200]).mean().item() > BAR_NATS
    assert math.isclose(card["metrics"]["bits_per_dim"], card["metrics"]["test_nll_nats"] / (784 * math.log(2)),
                        rel_tol=1e-6)
