"""The Paint tab's handlers, called as the page calls them: streams of snapshots and octaves, the
Gram viewer, presets, the gallery, CycleGAN's views and training, every main button pressed with the
page's defaults, and clear messages (gr.Error) for bad input."""
import dataclasses
import json
import math
import struct
import zlib

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from models.paint.style_transfer import PRESETS, STYLE_LAYERS
from studio import parts
from studio.tabs import paint as tab


def st_controls(size=64, checks=None, optimizer="Adam", steps=4, preview=32):
    checks = checks if checks is not None else [True, True, False, False, False]
    return [math.log10(2.5e-8), -6, -8, "block2_conv2", *checks, *[1.0] * len(STYLE_LAYERS), 1.0, size, preview,
            "content image", optimizer, 5.0, steps, 2]


def dream_controls(size=64, octaves=2, iterations=2):
    weights = [1.0 if name == "stage3" else 0.0 for name in tab.DREAM_LAYERS]
    return [*weights, 20, octaves, 1.4, iterations, 15, True, size]


def huge_png(path, side):
    """A valid PNG of a few hundred bytes whose header says side×side pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    rows = zlib.compress(b"\x00" * (side + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    Image.fromarray((np.random.default_rng(0).random((60, 90, 3)) * 255).astype(np.uint8)).save(d / "c.png")
    Image.fromarray(np.tile((np.arange(90) % 10 < 5)[None, :, None] * 255, (60, 1, 3)).astype(np.uint8)).save(d / "s.png")
    (d / "notes.png").write_text("hello, I am not a picture")
    (d / "empty.png").write_bytes(b"")
    huge_png(d / "bomb.png", 20_000)  # 400 megapixels: PIL itself refuses to open it
    huge_png(d / "big.png", 6_000)  # 36 megapixels: over the studio's limit, under PIL's
    return d


def page_defaults(studio_app, api_name: str) -> list:
    """The values the page's inputs hold when it opens, as the button passes them (files as paths)."""
    (dep,) = [fn for fn in studio_app.fns.values() if fn.api_name == api_name]
    return [c.value["path"] if isinstance(c.value, dict) and "path" in c.value else c.value for c in dep.inputs]


def drain(outputs):
    return outputs if isinstance(outputs, tuple) else list(outputs)[-1]


# --- style transfer ---

def test_stylise_streams_snapshots_with_curves_and_a_download_with_provenance(images):
    outs = list(tab.stylise(str(images / "c.png"), str(images / "s.png"), 0, *st_controls()))
    results = [o for o in outs if isinstance(o[0], np.ndarray)]
    assert len(results) >= 2 and results[-1][0].shape == (43, 64, 3)
    assert results[0][0].shape[1] == 32  # the low-resolution preview comes first
    assert "90×60 → 64×43" in outs[0][2] and "Done" in outs[-1][2]
    result, figure, _, state, caption, record, png = outs[-1]
    assert state["result"].shape == (43, 64, 3) and np.array_equal(result, state["result"])
    assert isinstance(figure, tab.Figure) and "seed 0" in caption
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), result)
        assert json.loads(im.text["provenance"]) == record
    assert record["seed"] == 0 and record["controls"]["content_image"] == "c.png"
    assert len(record["controls"]["style_image_sha256"]) == 64 and record["controls"]["steps"] == 4
    again = list(tab.stylise(str(images / "c.png"), str(images / "s.png"), 0, *st_controls()))[-1]
    assert again[6] != png  # every output gets a path of its own


def test_loss_plot_keeps_every_curve_readable():
    """Content loss is 0 at step 1 (the image starts as the content photo): the axis must not reach
    down to 1e-28 for it, and the legend must sit outside the curves."""
    history = [{"step": i, "stage": "preview" if i <= 10 else "full", "content": 0.0 if i == 1 else 0.001 * i,
                "style": 20.0 / i, "tv": 0.2 + 0.05 * i, "total": 0.0} for i in range(1, 41)]
    for h in history:
        h["total"] = h["content"] + h["style"] + h["tv"]
    fig = tab.loss_figure(history)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert ax.get_yscale() == "log" and 1e-4 < low < 0.002 and 20 < high < 100 and high / low < 1e7
    tab.widgets.figure_to_array(fig)  # lay it out
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend() is None and len(fig.legends) == 1
    legend = fig.legends[0].get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {"content", "style", "tv", "total"}


def test_gram_viewer_needs_a_result_then_shows_three_matrices(images):
    with pytest.raises(gr.Error, match="Run style transfer first"):
        tab.show_gram(None, "block1_conv1", 16)
    rng = np.random.default_rng(1)
    state = {k: (rng.random((32, 48, 3)) * 255).astype(np.uint8) for k in ("content", "style", "result")}
    fig, note = tab.show_gram(state, "block1_conv1", 16)
    assert len(fig.axes) == 4 and "distance" in note
    state["result"] = state["style"]
    assert "result 0.00" in tab.show_gram(state, "block1_conv1", 16)[1]


def test_no_style_layer_chosen_is_a_clear_message(images):
    with pytest.raises(gr.Error, match="at least one style layer"):
        list(tab.stylise(str(images / "c.png"), str(images / "s.png"), 0, *st_controls(checks=[False] * 5)))


@pytest.mark.parametrize("bad, message", [("notes.png", "not an image"), ("empty.png", "empty"),
                                          ("bomb.png", "megapixels"), ("big.png", "6000×6000 pixels"),
                                          (None, "Choose (a|an) .*image")])
def test_bad_uploads_are_clear_messages_everywhere(images, bad, message):
    """A text file, a 0-byte file, or a tiny PNG that decodes huge, as any image upload of the tab."""
    bad = str(images / bad) if bad else None
    good = str(images / "c.png")
    with pytest.raises(gr.Error, match=message):
        list(tab.stylise(bad, good, 0, *st_controls()))
    with pytest.raises(gr.Error, match=message):
        list(tab.stylise(good, bad, 0, *st_controls()))
    with pytest.raises(gr.Error, match=message):
        tab.fast_preview(good, bad, 1.0, False, 64)
    with pytest.raises(gr.Error, match=message):
        list(tab.run_dream(bad, *dream_controls()))
    if bad:
        with pytest.raises(gr.Error, match=message):
            tab.show_upload(bad)
    # and the tab keeps working afterwards
    assert tab.show_upload(good).shape == (60, 90, 3)


def test_presets_set_the_log_sliders():
    cw, sw, tvw, decay, optimizer, lr = tab.apply_preset("Foster (Keras example)")
    assert cw == pytest.approx(math.log10(0.025)) and sw == 0 and tvw == 0 and optimizer == "L-BFGS"
    assert set(PRESETS) >= {"Chollet (DLwP)", "Foster (Keras example)"}
    with pytest.raises(gr.Error, match="Unknown preset"):
        tab.apply_preset("Picasso")


def test_instant_preview_or_a_clear_message_when_missing(images, monkeypatch):
    from models.paint import fast_style

    if fast_style.missing() is None:
        out, note = tab.fast_preview(str(images / "c.png"), str(images / "s.png"), 0.5, True, 64)
        assert out.shape == (43, 64, 3) and "Instant preview, 64×43" in note
    with pytest.raises(gr.Error, match="Choose a style image"):
        tab.fast_preview(str(images / "c.png"), None, 1.0, False, 64)
    with pytest.raises(gr.Error, match="strength must be between"):
        tab.fast_preview(str(images / "c.png"), str(images / "s.png"), 2.0, False, 64)
    monkeypatch.setattr(fast_style, "missing", lambda: "The instant preview needs 'onnxruntime'")
    with pytest.raises(gr.Error, match="needs 'onnxruntime'"):
        tab.fast_preview(str(images / "c.png"), str(images / "s.png"), 1.0, False, 64)


# --- DeepDream ---

def test_dream_streams_octaves_scrubs_and_saves_a_png_with_provenance(images):
    outs = list(tab.run_dream(str(images / "c.png"), *dream_controls()))
    image, status, octaves, frames, _, caption, record, png = outs[-1]
    assert len(frames) == 2 and frames[-1].shape == (43, 64, 3) and np.array_equal(image, frames[-1])
    assert octaves["choices"] == [1, 2] and octaves["value"] == 2 and "Done" in status
    with Image.open(png) as im:
        assert im.size == (64, 43) and json.loads(im.text["provenance"]) == record
    assert record["family"] == "deepdream" and record["controls"]["octaves"] == 2 and "c.png" in caption
    assert png != list(tab.run_dream(str(images / "c.png"), *dream_controls()))[-1][-1]  # never a fixed name
    assert tab.scrub(frames, 1).shape[1] < tab.scrub(frames, 2).shape[1]
    with pytest.raises(gr.Error):
        tab.scrub(frames, 3)


def test_one_octave_is_a_valid_dream(images):
    """One octave used to leave a scrubber spanning 1 to 1, which Gradio refuses."""
    outs = list(tab.run_dream(str(images / "c.png"), *dream_controls(octaves=1)))
    assert outs[-1][2]["choices"] == [1] and len(outs[-1][3]) == 1


def test_dream_button_with_the_page_defaults_gives_an_image(studio_app, actions):
    """Press Dream exactly as the page does: the registered action, the page's default values."""
    defaults = page_defaults(studio_app, "paint_deepdream")
    assert defaults[0].endswith("china.jpg") and len(defaults) == 1 + len(tab.DREAM_CONTROLS)
    image, status, octaves, frames, _, caption, record, png = list(actions["paint_deepdream"](*defaults))[-1]
    assert isinstance(image, np.ndarray) and image.shape[1] == 320 and image.dtype == np.uint8
    assert octaves["choices"] == [1, 2, 3] and len(frames) == 3 and "Octave 3/3" in status
    with Image.open(png) as im:
        assert im.size == (320, image.shape[0]) and "provenance" in im.text


@pytest.mark.parametrize("api_name", ["paint_fast_preview", "cyclegan_translate", "cyclegan_patch_map",
                                      "paint_stylise"])
def test_every_main_button_with_the_page_defaults(studio_app, actions, api_name):
    """The other main buttons, pressed with the page's defaults, give an image (style transfer last:
    it is the slowest, about 10 s on two idle cores)."""
    from models.paint import fast_style

    if api_name == "paint_fast_preview" and fast_style.missing():
        pytest.skip(fast_style.missing())
    out = drain(actions[api_name](*page_defaults(studio_app, api_name)))
    assert isinstance(out[0], np.ndarray) and out[0].size and out[0].dtype == np.uint8
    if api_name == "paint_stylise":
        assert out[0].shape[1] == 128 and out[-1].endswith(".png")


def test_randomise_and_gallery_round_trip(images):
    *weights, next_seed = tab.randomise(7)
    assert next_seed == 8 and len(weights) == len(tab.DREAM_LAYERS) and any(w > 0 for w in weights)
    assert tab.randomise(7) == (*weights, 8)
    for bad in (None, "", 1.5, -1):
        with pytest.raises(gr.Error, match="Seed"):
            tab.randomise(bad)
    with pytest.raises(gr.Error, match="Dream first"):
        tab.save_config([], [], *dream_controls())
    frame = np.zeros((600, 800, 3), np.uint8)
    saved, gallery, text = tab.save_config([], [frame], *dream_controls())
    assert len(gallery) == 1 and "stage3 1" in gallery[0][1] and '"octaves": 2' in text
    assert max(saved[0]["image"].shape) == tab.GALLERY_SIDE  # the gallery keeps thumbnails
    restored = tab.restore_config(saved, gr.SelectData(None, {"index": 0, "value": None}))
    assert list(restored) == [float(c) if not isinstance(c, bool) else c for c in dream_controls()]
    for _ in range(tab.MAX_GALLERY + 3):
        saved, gallery, _ = tab.save_config(saved, [frame], *dream_controls())
    assert len(saved) == len(gallery) == tab.MAX_GALLERY


def test_bundled_examples_exist():
    for name in ("chelsea", "starry_night", "china", "flower"):
        assert Image.open(tab.bundled(name)).size[0] > 100


# --- CycleGAN ---

@pytest.fixture
def tiny_cyclegan(user_dir):
    """A tiny CycleGAN among the user's checkpoints (the handlers read it like any other)."""
    from models.core import checkpoint
    from models.paint import cyclegan

    user_dir.mkdir(parents=True, exist_ok=True)
    config = cyclegan.FAMILY.config("tiny")
    torch.manual_seed(0)
    checkpoint.save(user_dir / "tiny_cg.safetensors", cyclegan.build(config), "cyclegan", config, step=2)
    return "tiny_cg"


def test_cyclegan_six_panels_patch_map_card_and_bad_input(tiny_cyclegan):
    ab, ba, note = tab.cycle_translate(tiny_cyclegan, 3, 2)
    assert ab.shape == ba.shape == (4 * (2 * 30 + 2), 4 * (4 * 30 + 2)) and "Seed 3" in note  # 2 rows × 4 panels, ×4
    again = tab.cycle_translate(tiny_cyclegan, 3, 2)
    assert np.array_equal(ab, again[0])  # the seed picks the same test images
    img, text = tab.cycle_patches(tiny_cyclegan, "real B (digit on texture)", 5)
    assert img.ndim == 3 and "of 49 patches" in text and "D_B" in text
    assert "identity 2" in parts.card_of(["cyclegan"], tiny_cyclegan)  # the family's describe hook
    with pytest.raises(gr.Error, match="between 1 and 8"):
        tab.cycle_translate(tiny_cyclegan, 0, 0)
    with pytest.raises(gr.Error, match="from 0 to 1999"):
        tab.cycle_patches(tiny_cyclegan, "real A (plain digit)", 5000)
    with pytest.raises(gr.Error, match="whole number"):
        tab.cycle_patches(tiny_cyclegan, "real A (plain digit)", None)
    with pytest.raises(gr.Error, match="No cyclegan checkpoint"):
        tab.cycle_translate("nope", 0, 2)
    assert tab.identity_off() == 0.0
    assert tab.cycle_initial(None, 0, 2)[0] is None


@pytest.mark.parametrize("seed", [None, "", 1.5, -1, 1e30])
def test_cyclegan_seed_is_checked_like_every_other_seed(tiny_cyclegan, actions, seed):
    """A blank seed used to raise a raw TypeError (only an 'Error' badge in the page)."""
    with pytest.raises(gr.Error, match="Seed must be a whole number"):
        actions["cyclegan_translate"](tiny_cyclegan, seed, 2)


def test_shipped_cyclegan_card_comes_from_the_family():
    from models.paint import cyclegan

    if "cyclegan_mnist" not in tab.widgets.checkpoint_paths("cyclegan"):
        pytest.skip("no shipped CycleGAN checkpoint")
    card = parts.card_of(["cyclegan"], "cyclegan_mnist")
    assert "Test set: cycle error" in card and "of B→A translations right" in card
    assert "loss weights: validation 1, reconstruction 10, identity 2" in card
    assert cyclegan.FAMILY.card_lines is cyclegan.card_lines


def test_cyclegan_trains_in_the_page_with_a_six_panel_preview(tiny_cyclegan, actions, monkeypatch):
    from models import FAMILIES
    from models.paint import cyclegan

    monkeypatch.setitem(cyclegan.PRESETS, "cpu", cyclegan.PRESETS["tiny"])  # the page's architecture, tiny
    # the held-out metrics are tested in test_cyclegan.py; over 2,000 test images they take a while
    monkeypatch.setitem(FAMILIES, "cyclegan", dataclasses.replace(cyclegan.FAMILY, evaluate=None))
    train = actions["cyclegan_train"]  # validation, reconstruction, identity weights, steps, batch, lr, name, ckpt
    with pytest.raises(gr.Error, match="learning rate"):
        list(train(1.0, 10.0, 0.0, 10, 8, 0.0, "page_cg", tiny_cyclegan))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread beats two contended ones
    try:
        updates = list(train(1.0, 10.0, 0.0, 10, 8, 2e-4, "page_cg", tiny_cyclegan))
    finally:
        torch.set_num_threads(threads)
    assert "Finished 10 steps" in updates[-1][0]
    previews = [u[2] for u in updates if isinstance(u[2], np.ndarray)]
    assert previews and previews[-1].shape == (3 * (8 * 30 + 2), 3 * (4 * 30 + 2))  # 8 rows × 4 panels
    assert "page_cg" in [v for _, v in updates[-1][3]["choices"]]
    assert "identity 0" in parts.card_of(["cyclegan"], "page_cg")  # the run's own weights on its card
    with pytest.raises(gr.Error, match="already have a run named"):
        list(train(1.0, 10.0, 0.0, 10, 8, 2e-4, "page_cg", tiny_cyclegan))
