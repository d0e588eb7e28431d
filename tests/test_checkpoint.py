"""Checkpoint files: only studio safetensors files are trusted, and writes are atomic.

Every bad file a user could hand the studio (a pickle, half a download, garbage, someone else's
safetensors, a file whose weights and config disagree) must be refused with a ValueError that says
which it is, and nothing in such a file may ever run.
"""
from __future__ import annotations

import os
import pickle

import pytest
import safetensors.torch
import torch
from torch import nn

from models import FAMILIES
from models.core import checkpoint
from models.core.family import last, seeded

VAE = FAMILIES["vae"]


@pytest.fixture
def saved(tmp_path):
    """A real tiny-VAE checkpoint in tmp_path."""
    config = VAE.config("tiny")
    torch.manual_seed(0)
    model = VAE.build(config)
    return checkpoint.save(tmp_path / "good.safetensors", model, "vae", config, step=1)


class _WritesMarker:
    """Unpickling this object would create a marker file: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_good_checkpoint_loads(saved):
    """The fixture itself loads (so the refusals below are about the damage, not the fixture)."""
    model, config, meta = checkpoint.load(saved)
    assert meta["format"] == checkpoint.FORMAT and meta["step"] == 1
    assert config == VAE.config("tiny")


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_save_pickle_is_refused(tmp_path, zipfile):
    """A .pt file from torch.save (zip or legacy pickle) is refused, and the message says pickle."""
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(ValueError, match="pickle"):
        checkpoint.load(path)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_never_unpickled(tmp_path, protocol):
    """A pickle whose __reduce__ would create a file is refused without running it."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_WritesMarker(marker), protocol=protocol))
    for read in (checkpoint.load, checkpoint.read_meta, checkpoint.load_tensors):
        with pytest.raises(ValueError):
            read(path)
    assert not marker.exists()


def test_malicious_torch_save_is_never_unpickled(tmp_path):
    """The same payload inside a torch.save zip is refused without running it."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": _WritesMarker(marker)}, path)
    with pytest.raises(ValueError, match="pickle"):
        checkpoint.load(path)
    assert not marker.exists()


def test_truncated_file_is_refused(saved, tmp_path):
    """Half a checkpoint (an interrupted copy) is refused as truncated."""
    cut = tmp_path / "cut.safetensors"
    blob = saved.read_bytes()
    cut.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.load(cut)


def test_garbage_is_refused(tmp_path):
    """Random bytes are refused as corrupt."""
    path = tmp_path / "noise.safetensors"
    g = torch.Generator().manual_seed(0)
    blob = torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).numpy().tobytes()
    assert blob[:1] != b"\x80" and blob[:2] != b"PK"  # the seed gives bytes that look like neither pickle
    path.write_bytes(blob)
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint.load(path)


def test_garbage_json_header_is_refused(tmp_path):
    """A plausible length prefix followed by non-JSON bytes is refused as corrupt."""
    path = tmp_path / "bad_header.safetensors"
    path.write_bytes((16).to_bytes(8, "little") + b"\xff" * 16 + b"\0" * 64)
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint.load(path)


def test_empty_file_is_refused(tmp_path):
    """An empty file is refused with a message, not a struct.error."""
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="too short"):
        checkpoint.load(path)


def test_foreign_safetensors_is_refused(tmp_path):
    """A valid safetensors file without studio metadata is refused: its family and config are unknown."""
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"weight": torch.ones(2, 2)}, str(path))
    with pytest.raises(ValueError, match="not one written by this studio"):
        checkpoint.load(path)


def test_missing_file_is_refused(tmp_path):
    """A path with no file is a ValueError naming it."""
    with pytest.raises(ValueError, match="No checkpoint file"):
        checkpoint.load(tmp_path / "nowhere.safetensors")


def test_unknown_family_is_refused(tmp_path):
    """A studio file from a family this version does not have is refused by name."""
    config = VAE.config("tiny")
    path = checkpoint.save(tmp_path / "x.safetensors", VAE.build(config), "hologram", config)
    with pytest.raises(ValueError, match="family 'hologram'"):
        checkpoint.load(path)


def test_weights_of_the_wrong_shape_are_refused(tmp_path):
    """Weights saved with one config but labelled with another (other latent size) are refused."""
    model = VAE.build(VAE.config("tiny", latent_dim=2))
    path = checkpoint.save(tmp_path / "x.safetensors", model, "vae", VAE.config("tiny", latent_dim=3))
    with pytest.raises(ValueError, match="does not match its vae config: .* in the file, but the model has"):
        checkpoint.load(path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    """A file whose tensors are not the config's modules at all is refused as not matching."""
    path = checkpoint.save(tmp_path / "x.safetensors", nn.Linear(2, 2), "vae", VAE.config("tiny"))
    with pytest.raises(ValueError, match="does not match its vae config"):
        checkpoint.load(path)


def test_config_this_version_cannot_use_is_refused(tmp_path):
    """A studio file whose config has a setting this version does not know is refused, not half-read."""
    path = tmp_path / "x.safetensors"
    model = VAE.build(VAE.config("tiny"))
    safetensors.torch.save_model(model, str(path), metadata={
        "format": checkpoint.FORMAT, "family": '"vae"', "config": '{"latent_dim": 2, "warp_drive": true}'})
    with pytest.raises(ValueError, match="config this version cannot use"):
        checkpoint.load(path)


def test_save_leaves_no_temporary_files(tmp_path):
    """After save, save_tensors and write_json the folder holds only the three files asked for."""
    config = VAE.config("tiny")
    checkpoint.save(tmp_path / "m.safetensors", VAE.build(config), "vae", config)
    checkpoint.save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(3)}, note="x")
    checkpoint.write_json(tmp_path / "m.json", {"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.safetensors", "t.safetensors"]


def test_failed_write_keeps_the_previous_file(saved, monkeypatch):
    """A write that dies halfway leaves the old checkpoint intact and no temporary file behind."""
    before = saved.read_bytes()
    model, config, _ = checkpoint.load(saved)
    expected = last(VAE.sample(model, 4, generator=seeded(0)))

    def dies_halfway(model, filename, metadata=None, **kw):
        with open(filename, "wb") as f:
            f.write(before[:100])
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", dies_halfway)
    other = VAE.build(config)
    with pytest.raises(ValueError, match="disk full.*previous file is kept"):
        checkpoint.save(saved, other, "vae", config, step=2)
    monkeypatch.undo()

    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
    reloaded, _, meta = checkpoint.load(saved)
    assert meta["step"] == 1
    assert torch.equal(last(VAE.sample(reloaded, 4, generator=seeded(0))), expected)


def test_tensor_files_round_trip(tmp_path):
    """save_tensors / load_tensors keep tensors and JSON metadata exactly."""
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    path = checkpoint.save_tensors(tmp_path / "t.safetensors", tensors, groups=[{"lr": 0.1}], note="hi")
    loaded, meta = checkpoint.load_tensors(path)
    assert set(loaded) == {"a", "b"}
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert meta["groups"] == [{"lr": 0.1}] and meta["note"] == "hi"


def test_a_header_length_starting_with_byte_0x80_is_not_taken_for_a_pickle(tmp_path):
    """The little-endian header length's first byte can be 0x80, a pickle's first byte: such a file (an
    optimizer state of a real run hit this) is still read as the safetensors file it is."""
    path = tmp_path / "state.safetensors"
    for pad in range(64):
        checkpoint.save_tensors(path, {"w": torch.ones(3)}, note="x" * pad)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    tensors, meta = checkpoint.load_tensors(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta["note"].startswith("x")
