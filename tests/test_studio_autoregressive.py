"""The PixelCNN & NADE tab's handlers, called as the page calls them: streamed sampling and completion,
the conditional each completion says it draws from, scoring, the receptive-field view, and clear
messages for bad input (an empty drawing, wrong numbers) after which the page keeps working."""
import json

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from studio import parts
from studio.tabs import autoregressive as tab

PIXELCNN, NADE = "pixelcnn_mnist", "nade_mnist"


def stroke_sketch():
    sketch = np.zeros((280, 280, 4), np.uint8)
    sketch[40:240, 130:150] = (0, 0, 0, 255)  # a black '1' on the transparent canvas
    return {"composite": sketch, "background": None, "layers": []}


def test_cards_name_the_binarisation_and_the_nll():
    for name in (PIXELCNN, NADE):
        card = parts.card_of(tab.FAMILIES, name)
        assert "nats" in card and "bits/dim" in card, card
        _, md = tab.order_map(name)
        assert "Bernoulli" in md  # the stochastic binarisation, said in the tab too


@pytest.mark.parametrize("name", [PIXELCNN, NADE])
def test_sampling_streams_then_publishes_a_reproducible_picture(name):
    updates = list(tab.sample(name, 3, 2, 1.0, 28))
    assert len(updates) >= 2
    picture, caption, record, png = updates[-1]
    assert picture.ndim == 2 and "seed 3" in caption and record["seed"] == 3
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), picture) and json.loads(im.text["provenance"]) == record
    if name == NADE:  # the preview pace does not change the draw
        assert np.array_equal(list(tab.sample(name, 3, 2, 1.0, 784))[-1][0], picture)
    first = updates[0][0]
    assert (first == round(0.5 * 255)).any()  # grey: pixels not drawn yet


def test_completion_of_the_bottom_half_is_the_exact_conditional_and_keeps_the_top():
    *_, (picture, caption, record, _) = tab.complete(PIXELCNN, "test image", 7, None, "bottom half", 1, 0, 2, 1.0)
    assert "Exact conditional" in caption and record["controls"]["region"] == "bottom half"
    assert picture.ndim == 2 and picture.shape[1] > 3 * picture.shape[0]  # original | observed | 2 completions
    *_, (_, caption, _, _) = tab.complete(NADE, "test image", 7, None, "top half", 1, 0, 2, 1.0)
    assert "Not the exact conditional" in caption and "392 observed pixels" in caption
    *_, (_, caption, _, _) = tab.complete(NADE, "test image", 7, None, "top half", 8, 0, 2, 1.0)
    assert "Importance-resampled" in caption


def test_completing_a_drawing_and_an_empty_drawing():
    *_, (picture, caption, _, _) = tab.complete(NADE, "my drawing", 0, stroke_sketch(), "bottom half", 1, 0, 2, 1.0)
    assert "your drawing" in caption and picture.ndim == 2
    blank = {"composite": np.zeros((280, 280, 4), np.uint8), "background": None, "layers": []}
    for sketch in (blank, None):
        with pytest.raises(gr.Error, match="empty"):
            list(tab.complete(PIXELCNN, "my drawing", 0, sketch, "bottom half", 1, 0, 2, 1.0))
        with pytest.raises(gr.Error, match="empty"):
            tab.score(NADE, "my drawing", 0, sketch)
    # the page keeps working
    assert tab.score(NADE, "test image", 0, None)[0].ndim == 3


def test_score_is_the_exact_log_likelihood():
    from models.core import data
    from models.density import nade

    _, md = tab.score(NADE, "test image", 5, None)
    model, config, _ = tab.loaded(NADE)[1:]
    x, _ = data.binary_images("mnist", "test", config.binarisation)
    nll = -nade.log_likelihood(model, x[5:6]).item()
    assert f"{nll:.1f} nats" in md


def test_receptive_field_shows_the_blind_spot():
    picture, md = tab.receptive_field(PIXELCNN, 14, 10)
    assert picture.ndim == 3
    lines = md.split("  \n")
    plain, gated = (int(line.split("misses ")[1].split(" ")[0]) for line in lines[:2])
    assert plain > gated  # the plain stack misses more of the past at the same depth
    _, md = tab.receptive_field(NADE, 0, 0)
    assert "misses 0 of the 0" in md


def test_click_sets_row_and_column():
    class Evt:
        index = [10 * 5 + 3, 10 * 20 + 9]  # x, y in the 10× picture

    assert tab.click_pixel(Evt()) == (20, 5)
    assert tab.click_picture(PIXELCNN, 3).shape == (280, 280)


@pytest.mark.parametrize("call, words", [
    (lambda: list(tab.sample(PIXELCNN, 0, 0, 1.0, 28)), "Number of samples"),
    (lambda: list(tab.sample(PIXELCNN, 0, 4, float("nan"), 28)), "temperature"),
    (lambda: list(tab.sample(NADE, 0, 4, 1.0, 10**9)), "Preview every"),
    (lambda: list(tab.sample(NADE, -1, 4, 1.0, 28)), "Seed"),
    (lambda: list(tab.sample(NADE, 0, "four", 1.0, 28)), "Number of samples"),
    (lambda: list(tab.complete(NADE, "test image", 10_000, None, "bottom half", 1, 0, 2, 1.0)), "Test image number"),
    (lambda: list(tab.complete(NADE, "test image", 0, None, "diagonal", 1, 0, 2, 1.0)), "Region"),
    (lambda: list(tab.complete(NADE, "a photo", 0, None, "bottom half", 1, 0, 2, 1.0)), "Source"),
    (lambda: list(tab.complete(NADE, "test image", 0, None, "bottom half", 0, 0, 2, 1.0)), "Particles"),
    (lambda: tab.receptive_field(PIXELCNN, 28, 0), "Row"),
    (lambda: tab.receptive_field(PIXELCNN, 0, "é"), "Column"),
    (lambda: tab.order_map("nope"), "No checkpoint named"),
])
def test_bad_input_gives_a_clear_message(call, words):
    with pytest.raises(gr.Error, match=words):
        call()


def test_train_config_and_a_short_run_in_the_page(user_dir, actions):
    cfg = tab.train_config("NADE", "mnist", 2, 50, 3, "columns", steps=20, batch_size=16, lr=1e-3)
    assert (cfg.hidden, cfg.order) == (50, "columns")
    cfg = tab.train_config("PixelCNN (gated)", "fashion", 4, 8, 2, "raster", steps=20, batch_size=16, lr=1e-3)
    assert (cfg.arch, cfg.levels, cfg.filters) == ("gated", 4, 8)
    with pytest.raises(ValueError, match="Model"):
        tab.train_config("GAN", "mnist", 2, 8, 2, "raster", steps=20, batch_size=16, lr=1e-3)
    updates = list(actions["ar_train"]("NADE", "mnist", 2, 20, 2, "raster", 20, 16, 1e-3, "ar_page_run", NADE))
    status, *_, dropdown = updates[-1]
    assert "Finished 20 steps" in status
    assert "ar_page_run" in [v for _, v in dropdown["choices"]]
    assert "nats" in parts.card_of(tab.FAMILIES, "ar_page_run")
