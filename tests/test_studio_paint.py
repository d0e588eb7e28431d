"""The Paint tab's handlers, called as the page calls them: streams of snapshots and octaves, the
Gram viewer, presets, the gallery, and clear messages (gr.Error) for bad input."""
import dataclasses
import math

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from models.paint.style_transfer import PRESETS, STYLE_LAYERS
from studio.tabs import paint as tab


def st_controls(size=64, checks=None, optimizer="Adam", steps=4, preview=32):
    checks = checks if checks is not None else [True, True, False, False, False]
    return [math.log10(2.5e-8), -6, -8, "block2_conv2", *checks, *[1.0] * len(STYLE_LAYERS), 1.0, size, preview,
            "content image", optimizer, 5.0, steps, 2]


def dream_controls(size=64, octaves=2, iterations=2):
    weights = [1.0 if name == "stage3" else 0.0 for name in tab.DREAM_LAYERS]
    return [*weights, 20, octaves, 1.4, iterations, 15, True, size]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    Image.fromarray((np.random.default_rng(0).random((60, 90, 3)) * 255).astype(np.uint8)).save(d / "c.png")
    Image.fromarray(np.tile((np.arange(90) % 10 < 5)[None, :, None] * 255, (60, 1, 3)).astype(np.uint8)).save(d / "s.png")
    (d / "notes.txt").write_text("hello")
    return d


def test_stylise_streams_snapshots_with_curves_and_a_notice(images):
    outs = list(tab.stylise(str(images / "c.png"), str(images / "s.png"), 0, *st_controls()))
    results = [o for o in outs if isinstance(o[0], np.ndarray)]
    assert len(results) >= 2 and results[-1][0].shape == (43, 64, 3)
    assert results[0][0].shape[1] == 32  # the low-resolution preview comes first
    assert "90×60 → 64×43" in outs[0][2] and "Done" in outs[-1][2]
    assert outs[-1][3]["result"].shape == (43, 64, 3)


def test_gram_viewer_needs_a_result_then_shows_three_matrices(images):
    with pytest.raises(gr.Error, match="Run style transfer first"):
        tab.show_gram(None, "block1_conv1", 16)
    state = {"content": str(images / "c.png"), "style": str(images / "s.png"),
             "result": np.zeros((32, 48, 3), np.uint8)}
    fig, note = tab.show_gram(state, "block1_conv1", 16)
    assert len(fig.axes) == 4 and "distance" in note


def test_no_style_layer_chosen_is_a_clear_message(images):
    with pytest.raises(gr.Error, match="at least one style layer"):
        list(tab.stylise(str(images / "c.png"), str(images / "s.png"), 0, *st_controls(checks=[False] * 5)))


@pytest.mark.parametrize("content, message", [("notes.txt", "not an image"), (None, "Choose a content image")])
def test_bad_images_are_clear_messages(images, content, message):
    path = str(images / content) if content else None
    with pytest.raises(gr.Error, match=message):
        list(tab.stylise(path, str(images / "s.png"), 0, *st_controls()))
    with pytest.raises(gr.Error, match=message.replace("content ", "")):
        list(tab.run_dream(path, *dream_controls()))


def test_presets_set_the_log_sliders():
    cw, sw, tvw, decay, optimizer, lr = tab.apply_preset("Foster (Keras example)")
    assert cw == pytest.approx(math.log10(0.025)) and sw == 0 and tvw == 0 and optimizer == "L-BFGS"
    assert set(PRESETS) >= {"Chollet (DLwP)", "Foster (Keras example)"}


def test_dream_streams_octaves_scrubs_and_saves_a_png(images):
    outs = list(tab.run_dream(str(images / "c.png"), *dream_controls()))
    frames = outs[-1][3]
    assert len(frames) == 2 and frames[-1].shape == (43, 64, 3)
    assert outs[-1][5].endswith(".png") and Image.open(outs[-1][5]).size == (64, 43)
    assert tab.scrub(frames, 1).shape[1] < tab.scrub(frames, 2).shape[1]
    with pytest.raises(gr.Error):
        tab.scrub(frames, 3)


def test_randomise_and_gallery_round_trip(images):
    *weights, next_seed = tab.randomise(7)
    assert next_seed == 8 and len(weights) == len(tab.DREAM_LAYERS) and any(w > 0 for w in weights)
    with pytest.raises(gr.Error, match="Dream first"):
        tab.save_config([], [], *dream_controls())
    frame = np.zeros((8, 8, 3), np.uint8)
    saved, gallery, text = tab.save_config([], [frame], *dream_controls())
    assert len(gallery) == 1 and "stage3 1" in gallery[0][1] and '"octaves": 2' in text
    restored = tab.restore_config(saved, gr.SelectData(None, {"index": 0, "value": None}))
    assert list(restored) == [float(c) if not isinstance(c, bool) else c for c in dream_controls()]


def test_bundled_examples_exist():
    for name in ("chelsea", "starry_night", "china", "flower"):
        assert Image.open(tab.bundled(name)).size[0] > 100


@pytest.fixture
def tiny_cyclegan(tmp_path, monkeypatch):
    """A tiny CycleGAN among the user's checkpoints (the handlers read it like any other)."""
    import torch

    from models.core import checkpoint
    from models.paint import cyclegan
    from studio import widgets

    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path)
    config = cyclegan.FAMILY.config("tiny")
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "tiny_cg.safetensors", cyclegan.build(config), "cyclegan", config, step=2)
    return "tiny_cg"


def test_cyclegan_six_panels_patch_map_and_bad_input(tiny_cyclegan):
    ab, ba, note = tab.cycle_translate(tiny_cyclegan, 3, 2)
    assert ab.shape == ba.shape == (4 * (2 * 30 + 2), 4 * (4 * 30 + 2)) and "Seed 3" in note  # 2 rows × 4 panels, ×4
    again = tab.cycle_translate(tiny_cyclegan, 3, 2)
    assert np.array_equal(ab, again[0])  # the seed picks the same test images
    img, text = tab.cycle_patches(tiny_cyclegan, "real B (digit on texture)", 5)
    assert img.ndim == 3 and "of 49 patches" in text and "D_B" in text
    assert "identity" in tab.cycle_card(tiny_cyclegan).lower()
    with pytest.raises(gr.Error, match="between 1 and 8"):
        tab.cycle_translate(tiny_cyclegan, 0, 0)
    with pytest.raises(gr.Error, match="from 0 to 1999"):
        tab.cycle_patches(tiny_cyclegan, "real A (plain digit)", 5000)
    with pytest.raises(gr.Error, match="No cyclegan checkpoint"):
        tab.cycle_translate("nope", 0, 2)
    assert tab.identity_off() == 0.0
    assert tab.cycle_initial(None, 0, 2)[0] is None


def test_cyclegan_trains_in_the_page_with_a_six_panel_preview(tiny_cyclegan, tmp_path, monkeypatch):
    import torch

    from models import FAMILIES
    from models.paint import cyclegan
    from models.core import train as training
    from studio import jobs

    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(tab, "JOBS", jobs.Jobs())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread beats two contended ones
    monkeypatch.setitem(cyclegan.PRESETS, "cpu", cyclegan.PRESETS["tiny"])  # the page's architecture, tiny
    # the held-out metrics are tested in test_cyclegan.py; over 2,000 test images they take a while
    monkeypatch.setitem(FAMILIES, "cyclegan", dataclasses.replace(cyclegan.FAMILY, evaluate=None))
    with pytest.raises(gr.Error, match="learning rate"):
        list(tab.cycle_train_start(10, 8, 1.0, 10.0, 0.0, 0.0, "page_cg", tiny_cyclegan))
    updates = list(tab.cycle_train_start(10, 8, 1.0, 10.0, 0.0, 2e-4, "page_cg", tiny_cyclegan))
    assert "Finished 10 steps" in updates[-1][0]
    previews = [u[2] for u in updates if isinstance(u[2], np.ndarray)]
    assert previews and previews[-1].shape == (3 * (8 * 30 + 2), 3 * (4 * 30 + 2))  # 8 rows × 4 panels
    assert "page_cg" in [v for _, v in updates[-1][3]["choices"]]
    torch.set_num_threads(threads)


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
