"""PixelCNN: the masks keep the model causal (a gradient test), the plain stack has its blind spot and
the gated one does not, the cached sampler is the plain sampler made faster, completion keeps what is
known, and the shipped checkpoint's exact held-out NLL meets its bar where an untrained model fails it."""
import json
import math

import pytest
import torch

from models.core import checkpoint, data
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.density import pixelcnn as P

BAR_NATS = 92.0  # the bar for the shipped checkpoint (published: 81.3 nats, van den Oord et al. 2016)
SHIPPED_NAME = "pixelcnn_mnist"


def small(arch: str, levels: int = 2, layers: int = 3):
    torch.manual_seed(0)
    return P.build(P.FAMILY.config("tiny", arch=arch, levels=levels, filters=8, layers=layers))


def gradient_map(model, r, c):
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.5), generator=seeded(1)).requires_grad_(True)
    model(x)[:, :, r, c].abs().sum().backward()
    return x.grad.abs().sum((0, 1))


@pytest.mark.parametrize("arch", ["plain", "gated"])
@pytest.mark.parametrize("levels", [2, 4])
def test_output_at_pixel_i_does_not_depend_on_pixels_from_i_on(arch, levels):
    model = small(arch, levels)
    for r, c in [(0, 0), (0, 27), (5, 5), (13, 20), (27, 0), (27, 27)]:
        g = gradient_map(model, r, c).flatten()
        i = r * 28 + c
        assert g[i:].abs().max() == 0, f"{arch}: pixel ({r}, {c}) sees itself or a later pixel"
        if i > 0:  # and it does see the past: its left neighbour, or the pixel above
            assert g[i - 1] > 0 or g[i - 28] > 0


def test_plain_stack_has_a_blind_spot_and_gated_does_not():
    """Up and to the right of (r, c), beyond the 7×7 first layer's reach, no path of 3×3 type-B masks
    arrives in the plain stack; the gated vertical stack sees every row above in full width."""
    r, c = 14, 10
    plain, gated = gradient_map(small("plain"), r, c), gradient_map(small("gated"), r, c)
    assert plain[r - 1, c + 3] > 0 and plain[r - 1, c + 4] == 0 and plain[r - 2, c + 5] == 0
    assert gated[r - 1, c + 4] > 0 and gated[r - 2, c + 5] > 0
    rf = P.receptive_field(small("plain"), r, c, generator=seeded(0))
    assert rf.shape == (28, 28) and rf[r - 1, c + 4] == 0 and rf[r, c - 1] > 0


def test_cached_sampler_draws_what_the_full_network_draws():
    """Bit for bit, on the last four rows of two test images (the full network runs once per pixel)."""
    model = small("gated")
    x = data.binary_images("mnist", "test")[0][:2]
    known = torch.ones_like(x, dtype=torch.bool)
    known[:, :, 24:] = False
    a = last(P.complete(model, x, known, generator=seeded(5), cache=True))
    b = last(P.complete(model, x, known, generator=seeded(5), cache=False))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_sampler_streams_rows_and_fills_in():
    model = small("gated", levels=4)
    frames = list(P.sample(model, 2, generator=seeded(0), every=28))
    assert len(frames) == 29  # one per row, then the finished images
    assert (frames[0][:, :, 1:] == P.UNKNOWN).all() and (frames[0][:, :, 0] != P.UNKNOWN).all()
    k = frames[-1] * 3
    assert (k - k.round()).abs().max() < 1e-6 and k.min() >= 0 and k.max() <= 3  # four levels
    for bad in ({"temperature": 0.0}, {"every": 0}, {"temperature": float("nan")}):
        with pytest.raises(ValueError, match="must be between"):
            last(P.sample(model, 2, generator=seeded(0), **bad))


def test_complete_keeps_the_known_pixels_and_is_seeded():
    model = small("gated")
    x, _ = data.binary_images("mnist", "test")
    x = x[:2]
    known = torch.zeros_like(x, dtype=torch.bool)
    known[:, :, :14] = True
    a = last(P.complete(model, x, known, generator=seeded(3)))
    b = last(P.complete(model, x, known, generator=seeded(3)))
    assert torch.equal(a, b) and torch.equal(a[:, :, :14], x[:, :, :14])
    assert not torch.equal(a[:, :, 14:], x[:, :, 14:])
    with pytest.raises(ValueError, match="levels"):
        last(P.complete(model, torch.full_like(x, 0.3), known, generator=seeded(3)))


def test_log_likelihood_is_minus_the_training_loss():
    model = small("plain")
    x, y = data.binary_images("mnist", "test")
    ll = P.log_likelihood(model, x[:8])
    loss = P.train_step(model, (x[:8], y[:8]), P.FAMILY.config("tiny"))["loss"]
    assert ll.shape == (8,) and torch.allclose(-ll.mean(), loss.detach(), atol=1e-3)


def test_the_book_preset_is_fosters_network():
    c = P.FAMILY.config("book")
    assert (c.arch, c.filters, c.layers, c.levels, c.lr, c.batch_size) == ("plain", 128, 5, 4, 5e-4, 128)


def test_shipped_checkpoint_meets_the_bar_and_an_untrained_one_fails_it():
    path = SHIPPED / f"{SHIPPED_NAME}.safetensors"
    model, config, _ = checkpoint.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert config.levels == 2 and "binarised" in card["data"]["preprocessing"]
    assert card["metrics"]["test_images"] == 10_000 and card["metrics"]["test_nll_nats"] <= BAR_NATS
    x, _ = data.binary_images("mnist", "test", config.binarisation)
    subset = x[:300]  # a fixed subset keeps the test fast; the card holds the full test set's figure
    nll = -P.log_likelihood(model, subset).mean().item()
    assert nll <= BAR_NATS, f"shipped PixelCNN: {nll:.1f} nats on 1,000 test images"
    torch.manual_seed(0)
    untrained = P.build(config).eval()
    assert -P.log_likelihood(untrained, subset[:200]).mean().item() > BAR_NATS
    assert math.isclose(card["metrics"]["bits_per_dim"], card["metrics"]["test_nll_nats"] / (784 * math.log(2)),
                        rel_tol=1e-6)
