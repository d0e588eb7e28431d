"""RealNVP: invertibility and exact log-determinants (checked against autograd's Jacobian on 2-D data
and on images), the dequantised bits/dim bookkeeping, seeded sampling, and the shipped MNIST flow
against an untrained one and against the issue's bar."""
import json
import math

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.core.family import last, seeded
from models.core.train import SHIPPED
from models.density import flow2d, realnvp

FAMILY = FAMILIES["realnvp"]
BAR_BITS = 1.6  # the bar for the shipped MNIST flow


def trained_lab(steps=150, **settings):
    lab = flow2d.make_lab(flow2d.FlowConfig(**settings))
    flow2d.train(lab, steps)
    return lab


def test_2d_flow_inverts_and_its_log_det_matches_autograd():
    lab = trained_lab(40)
    x = flow2d.toy_points("moons", 8, seed=3).double()
    flow = lab.flow.double().eval()
    z, logdet = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-9)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda p: flow(p[None])[0][0], x[i])
        assert torch.linalg.slogdet(jac).logabsdet.item() == pytest.approx(logdet[i].item(), abs=1e-8)


def test_2d_density_integrates_to_about_one_and_point_splits_add_up():
    lab = trained_lab(200)
    logp = flow2d.density(lab, 200)
    cell = (2 * flow2d.EXTENT / 200) ** 2
    assert float(logp.exp().sum() * cell) == pytest.approx(1.0, abs=0.05)  # standardised moons fit in [-3, 3]²
    r = flow2d.explain_point(lab, 0.3, -0.2)
    assert r["log_p"] == pytest.approx(r["prior"] + sum(r["log_det"]), abs=1e-6)
    assert r["log_p"] == pytest.approx(float(flow2d.log_prob(lab.flow, torch.tensor([[0.3, -0.2]])).detach()), abs=1e-5)
    assert len(r["path"]) == lab.config.couplings + 1 and r["path"][-1] == pytest.approx(r["z"])


def test_2d_lab_learns_and_replays_from_its_seed():
    a, b = trained_lab(80, seed=4), trained_lab(80, seed=4)
    untrained = flow2d.make_lab(flow2d.FlowConfig(seed=4))
    assert flow2d.held_out_nll(a) == flow2d.held_out_nll(b)
    assert flow2d.held_out_nll(a) < flow2d.held_out_nll(untrained) - 0.5
    zs = flow2d.generative_stages(a, flow2d.prior_samples(a, 50, seed=1))
    xs, _ = flow2d.stages(a, zs[-1])
    assert torch.allclose(xs[-1], zs[0], atol=1e-4)  # backwards then forwards: back to the prior samples


@pytest.mark.parametrize("bad", [dict(couplings=0), dict(hidden=1.5), dict(lr=float("nan")), dict(dataset="spiral"),
                                 dict(seed=-1)])
def test_2d_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        flow2d.make_lab(flow2d.FlowConfig(**bad))


def test_drawn_points_need_enough_points_on_the_plane():
    with pytest.raises(ValueError, match="at least"):
        flow2d.make_lab(flow2d.FlowConfig(dataset="drawn"), points=[[0, 0]])
    with pytest.raises(ValueError, match="inside"):
        flow2d.make_lab(flow2d.FlowConfig(dataset="drawn"), points=[[9, 9]] * 8)
    lab = flow2d.make_lab(flow2d.FlowConfig(dataset="drawn"), points=[[1, 1], [-1, -1]] * 4)
    assert lab.data.shape == (flow2d.N_DATA, 2)


def test_image_flow_inverts_and_log_det_matches_autograd_on_a_small_input():
    torch.manual_seed(0)
    model = FAMILY.build(FAMILY.config("tiny")).double().eval()
    for layer in model.layers:  # non-trivial couplings (the last conv starts at zero)
        if isinstance(layer, realnvp.Coupling):
            torch.nn.init.normal_(layer.net.out[1].weight, std=0.3)
    w = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    z, logdet = model(w)
    assert z.shape == (2, *model.z_shape)
    assert torch.allclose(model.inverse(z), w, atol=1e-8)
    jac = torch.autograd.functional.jacobian(lambda v: model(v.reshape(1, 1, 28, 28))[0].reshape(-1), w[0].reshape(-1))
    assert torch.linalg.slogdet(jac).logabsdet.item() == pytest.approx(logdet[0].item(), rel=1e-6)


def test_logit_transform_jacobian_and_bits_per_dim_bookkeeping():
    y = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    w, logdet = realnvp.to_flow_space(y, 0.05)
    grad = torch.autograd.functional.jacobian(lambda v: realnvp.to_flow_space(v, 0.05)[0].sum(), y)
    assert torch.allclose(logdet, grad.log().flatten(1).sum(1))  # elementwise map: log|det| = Σ log w'(y)
    assert torch.allclose(realnvp.from_flow_space(w, 0.05), y)
    # a flat density on [0, 1]^D scores exactly 8 bits per dimension: log p(y) = 0 -> −D log 256
    assert realnvp.bits_per_dim(torch.tensor(-784 * math.log(256)), 784).item() == pytest.approx(8.0)


def test_train_step_finite_and_sampling_reproducible():
    config = FAMILY.config("tiny")
    torch.manual_seed(0)
    model = FAMILY.build(config)
    x = torch.randint(0, 256, (4, 1, 28, 28)).float()
    out = FAMILY.train_step(model, (x, torch.zeros(4)), config)
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    a = last(FAMILY.sample(model, 3, generator=seeded(5), temperature=0.7))
    b = last(FAMILY.sample(model, 3, generator=seeded(5), temperature=0.7))
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="temperature"):
        last(FAMILY.sample(model, 3, generator=seeded(5), temperature=5.0))


def test_log_likelihood_refuses_other_inputs():
    model = FAMILY.build(FAMILY.config("tiny"))
    with pytest.raises(ValueError, match="28"):
        realnvp.log_likelihood(model, torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="0 and 255"):
        realnvp.log_likelihood(model, torch.full((2, 1, 28, 28), 300.0))


@pytest.fixture(scope="module")
def shipped_scores():
    """Bits/dim on the first 500 test images: the shipped flow, an untrained one, and the card's figure."""
    model, config, _ = checkpoint.load(SHIPPED / "realnvp_mnist.safetensors")
    (x, _), info = FAMILY.examples(config, "test")
    x = x[:500]
    bits = realnvp.bits_per_dim(realnvp.log_likelihood(model, x), 784).mean().item()
    torch.manual_seed(0)
    untrained = realnvp.bits_per_dim(realnvp.log_likelihood(FAMILY.build(config).eval(), x), 784).mean().item()
    card = json.loads((SHIPPED / "realnvp_mnist.json").read_text())
    return bits, untrained, card, info


def test_shipped_mnist_flow_is_far_better_than_untrained_and_its_card_says_so(shipped_scores):
    bits, untrained, card, info = shipped_scores
    assert bits < 2.0 < untrained  # an untrained flow is the logit-space prior: several bits per dimension
    assert card["metrics"]["bits_per_dim"] == pytest.approx(bits, abs=0.1)  # 500 images vs the card's 10,000
    assert card["metrics"]["test_images"] == 10_000
    assert "dequantisation" in info["preprocessing"] and "dequantisation" in card["data"]["preprocessing"]


def test_shipped_mnist_flow_meets_the_bar(shipped_scores):
    bits, untrained, *_ = shipped_scores
    assert bits <= BAR_BITS < untrained, f"shipped RealNVP scores {bits:.3f} bits/dim"
