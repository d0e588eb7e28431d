"""The family contract, checked for every family in the registry with its ``tiny`` preset.

Like diffusers' FastTests: a tiny model, one step. Anything a new family gets wrong about the
contract in ``models/family.py`` (loss dict, generator sampler, seeded randomness, checkpoint round
trip, presets, plain ValueErrors at the extremes) fails here before it reaches the studio.
"""
from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.core.family import last, seeded

FAMILY_NAMES = sorted(FAMILIES)
IMAGE_FAMILIES = sorted(n for n, f in FAMILIES.items() if f.kind == "image")


@pytest.fixture(params=FAMILY_NAMES)
def fam(request):
    return FAMILIES[request.param]


@pytest.fixture
def tiny(fam):
    """A tiny model with fixed initial weights, and its config."""
    config = fam.config("tiny")
    torch.manual_seed(0)
    return fam.build(config), config


def draw(fam, model, seed: int, n: int = 4, **controls):
    return last(fam.sample(model, n, generator=seeded(seed), **controls))


def same(a, b) -> bool:
    """Bit-for-bit equality of samples: tensors, or text, or containers of them."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_train_step_gives_finite_loss(fam, tiny):
    """One train_step on a real batch returns a dict with a finite scalar "loss" that trains the model:
    either it backpropagates (one-optimizer families) or the family's own optimizers move the weights."""
    model, config = tiny
    tensors, info = fam.examples(config, "train")
    assert info.get("title"), "the card needs a title for the data"
    batch = tuple(t[:config.batch_size] for t in tensors)
    if fam.optimizers:
        before = [p.detach().clone() for p in model.parameters()]
        out = fam.train_step(model, batch, config, fam.optimizers(model, config))
        assert "loss" in out and all(math.isfinite(float(v)) for v in out.values())
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
        return
    out = fam.train_step(model, batch, config)
    assert "loss" in out
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    assert all(math.isfinite(float(v.detach())) for v in out.values())
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sampler_is_a_generator(fam, tiny):
    """Samplers are generators (the studio streams them), and image samplers give (4, 1, 28, 28)
    float pixels in [0, 1]."""
    model, _ = tiny
    samples = fam.sample(model, 4, generator=seeded(0))
    assert iter(samples) is samples, "samplers must be generators (the studio streams them)"
    x = last(samples)
    if fam.kind == "image":
        assert x.shape == (4, 1, 28, 28)
        assert x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1


def test_same_seed_same_sample_other_seed_differs(fam, tiny):
    """The same seed gives bit-identical samples; another seed gives different ones."""
    model, _ = tiny
    a, b, c = draw(fam, model, 0), draw(fam, model, 0), draw(fam, model, 1)
    assert same(a, b)
    assert not same(a, c)


def test_save_load_round_trip(fam, tiny, tmp_path):
    """A checkpoint reloads with the same config and gives the same samples, bit for bit."""
    model, config = tiny
    path = checkpoint.save(tmp_path / "m.safetensors", model, fam.name, config, step=7)
    loaded, loaded_config, meta = checkpoint.load(path)
    assert loaded_config == config
    assert dataclasses.asdict(loaded_config) == dataclasses.asdict(config)
    assert meta["family"] == fam.name and meta["step"] == 7
    assert same(draw(fam, model, 3), draw(fam, loaded, 3))


@pytest.mark.parametrize("preset", ["book", "cpu", "tiny"])
def test_every_preset_builds(fam, preset):
    """Each named preset gives a valid config and a model with parameters."""
    config = fam.config(preset)
    assert isinstance(config, fam.config_cls)
    model = fam.build(config)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("overrides, words", [
    ({"latent_dim": 0}, "latent"),
    ({"beta": -1.0}, "β"),
    ({"lr": 0.0}, "learning rate"),
    ({"dataset": "cifar"}, "Unknown dataset 'cifar'"),
    ({"no_such_setting": 1}, "Unknown setting"),
])
def test_invalid_config_is_refused(fam, overrides, words):
    """Out-of-range or unknown settings raise a ValueError naming the problem (nothing is clamped)."""
    known = {f.name for f in dataclasses.fields(fam.config_cls)} | {"no_such_setting"}
    if not set(overrides) <= known:
        pytest.skip(f"{fam.name} has no {sorted(set(overrides) - known)} setting")
    with pytest.raises(ValueError, match=words):
        fam.config("tiny", **overrides)


def test_unknown_preset_is_refused(fam):
    """An unknown preset name raises a ValueError that lists the real ones."""
    with pytest.raises(ValueError, match="Unknown preset 'huge'.*tiny"):
        fam.config("huge")


@pytest.mark.parametrize("n, controls", [
    (0, {}),
    (10**6, {}),
    (4, {"scale": -1.0}),
])
def test_sampler_extremes_are_refused(fam, tiny, n, controls):
    """Zero or absurdly many samples, or a negative scale, raise a ValueError with a readable message."""
    if not set(controls) <= set(inspect.signature(fam.sample).parameters):
        pytest.skip(f"{fam.name}'s sampler has no {sorted(controls)} control")
    model, _ = tiny
    with pytest.raises(ValueError, match="must be between"):
        draw(fam, model, 0, n=n, **controls)


def numeric_controls(fam) -> list[str]:
    """The sampler's keyword controls whose default is a number (the ones the studio shows as sliders)."""
    params = list(inspect.signature(fam.sample).parameters.values())[2:]
    return [p.name for p in params
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)]


@pytest.mark.parametrize("value", [0, -1, 10**6, float("nan")])
def test_every_numeric_control_works_or_refuses_at_its_extremes(fam, tiny, value):
    """Each numeric sampler control set to 0, -1, 10⁶ or NaN either gives a valid sample or raises a
    ValueError; never another exception, never NaN pixels (nothing is silently broken)."""
    model, _ = tiny
    for name in numeric_controls(fam):
        try:
            x = draw(fam, model, 0, n=2, **{name: value})
        except ValueError as e:
            assert str(e), f"{name}={value}: empty message"
            continue
        if fam.kind != "image":
            continue  # the family's own tests check what a valid sample is
        assert x.shape == (2, 1, 28, 28), f"{name}={value}"
        assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, f"{name}={value}"


def test_negative_seed_is_refused():
    """Seeds are whole numbers ≥ 0."""
    with pytest.raises(ValueError, match="Seed"):
        seeded(-1)
    with pytest.raises(ValueError, match="Seed"):
        seeded(1.5)


def test_last_of_an_empty_sampler_is_an_error():
    """Draining a sampler that yields nothing is a ValueError, not a silent None."""
    with pytest.raises(ValueError, match="nothing"):
        last(iter(()))
