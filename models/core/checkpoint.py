"""Checkpoints: weights plus the config that built them, in one safetensors file.

safetensors stores raw tensors after a small JSON header and cannot run code, unlike pickle-based
``.pt`` files. The header's ``__metadata__`` holds our own fields (all strings, as the format
requires): ``format``, ``family``, ``config`` (JSON) and anything extra (JSON). Writes go to a
temporary file in the same folder and are renamed into place, so a crash never leaves half a file.

Every file is checked before it is trusted: a pickle, a truncated or corrupt file, or a
safetensors file from elsewhere is refused with a plain ``ValueError`` saying which it is.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

FORMAT = "gdl-studio/1"
RENAMED = {"music": "music_transformer"}  # family names changed since a checkpoint was written
MAX_HEADER = 100 * 1024 * 1024


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path, model: nn.Module, family: str, config, **extra) -> Path:
    """Write ``model``'s weights with its family, config and extra JSON-able fields."""
    from dataclasses import asdict

    meta = {"format": FORMAT, "family": json.dumps(family), "config": json.dumps(asdict(config))}
    meta.update({k: json.dumps(v) for k, v in extra.items()})
    _atomic(path, lambda tmp: safetensors.torch.save_model(model, tmp, metadata=meta))
    return Path(path)


def save_tensors(path, tensors: dict[str, torch.Tensor], **extra) -> Path:
    """Write a plain dict of tensors (optimizer state, feature statistics) the same way."""
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in extra.items()}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=meta))
    return Path(path)


def read_meta(path) -> dict:
    """Validate the file's header and return our metadata, JSON fields decoded."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ValueError(f"No checkpoint file at {path}.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        # a safetensors header length may begin with byte 0x80 too: only a file that is not a safetensors
        # header (a JSON object right after the length) is taken for a pickle or a zip
        header_follows = 0 < n <= min(MAX_HEADER, size - 8) and f.read(1) == b"{"
        f.seek(8)
        if not header_follows and (head[:2] == b"PK" or head[:1] == b"\x80"):
            raise ValueError(f"{name} is a pickle/PyTorch .pt file; the studio never unpickles files. "
                             "Re-save the weights as safetensors.")
        if len(head) < 8:
            raise ValueError(f"{name} is too short to be a safetensors checkpoint (corrupt or truncated).")
        if n > MAX_HEADER or n > size - 8:
            raise ValueError(f"{name} is not a valid safetensors checkpoint (corrupt or truncated header).")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{name} has a corrupt header; it is not a checkpoint the studio can read.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name} has a corrupt header; it is not a checkpoint the studio can read.")
    end = max((v["data_offsets"][1] for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + n + end > size:
        raise ValueError(f"{name} is truncated: it holds {size} bytes but its header promises {8 + n + end}.")
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{name} is a safetensors file, but not one written by this studio "
                         "(no studio metadata: family and config are unknown).")
    out = {}
    for k, v in meta.items():
        try:
            out[k] = v if k == "format" else json.loads(v)
        except json.JSONDecodeError:
            raise ValueError(f"{name} has corrupt metadata field {k!r}.") from None
    if out.get("family") in RENAMED:
        out["family"] = RENAMED[out["family"]]
    return out


def load_tensors(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a studio safetensors file, validated first."""
    meta = read_meta(path)
    try:
        return safetensors.torch.load_file(str(path)), meta
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{Path(path).name} could not be read: {e}") from None


def load(path, families: dict | None = None, device=None):
    """Rebuild the model a checkpoint describes and load its weights.

    Returns ``(model, config, meta)``; the model is in eval mode on ``device`` (CPU by default).
    """
    from models import FAMILIES
    from models.core.family import make_config

    families = families or FAMILIES
    meta = read_meta(path)
    family = meta.get("family")
    if family not in families:
        raise ValueError(f"{Path(path).name} belongs to family {family!r}, which this studio does not know.")
    fam = families[family]
    try:
        config = make_config(fam.config_cls, meta["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{Path(path).name} has a config this version cannot use: {e}") from None
    model = fam.build(config)
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{Path(path).name} could not be loaded: {e}") from None
    if missing or unexpected:
        raise ValueError(f"{Path(path).name} does not match its {family} config "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}).")
    return model.to(device or "cpu").eval(), config, meta


def write_json(path, data: dict) -> Path:
    """Atomically write a JSON card."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    _atomic(path, lambda tmp: Path(tmp).write_text(text))
    return Path(path)
