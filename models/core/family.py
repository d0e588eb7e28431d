"""The contract every generative family follows, and the few helpers they all share.

A family is one file in ``models/`` that exposes a :class:`Family` record:

* a **config dataclass** with named presets: ``book`` (the values the book uses), ``cpu`` (trains
  in minutes on two cores) and ``tiny`` (for tests);
* ``build(config) -> nn.Module``;
* ``train_step(model, batch, config) -> dict`` of scalar tensors, ``"loss"`` being the one
  optimised; the shared loop in :mod:`models.train` does the rest;
* ``sample(model, n, generator=..., **controls)``, a **generator** that yields progressively
  better results (a VAE decodes once, a diffusion model yields every few steps); :func:`last`
  drains it;
* ``evaluate(model, *test_tensors) -> dict`` of held-out metrics written to the checkpoint card.

Image families need nothing more. Other families plug in through optional hooks:

* ``data(config, split) -> (tensors, info)``: the training examples as tensors sharing dim 0
  (token windows, piano rolls, 2-D points) and a dict for the card (``title``, plus anything else
  worth recording). The default reads ``config.dataset`` from :mod:`models.data` (images, labels).
* ``optimizers(model, config) -> {name: Optimizer}``: for families that step several networks
  themselves (a GAN's D and G). Then ``train_step(model, batch, config, optimizers)`` does its own
  backward passes and steps, and returns detached metrics; the loop still saves and resumes every
  optimizer and stops on non-finite values.
* ``preview(model, generator)``: what training shows every few hundred steps (default: 16 images
  drawn with ``score_kwargs``); text families return a string.
* ``kind``: ``"image"`` families get classifier scores on their cards and the image contract tests;
  ``unit`` names what the training speed counts (images/s, sequences/s).
* ``log_likelihood(model, x) -> Tensor``: per-example log p(x) in nats of held-out examples, in the
  family's own preprocessing (say which in the data info's ``preprocessing``); ``likelihood`` says
  whether it is ``"exact"`` or a lower ``"bound"`` (an ELBO). The likelihood table ranks these.
* ``ema_parts``: the submodules whose weights the loop averages when the config's ``ema_decay`` is
  above 0 (``""`` is the whole model; a GAN names its generator), see :mod:`models.core.train`.
* ``describe(config_dict) -> str``: the few words that tell this family's checkpoints apart
  ("latent 16, β 4"), and ``card_lines(metrics) -> list[str]``: the card's held-out metric lines,
  in the family's own terms. The studio shows both and never names a family's config keys.

Randomness is always an argument (``generator: torch.Generator``) so the same seed and controls
give the same output, bit for bit, on CPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class Family:
    """What the training loop, the checkpoint store and the studio need to know about a family."""

    name: str  # registry key and checkpoint prefix, e.g. "vae"
    title: str  # human name shown in the studio
    config_cls: type
    build: Callable[[Any], nn.Module]
    train_step: Callable[[nn.Module, tuple, Any], dict]
    sample: Callable[..., Iterator[torch.Tensor]]
    evaluate: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict] | None = None
    presets: dict = field(default_factory=dict)  # name -> dict of overrides
    score_kwargs: dict = field(default_factory=dict)  # sampler controls for the card's sample scores
    # sampler controls the page opens with for a class-conditional model: the card's class scores
    # ask for every class in turn with them (e.g. diffusion's guidance w = 3)
    class_kwargs: dict = field(default_factory=dict)
    # the setting the page opens with when it needs the model itself (the VAE's fitted q(z)):
    # (model, config) -> (the setting in words, sampler kwargs); the card scores it beside score_kwargs
    opening: Callable[[nn.Module, Any], tuple[str, dict]] | None = None
    data: Callable[[Any, str], tuple[tuple, dict]] | None = None  # default: image dataset config.dataset
    optimizers: Callable[[nn.Module, Any], dict] | None = None  # default: one Adam(lr=config.lr) on "loss"
    preview: Callable[[nn.Module, torch.Generator], Any] | None = None  # default: 16 images
    kind: str = "image"  # "image" families are scored by the project's classifier
    unit: str = "images"  # what one training example is, for speeds
    describe: Callable[[dict], str] | None = None  # config dict -> "latent 16, β 4" (default: nothing)
    card_lines: Callable[[dict], list[str]] | None = None  # held-out metrics -> lines (default: generic)
    log_likelihood: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None  # per-example nats
    likelihood: str = "exact"  # what log_likelihood gives: "exact", or "bound" (a lower bound, e.g. an ELBO)
    ema_parts: tuple = ("",)  # submodules averaged when config.ema_decay > 0 ("" = the whole model)

    def summary(self, config: dict) -> str:
        """The family's own few words about a config (for checkpoint lists and cards)."""
        try:
            return self.describe(config) if self.describe else ""
        except (KeyError, TypeError, ValueError):  # a card from an older version, or a partial one
            return ""

    def metric_lines(self, metrics: dict) -> list[str]:
        """The card's held-out metric lines: the family's own, else every number it recorded."""
        if self.card_lines:
            try:
                return self.card_lines(metrics)
            except (KeyError, TypeError, ValueError):
                pass
        return numbered_metrics(metrics)

    def examples(self, config, split: str) -> tuple[tuple, dict]:
        """The training (or held-out) examples for ``config`` and what the card says about them."""
        if self.data is not None:
            return self.data(config, split)
        from models.core import data

        return data.images(config.dataset, split), {"title": data.DATASETS[config.dataset]["title"],
                                                     "dataset": config.dataset}

    def config(self, preset: str = "book", **overrides) -> Any:
        """A config from a named preset plus overrides, validated."""
        if preset not in self.presets:
            raise ValueError(f"Unknown preset {preset!r} for {self.name}; choose from {sorted(self.presets)}.")
        return make_config(self.config_cls, {**self.presets[preset], **overrides})


def make_config(config_cls: type, values: dict) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys with a readable message."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown setting(s) {unknown} for {config_cls.__name__}.")
    config = config_cls(**values)
    check = getattr(config, "validate", None)
    if check:
        check()
    return config


def numbered_metrics(metrics: dict, skip=("sample_scores",)) -> list[str]:
    """One line listing every numeric held-out metric, named as the family's evaluate() names them."""
    rest = {k: v for k, v in metrics.items() if k not in skip and isinstance(v, (int, float))}
    if not rest:
        return []
    return ["Held-out: " + ", ".join(f"{k.replace('_', ' ')} **{v:.4g}**" for k, v in rest.items())]


def check_range(name: str, value, low, high) -> None:
    """Raise a plain ValueError when a control is outside its range (nothing is silently clamped)."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}; got {value}.")


LR_DECAYS = ("none", "cosine")  # the shared loop's learning-rate schedules (models.core.train.lr_factor)


def check_lr_decay(value: str) -> None:
    if value not in LR_DECAYS:
        raise ValueError(f"lr_decay must be one of {', '.join(map(repr, LR_DECAYS))}; got {value!r}.")


def last(samples: Iterator):
    """Drain a progressive sampler and return its final (best) result."""
    result = None
    for result in samples:
        pass
    if result is None:
        raise ValueError("The sampler produced nothing.")
    return result


def seeded(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded for reproducible sampling."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Seed must be a whole number ≥ 0; got {seed!r}.")
    return torch.Generator(device=device).manual_seed(seed)


def built(make: Callable, *args, seed: int | None = None, **kwargs):
    """``make(*args, **kwargs)`` (a network) with its initial weights drawn from ``seed``, or thrown away
    when ``seed`` is None (weights about to be loaded). torch's layers initialise from the global RNG, so
    this runs inside :func:`torch.random.fork_rng`: the global RNG is left exactly as it was, which a
    server shared by several visitors needs."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return make(*args, **kwargs)


def default_device() -> torch.device:
    """The one place a device is chosen: the accelerator when there is one, else the CPU."""
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator()
    return torch.device("cpu")


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def hardware_name(device) -> str:
    """What a checkpoint card records as the hardware it was trained on."""
    device = torch.device(device)
    if device.type == "cpu":
        return f"CPU, {torch.get_num_threads()} threads"
    return torch.get_device_module(device).get_device_name(device)
