"""Bad files, checked by content, not by name: each is refused with a clear message and the app keeps
working. Uploads are also bounded in size when they arrive (Gradio's ``max_file_size``).

Images: not an image, 0 bytes, 40 megapixels, a decompression bomb (also as a sketch, which Gradio
decodes itself). Checkpoints: a pickle or a zip renamed .safetensors, a safetensors file with a hostile
header (a huge length, JSON nested far too deep, entries that are not tensors, the wrong dtypes or
shapes for the family). MIDI: not MIDI, 10⁶ notes. Text: another encoding, 1 GB.
"""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import hostile
from models import FAMILIES
from models.core import checkpoint
from models.music import notes
from models.text import corpus
from studio import parts, widgets

VAE = FAMILIES["vae"]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return hostile.bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


# --- images ----------------------------------------------------------------------------------------

def test_an_image_that_is_not_an_image_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not an image the studio can read"):
        widgets.read_image(hostile.garbage(tmp_path / "photo.png"))


def test_a_zero_byte_image_is_refused(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty or missing"):
        widgets.read_image(tmp_path / "empty.jpg")


def test_a_40_megapixel_image_is_refused_before_decoding(tmp_path):
    Image.new("L", (8000, 5000), 128).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="8000×5000 pixels.*up to 25 megapixels"):
        widgets.read_image(tmp_path / "big.png")


def test_a_decompression_bomb_is_refused_before_decoding(bomb):
    assert bomb.stat().st_size < 1_000_000  # a few hundred KB that would decode to 400 MB
    with pytest.raises(ValueError, match="megapixels"):
        widgets.read_image(bomb)


def test_a_decompression_bomb_sent_to_the_page_gets_a_message_and_the_app_keeps_working(app_url, bomb):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="megapixels"):
        client.predict(checkpoint="vae_mnist", file_path=handle_file(str(bomb)), api_name="/vae_encode_upload")
    with pytest.raises(Exception, match="far too large to open|megapixels"):
        client.predict(checkpoint="vae_mnist",
                       sketch={"background": None, "layers": [], "composite": handle_file(str(bomb))},
                       api_name="/vae_encode_sketch")
    assert client.predict(checkpoint="vae_mnist", seed=1, n=4, scale=1.0, api_name="/vae_samples")[0]


def test_uploads_are_bounded_in_size_when_they_arrive(app_url, tmp_path):
    import httpx

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(parts.MAX_UPLOAD_BYTES + (1 << 20))
    with open(big, "rb") as f:
        r = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.bin", f)}, timeout=120)
    assert r.status_code == 413 and "exceeded maximum allowed size" in r.text
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    with open(small, "rb") as f:
        assert httpx.post(f"{app_url}gradio_api/upload", files={"files": ("small.bin", f)}, timeout=60).status_code == 200


# --- checkpoints -------------------------------------------------------------------------------------

@pytest.fixture
def good(tmp_path):
    config = VAE.config("tiny")
    return checkpoint.save(tmp_path / "good.safetensors", VAE.build(config), "vae", config, step=1)


@pytest.mark.parametrize("make, said", [(hostile.pickle_named_safetensors, "pickle"),
                                        (hostile.zip_named_safetensors, "pickle")], ids=["pickle", "zip"])
def test_a_pickle_or_zip_renamed_safetensors_is_refused_on_import(user_dir, tmp_path, make, said):
    with pytest.raises(ValueError, match=said):
        parts.import_into(("vae",), make(tmp_path / "weights.safetensors"), "local")
    assert not list(user_dir.glob("*.safetensors")) if user_dir.exists() else True


def _header_of(path):
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


HOSTILE_HEADERS = {
    "huge length": lambda h, body: (2**62).to_bytes(8, "little") + b"{}",
    "nested JSON": lambda h, body: b"[" * 100_000 + b"]" * 100_000,
    "entry not a tensor": lambda h, body: {**h, "encoder.0.weight": {"dtype": "F32", "shape": "big",
                                                                     "data_offsets": [0, 4]}},
    "offsets disagree with shape": lambda h, body: {**h, next(k for k in h if k != "__metadata__"):
                                                    {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4]}},
    "unknown dtype": lambda h, body: {**h, next(k for k in h if k != "__metadata__"):
                                      {**h[next(k for k in h if k != "__metadata__")], "dtype": "F128"}},
    "metadata not strings": lambda h, body: {**h, "__metadata__": {**h["__metadata__"], "config": {"a": 1}}},
}


@pytest.mark.parametrize("kind", list(HOSTILE_HEADERS))
def test_a_safetensors_file_with_a_hostile_header_is_refused(good, tmp_path, kind):
    header, body = _header_of(good)
    made = HOSTILE_HEADERS[kind](header, body)
    path = tmp_path / "hostile.safetensors"
    if isinstance(made, bytes) and made[:1] not in (b"[", b"{"):
        path.write_bytes(made)
    else:
        hostile.safetensors_with_header(path, made, body)
    with pytest.raises(ValueError, match="corrupt|not a valid|not one written by this studio"):
        checkpoint.load(path)


def test_tensors_of_the_wrong_dtype_for_the_family_are_refused(tmp_path):
    config = VAE.config("tiny")
    model = VAE.build(config).double()  # float64 weights under a float32 family's config
    path = tmp_path / "f64.safetensors"
    import safetensors.torch

    safetensors.torch.save_model(model, str(path), metadata={
        "format": checkpoint.FORMAT, "family": '"vae"', "config": json.dumps(widgets.config_dict(config))})
    with pytest.raises(ValueError, match=r"does not match its vae config: .* is F64 .* the model has F32"):
        checkpoint.load(path)


def test_tensors_of_the_wrong_shape_for_the_family_are_refused_on_import(user_dir, tmp_path):
    model = VAE.build(VAE.config("tiny", latent_dim=3))
    path = checkpoint.save(tmp_path / "other.safetensors", model, "vae", VAE.config("tiny", latent_dim=2))
    with pytest.raises(ValueError, match="does not match its vae config"):
        parts.import_into(("vae",), path, "local")


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    config = VAE.config("tiny")
    model = VAE.build(config)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("inf"))
    with pytest.raises(ValueError, match="non-finite"):
        checkpoint.save(tmp_path / "inf.safetensors", model, "vae", config)
    assert not list(tmp_path.iterdir())


# --- MIDI and text -------------------------------------------------------------------------------------

def test_a_midi_that_is_not_midi_is_refused(tmp_path):
    (tmp_path / "song.mid").write_text("MIDI? no: a shopping list\n" * 10)
    with pytest.raises(ValueError, match="not a MIDI file"):
        notes.read_midi(tmp_path / "song.mid")


def test_a_midi_with_a_million_notes_is_refused(tmp_path):
    path = hostile.many_notes_midi(tmp_path / "million.mid")
    assert path.read_bytes()[:4] == b"MThd"
    with pytest.raises(ValueError, match="MIDI files up to|notes are accepted"):
        notes.read_midi(path)


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252", "shift_jis"])
def test_a_text_in_another_encoding_is_refused_with_its_name(tmp_path, encoding):
    path = tmp_path / "story.txt"
    path.write_bytes(("Ça fait déjà très longtemps — «naïve» façade, ½ ¾ 日本語 " * 40).encode(encoding, "replace"))
    with pytest.raises(ValueError, match="not UTF-8|binary file"):
        corpus.read_text_file(path)


def test_a_1_gb_text_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: takes no disk
    with pytest.raises(ValueError, match="text files up to 20 MB"):
        corpus.read_text_file(path)


def test_the_text_tab_shows_a_message_for_a_bad_upload(user_dir, tmp_path):
    import gradio as gr

    from studio.tabs import text

    path = tmp_path / "latin.txt"
    path.write_bytes("é".encode("cp1252") * 500)
    with pytest.raises(gr.Error, match="not UTF-8"):
        widgets.friendly(text.upload_corpus)(str(path))
