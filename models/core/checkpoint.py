"""Checkpoints: weights plus the config that built them, in one safetensors file.

safetensors stores raw tensors after a small JSON header and cannot run code, unlike pickle-based
``.pt`` files. The header's ``__metadata__`` holds our own fields (all strings, as the format
requires): ``format``, ``family``, ``config`` (JSON) and anything extra (JSON). Writes go to a
temporary file in the same folder and are renamed into place, so a crash never leaves half a file.

Every file is checked before it is trusted: a pickle, a truncated or corrupt file, or a
safetensors file from elsewhere is refused with a plain ``ValueError`` saying which it is; so is a
hostile header (a huge length, JSON nested thousands deep, tensors of another dtype or shape than the
family's config builds). Nothing non-finite is ever written (a run that blew up keeps its last good
file), and a write that fails (a full disk, a read-only folder) says so and leaves the old file intact.
A process killed mid-write (kill -9) leaves the previous file, plus a hidden temporary file that the
next write to that path removes.
"""
from __future__ import annotations

import errno
import json
import math
import os
import struct
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

FORMAT = "gdl-studio/1"
RENAMED = {"music": "music_transformer"}  # family names changed since a checkpoint was written
MAX_HEADER = 100 * 1024 * 1024
STALE_TMP_S = 600  # a temporary file this old was left by a writer that died (kill -9, power cut)
DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
       errno.EROFS: "the folder is on a read-only disk", errno.EACCES: "the folder is not writable",
       errno.EPERM: "the folder is not writable"}


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, flush it to the disk, then rename the temporary file over ``path``:
    a reader (or a restarted studio) sees the old file or the new one, never half of one. A failure
    to write is a ``ValueError`` saying why, with the previous file untouched."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        why = WHY.get(e.errno, e.strerror or str(e))
        kept = " the previous file is kept." if path.exists() else ""
        raise ValueError(f"Could not write {path.name} in {path.parent}: {why}.{kept}") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def _sweep(path: Path) -> None:
    """Remove temporary files of ``path`` that a writer killed mid-write left behind."""
    now = time.time()
    for old in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - old.stat().st_mtime > STALE_TMP_S:
                old.unlink()
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (not needed against kill -9, which the page cache survives,
    but against a power cut)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_finite(model: nn.Module, name: str = "the model") -> None:
    """Refuse weights (or float buffers such as BatchNorm statistics) that hold NaN or ±inf."""
    for key, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} has non-finite values in {key} (NaN or inf): training diverged, so it "
                             "is not saved; the last good checkpoint is kept.")


def save(path, model: nn.Module, family: str, config, **extra) -> Path:
    """Write ``model``'s weights with its family, config and extra JSON-able fields."""
    from dataclasses import asdict

    check_finite(model, f"{family} model for {Path(path).name}")
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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError(f"{name} has a corrupt header; it is not a checkpoint the studio can read.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name} has a corrupt header; it is not a checkpoint the studio can read.")
    end = max((_tensor_entry(name, k, v)[2] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ValueError(f"{name} is truncated: it holds {size} bytes but its header promises {8 + n + end}.")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{name} is a safetensors file, but not one written by this studio "
                         "(no studio metadata: family and config are unknown).")
    out = {}
    for k, v in meta.items():
        try:
            out[k] = v if k == "format" else json.loads(v)
        except (TypeError, json.JSONDecodeError, RecursionError):
            raise ValueError(f"{name} has corrupt metadata field {k!r}.") from None
    if out.get("family") in RENAMED:
        out["family"] = RENAMED[out["family"]]
    return out


def _tensor_entry(name: str, key: str, entry) -> tuple[str, list[int], int]:
    """(dtype, shape, end offset) of one header entry, refusing one that cannot describe a tensor."""
    ok = (isinstance(entry, dict) and entry.get("dtype") in DTYPES and isinstance(entry.get("shape"), list)
          and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"])
          and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
          and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in entry["data_offsets"]))
    if ok:
        begin, end = entry["data_offsets"]
        ok = end - begin == math.prod(entry["shape"]) * DTYPES[entry["dtype"]]
    if not ok:
        raise ValueError(f"{name} has a corrupt header: its entry for {str(key)[:60]!r} is not a tensor "
                         "(dtype, shape and byte range disagree).")
    return entry["dtype"], entry["shape"], entry["data_offsets"][1]


def tensor_specs(path) -> dict[str, tuple[str, list[int]]]:
    """Name -> (safetensors dtype, shape) of every tensor in a file whose header :func:`read_meta` accepted."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: _tensor_entry(Path(path).name, k, v)[:2] for k, v in header.items() if k != "__metadata__"}


TORCH_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}


def check_matches(path, model: nn.Module, family: str) -> None:
    """Refuse a file whose tensors are not the dtype and shape of the model its config builds (before
    any of them is copied into it: a float64 or int8 tensor would otherwise be converted silently)."""
    expected = {k: (TORCH_DTYPES.get(v.dtype), list(v.shape)) for k, v in model.state_dict().items()}
    for key, (dtype, shape) in tensor_specs(path).items():
        if key in expected and (dtype, shape) != expected[key]:
            want = expected[key]
            raise ValueError(f"{Path(path).name} does not match its {family} config: {key} is {dtype} "
                             f"{tuple(shape)} in the file, but the model has {want[0]} {tuple(want[1])}.")


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
    from models.core.family import built, make_config

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
    model = built(fam.build, config)  # its initial weights are overwritten: the global RNG is left alone
    check_matches(path, model, family)
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
