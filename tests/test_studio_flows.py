"""The RealNVP tab's handlers (2-D lab and MNIST flow) and the hierarchical VAE section, called as the page
calls them: good input gives the views, bad input a clear message (gr.Error)."""
import math

import gradio as gr
import numpy as np
import pytest

from models.density import flow2d
from studio.tabs import flows as tab
from studio.tabs import hvae as hvae_tab

SETTINGS = ["moons", 4, 32, 2, 0.0, 2e-3, 0, []]  # data, couplings, width, depth, L2, lr, seed, drawn points
FORWARD, INVERSE = list(tab.DIRECTIONS)


@pytest.fixture(scope="module")
def trained():
    session, *_ = tab.lab_reset(None, FORWARD, *SETTINGS)
    *_, last = tab.lab_train(session, 100, FORWARD, *SETTINGS)
    return last[0]


def test_reset_builds_an_untrained_lab_and_sets_the_layer_slider():
    session, slider, view, plane, curve, status = tab.lab_reset(None, FORWARD, *SETTINGS)
    assert isinstance(session, tab.Session) and session.lab.step == 0
    assert slider["maximum"] == 4 and slider["value"] == 4
    assert view.ndim == 3 and plane.shape[:2] == (tab.PLANE_PX, tab.PLANE_PX)
    assert "step **0**" in status


def test_train_streams_and_lowers_the_held_out_nll(trained):
    fresh, *_ = tab.lab_reset(None, FORWARD, *SETTINGS)
    assert trained.lab.step == 100
    assert flow2d.held_out_nll(trained.lab) < flow2d.held_out_nll(fresh.lab) - 0.2
    frames = list(tab.lab_train(None, 25, FORWARD, *SETTINGS))  # no lab yet: one is made from the settings
    assert frames and frames[-1][0].lab.step == 25 and "Trained 25 steps" in frames[-1][-1]


def test_layer_views_differ_by_layer_and_direction(trained):
    views = [tab.lab_layers(trained, d, k, *SETTINGS)[1] for d in (FORWARD, INVERSE) for k in (0, 2, 4)]
    assert all(v.shape == views[0].shape for v in views)
    assert len({v.tobytes() for v in views}) == 6


def test_clicked_point_is_explained_as_prior_plus_log_dets(trained):
    _, plane, md = tab.lab_point(trained, 0.5, 0.25, *SETTINGS)
    r = flow2d.explain_point(trained.lab, 0.5, 0.25)
    assert f"{r['log_p']:+.3f}" in md and "prior log N(z; 0, I)" in md and md.count("layer ") == 4

    class Evt:
        index = [tab.PLANE_PX / 2, tab.PLANE_PX / 4]

    assert tab.plane_click(Evt()) == (0.0, pytest.approx(flow2d.EXTENT / 2))


@pytest.mark.parametrize("call", [
    lambda: tab.lab_reset(None, FORWARD, "spiral", *SETTINGS[1:]),
    lambda: tab.lab_reset(None, FORWARD, "moons", 0, *SETTINGS[2:]),
    lambda: tab.lab_reset(None, FORWARD, "moons", math.nan, *SETTINGS[2:]),
    lambda: tab.lab_reset(None, FORWARD, "drawn", *SETTINGS[1:]),  # no points drawn
    lambda: next(tab.lab_train(None, 0, FORWARD, *SETTINGS)),
    lambda: tab.lab_layers(None, FORWARD, 9, *SETTINGS),
    lambda: tab.lab_layers(None, "sideways", 1, *SETTINGS),
    lambda: tab.lab_point(None, math.inf, 0.0, *SETTINGS),
    lambda: tab.lab_point(None, "🙂", 0.0, *SETTINGS),
])
def test_bad_input_gives_a_message(call):
    with pytest.raises(gr.Error):
        call()


def test_drawn_points_train_a_lab():
    points = [[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]] * 3
    session, *_ = tab.lab_reset(None, FORWARD, "drawn", *SETTINGS[1:-1], points)
    assert session.lab.config.dataset == "drawn"
    pts, canvas = tab.add_point(points, type("Evt", (), {"index": [160, 160]})())
    assert len(pts) == 10 and pts[-1] == pytest.approx([0.0, 0.0], abs=0.05)


def test_mnist_samples_are_seeded_and_scored():
    a, caption, record, png = tab.samples("realnvp_mnist", 3, 16, 0.7)
    b, *_ = tab.samples("realnvp_mnist", 3, 16, 0.7)
    assert np.array_equal(a, b) and "temperature 0.7" in caption and record["seed"] == 3
    with pytest.raises(gr.Error):
        tab.samples("realnvp_mnist", 3, 16, 9.0)


def test_mnist_score_splits_the_log_likelihood():
    image, md = tab.score("realnvp_mnist", 7)
    assert image.shape == (224, 224) and "bits/dim" in md and "−D log 256" in md
    with pytest.raises(gr.Error):
        tab.score("realnvp_mnist", 10_000)


def test_hvae_resample_holds_one_level_per_row():
    top, bottom, caption, record, png = hvae_tab.resample("hvae_mnist", 1, 3, 5)
    assert top.shape == bottom.shape and not np.array_equal(top, bottom)
    with pytest.raises(gr.Error, match="one-level"):
        hvae_tab.resample("hvae_mnist_one_level", 1, 3, 5)


def test_hvae_comparison_lists_both_levels():
    md = hvae_tab.comparison()
    assert "hvae_mnist" in md and "hvae_mnist_one_level" in md and "bound" in md
