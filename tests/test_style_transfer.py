"""Style transfer: the losses match hand computations, bad controls give clear messages, and a few
optimisation steps at a small size move the image towards the style."""
import pytest
import torch

from models.paint import style_transfer as st


def test_gram_matrix_of_a_known_tensor_matches_hand_computation():
    # two channels over a 2×2 map: f1 = [1, 2, 3, 4], f2 = [0, 1, 0, 1]
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    g = st.gram(f)[0]
    assert torch.equal(g, torch.tensor([[1 + 4 + 9 + 16, 2 + 4], [2 + 4, 2]], dtype=torch.float32))


def test_style_loss_is_zero_for_identical_features_and_positive_otherwise():
    f = torch.rand(1, 8, 5, 7)
    assert st.style_loss(st.gram(f), f, 35).item() == 0.0
    assert st.style_loss(st.gram(f), f * 1.1, 35).item() > 0


def test_style_loss_uses_the_books_normalisation():
    f = torch.ones(1, 1, 1, 2)  # G = [[2]]
    assert st.style_loss(torch.zeros(1, 1, 1), f, pixels=2).item() == pytest.approx(4 / (4 * 9 * 4))


def test_content_and_tv_losses():
    a = torch.zeros(1, 2, 3, 3)
    assert st.content_loss(a, a + 0.5).item() == pytest.approx(18 * 0.25)
    flat = torch.full((1, 3, 4, 4), 0.3)
    assert st.tv_loss(flat).item() == 0
    step = flat.clone()
    step[:, :, :, 2:] = 0.3 + 1 / 255  # one pixel level across a vertical edge
    assert st.tv_loss(step).item() == pytest.approx(3 * 3 * 1.0)  # 3 rows × 3 channels × (0 + 1)^1.25


def test_layer_shares_follow_weights_and_decay():
    shares = st.layer_shares({"block1_conv1": 1, "block2_conv1": 1}, decay=0.5)
    assert shares["block1_conv1"] == pytest.approx(2 / 3)
    assert sum(st.layer_shares({"block3_conv1": 2, "block5_conv1": 1}, 3.0).values()) == pytest.approx(1)


@pytest.mark.parametrize("layers", [{}, {"block1_conv1": 0.0}])
def test_no_style_layer_is_a_clear_message(layers):
    with pytest.raises(ValueError, match="at least one style layer"):
        st.check(st.StyleConfig(style_layers=layers))


@pytest.mark.parametrize("change, message", [(dict(content_layer="block5_conv3"), "content layer"),
                                             (dict(size=8), "Output size"), (dict(init="zeros"), "Start"),
                                             (dict(optimizer="sgd"), "Optimizer"), (dict(decay=0), "Decay"),
                                             (dict(style_weight=-1), "Style weight")])
def test_bad_controls_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        st.check(st.StyleConfig(**change))


def small(size=64, **kw):
    return st.StyleConfig(size=size, preview_size=32, preview_steps=2, steps=4, snapshot_every=2,
                          style_layers={"block1_conv1": 1.0, "block2_conv1": 1.0}, content_layer="block2_conv2", **kw)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_transfer_streams_a_preview_then_full_size_and_lowers_the_style_loss(optimizer):
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 48, 64, generator=g) * 0.2 + 0.4  # a dull content image
    style = (torch.arange(64).float().view(1, 1, 1, 64).expand(1, 3, 48, 64) % 8 < 4).float()  # stripes
    cfg = small(optimizer=optimizer, lr=10.0)
    snaps = list(st.transfer(content, style, cfg))
    assert [s["stage"] for s in snaps][0] == "preview" and snaps[-1]["stage"] == "full"
    assert snaps[0]["image"].shape[-1] == 32 and snaps[-1]["image"].shape[-2:] == (48, 64)
    h = snaps[-1]["history"]
    assert len(h) >= 6 and {"content", "style", "tv", "total"} <= h[0].keys()  # L-BFGS may add line-search steps
    objective = st.Objective(content, style, cfg, st.check(cfg))
    before, after = objective(content)[1], objective(snaps[-1]["image"])[1]
    assert after["style"] < 0.9 * before["style"]
    assert 0 <= snaps[-1]["image"].min() and snaps[-1]["image"].max() <= 1


def test_noise_start_is_reproducible_from_a_seed():
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    cfg = st.StyleConfig(size=32, preview_size=0, steps=1, init="noise", optimizer="adam",
                         style_layers={"block1_conv1": 1.0}, content_layer="block1_conv2")
    a = st.transfer(content, style, cfg, torch.Generator().manual_seed(3))
    b = st.transfer(content, style, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(next(a)["image"], next(b)["image"])


def test_gram_views_compare_the_three_images():
    img = torch.rand(1, 3, 32, 32)
    views = st.gram_views(img, img, img, "block1_conv1", channels=8)
    assert views["result"].shape == (8, 8)
    assert torch.allclose(views["content"], views["style"])


def test_gram_distance_is_relative_to_the_target():
    g = st.gram(torch.rand(1, 4, 3, 3))[0]
    assert st.gram_distance(g, g) == 0.0
    assert st.gram_distance(2 * g, g) == pytest.approx(1.0)
    assert st.gram_distance(torch.zeros_like(g), g) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero"):
        st.gram_distance(g, torch.zeros_like(g))


def test_stages_put_the_preview_first_and_count_every_step():
    assert st.stages(st.StyleConfig(size=128, preview_size=64, preview_steps=10, steps=30)) == [(64, 10), (128, 30)]
    assert st.stages(st.StyleConfig(size=64, preview_size=96, steps=5)) == [(64, 5)]  # no preview above the size
    assert st.stages(st.StyleConfig(size=128, preview_size=0, steps=5)) == [(128, 5)]
    cfg = small(optimizer="adam")
    snaps = list(st.transfer(torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 32), cfg))
    assert snaps[-1]["step"] == sum(n for _, n in st.stages(cfg))


def test_with_preset_applies_the_books_weights():
    cfg = st.with_preset(st.StyleConfig(size=96), "Foster (Keras example)")
    assert (cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.optimizer) == (0.025, 1.0, 1.0, "lbfgs")
    assert cfg.size == 96  # the rest of the settings are kept
    with pytest.raises(ValueError, match="Unknown preset"):
        st.with_preset(st.StyleConfig(), "Picasso")
