"""World Models (Ha & Schmidhuber 2018; Foster 1st ed. ch. 8) on CarRacing-v3: V sees, M remembers
and dreams, C drives. :mod:`env` holds the environment (an optional dependency), :mod:`vision`,
:mod:`memory` and :mod:`controller` the three parts, :mod:`pipeline` the CLI that trains them."""
from __future__ import annotations

from pathlib import Path

from models.core import ASSETS, checkpoint
from models.core.family import built, make_config

SHIPPED = ASSETS / "checkpoints"
NAMES = {"vision": "world_vision", "memory": "world_memory", "controller": "world_controller"}


def parts():
    from models.world import controller, memory, vision

    return {"vision": (vision.VisionConfig, vision.build), "memory": (memory.MemoryConfig, memory.build),
            "controller": (controller.ControllerConfig, controller.build)}


def save(path, part: str, model, config, **extra) -> Path:
    return checkpoint.save(path, model, f"world_{part}", config, **extra)


def load(path, part: str):
    """(model, config, meta) of a World Models checkpoint of ``part`` ("vision", "memory", "controller")."""
    import safetensors.torch

    meta = checkpoint.read_meta(path)
    if meta.get("family") != f"world_{part}":
        raise ValueError(f"{Path(path).name} is not a World Models {part} checkpoint (family {meta.get('family')!r}).")
    config_cls, build = parts()[part]
    try:
        config = make_config(config_cls, meta["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{Path(path).name} has a config this version cannot use: {e}") from None
    model = built(build, config)
    checkpoint.check_matches(path, model, f"world_{part}")
    missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise ValueError(f"{Path(path).name} does not match its config.")
    return model.eval(), config, meta
