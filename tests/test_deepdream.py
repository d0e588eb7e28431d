"""DeepDream: gradient ascent raises the chosen layer's activation, octaves come out smallest first,
detail reinjection matters, and bad controls give clear messages."""
import pytest
import torch

from models.paint import deepdream as dd


def photo():
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(72, 96), mode="bilinear")


@pytest.mark.parametrize("layer", ["stage3", "stage5"])
def test_dreaming_raises_the_chosen_layers_activation(layer):
    x = photo()
    cfg = dd.DreamConfig(layers={layer: 1.0}, octaves=1, iterations=5, max_loss=0, size=96)
    out = list(dd.dream(x, cfg))[-1]
    assert dd.layer_activation(out["image"], layer) > 1.2 * dd.layer_activation(x, layer)
    assert out["losses"][-1] > out["losses"][0]


def test_octaves_grow_to_the_image_size_and_yield_one_result_each():
    cfg = dd.DreamConfig(octaves=3, octave_scale=1.5, iterations=1, size=96)
    results = list(dd.dream(photo(), cfg))
    assert [r["octave"] for r in results] == [1, 2, 3]
    assert [r["shape"] for r in results] == [(32, 43), (48, 64), (72, 96)]
    assert results[-1]["image"].shape[-2:] == (72, 96)


def test_detail_reinjection_keeps_more_of_the_original():
    x = photo()
    kw = dict(octaves=3, octave_scale=1.5, iterations=0, size=96)
    with_detail = list(dd.dream(x, dd.DreamConfig(reinject=True, **kw)))[-1]["image"]
    without = list(dd.dream(x, dd.DreamConfig(reinject=False, **kw)))[-1]["image"]
    assert (with_detail - x).abs().mean() < 0.5 * (without - x).abs().mean()


def test_max_loss_stops_an_octave_early():
    cfg = dd.DreamConfig(layers={"stage4": 1.0}, octaves=1, iterations=20, max_loss=1.05, size=96)
    r = list(dd.dream(photo(), cfg))[-1]
    assert r["stopped_early"] and len(r["losses"]) < 20


@pytest.mark.parametrize("change, message", [(dict(layers={}), "at least one layer"),
                                             (dict(layers={"mixed4": 1.0}), "Unknown layer"),
                                             (dict(step=0), "Step"), (dict(octaves=0), "Octaves"),
                                             (dict(octave_scale=0.5), "Octave scale"), (dict(size=10), "Size")])
def test_bad_controls_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dd.check(dd.DreamConfig(**change))


def test_random_layers_are_reproducible_and_valid():
    a = dd.random_layers(torch.Generator().manual_seed(5))
    assert a == dd.random_layers(torch.Generator().manual_seed(5))
    assert set(a) == set(dd.LAYERS) and 1 <= sum(v > 0 for v in a.values()) <= 3
    dd.check(dd.DreamConfig(layers=a))
