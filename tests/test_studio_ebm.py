"""The Energy-based and GMMN tabs' handlers, called as the page calls them: good input gives the views,
bad input a clear message (gr.Error)."""
import math

import gradio as gr
import numpy as np
import pytest

from models.core.train import SHIPPED
from studio.tabs import ebm as tab
from studio.tabs import gmmn as gtab

HAS_EBM = (SHIPPED / "ebm_mnist.safetensors").exists()
HAS_GMMN = (SHIPPED / "gmmn_mnist.safetensors").exists()
LAB = ["grid", "mixture", 0.2, 128, 5e-3, 0]  # data, kernel, σ, batch, lr, seed


def test_toy_chains_draw_the_heatmap_and_the_descent():
    heat, descent, md = tab.toy_chains("four wells", 20, 200, 0.02, 0.0, 0)
    assert heat.ndim == 3 and descent.ndim == 3
    assert "distance to the nearest minimum" in md


@pytest.mark.parametrize("args, words", [
    (("volcano", 20, 200, 0.02, 0.0, 0), "Unknown 2-D energy"),
    (("ring", 0, 200, 0.02, 0.0, 0), "between"),
    (("ring", 20, math.nan, 0.02, 0.0, 0), "whole number"),
    (("double well", 20, 100, 0.5, 0.0, 0), "blew up"),
])
def test_toy_chains_refuse_bad_input(args, words):
    with pytest.raises(gr.Error, match=words):
        tab.toy_chains(*args)


@pytest.mark.skipif(not HAS_EBM, reason="ebm_mnist not shipped")
def test_samples_show_buffer_and_fresh_noise_with_scores():
    buf, fresh, caption, record, path = tab.samples("ebm_mnist", 0, 16, 10, 10)
    assert buf.shape == fresh.shape and buf.ndim == 2
    assert "Replay buffer + 10 steps: confidence" in caption and "Fresh noise, 10 steps" in caption
    assert record["controls"]["buffer_steps"] == 10 and path.endswith(".png")


@pytest.mark.skipif(not HAS_EBM, reason="ebm_mnist not shipped")
def test_chain_viewer_streams_then_scrubs_one_chain():
    frames = list(tab.chain_run("ebm_mnist", "a test digit", 3, 0, 4, 12, 10.0, 0.005))
    run, grid, plot, slider, md = frames[-1]
    assert isinstance(run, tab.ChainRun) and len(run.steps) == 13 and "done" in md
    big, curve, text = tab.chain_scrub(run, slider["value"], 2)
    assert big.shape == (28 * 8, 28 * 8) and "chain 2 has energy" in text
    with pytest.raises(gr.Error, match="Run a chain first"):
        tab.chain_scrub(None, 0, 0)
    with pytest.raises(gr.Error, match="Chain must be between"):
        tab.chain_scrub(run, 0, 9)
    with pytest.raises(gr.Error, match="Unknown start"):
        list(tab.chain_run("ebm_mnist", "the moon", 0, 0, 4, 12, 10.0, 0.005))


def test_ebm_train_config_follows_the_controls():
    c = tab.train_config(30, 5.0, 0.2, 512, steps=10, batch_size=32, lr=1e-4)
    assert (c.langevin_steps, c.step_size, c.alpha, c.buffer_size, c.batch_size) == (30, 5.0, 0.2, 512, 32)
    with pytest.raises(ValueError, match="Langevin steps"):
        tab.train_config(0, 5.0, 0.2, 512, steps=10, batch_size=32, lr=1e-4)


def test_gmmn_lab_resets_trains_and_estimates_the_spread():
    session, plane, curve, status = gtab.lab_reset(None, *LAB)
    assert session.lab.step == 0 and "step **0**" in status
    *_, (session, plane, curve, status) = gtab.lab_train(session, 25, *LAB)
    assert session.lab.step == 25 and "Trained 25 steps" in status
    picture, md = gtab.mmd_spread(session, 3, *LAB)
    assert picture.ndim == 3 and md.count("\n| ") == len(gtab.BATCH_SIZES)
    single, *_ = gtab.lab_reset(None, "ring", "single", 0.3, 64, 5e-3, 1)
    assert single.lab.bandwidths == (0.3,)


@pytest.mark.parametrize("args, words", [
    (["spiral", "mixture", 0.2, 128, 5e-3, 0], "Unknown 2-D dataset"),
    (["grid", "wide", 0.2, 128, 5e-3, 0], "Unknown kernel"),
    (["grid", "single", 0.0, 128, 5e-3, 0], "Bandwidths"),
    (["grid", "mixture", 0.2, 2, 5e-3, 0], "between"),
    (["grid", "mixture", 0.2, 128, math.inf, 0], "finite"),
])
def test_gmmn_lab_refuses_bad_settings(args, words):
    with pytest.raises(gr.Error, match=words):
        gtab.lab_reset(None, *args)


@pytest.mark.skipif(not HAS_GMMN, reason="gmmn_mnist not shipped")
def test_gmmn_samples_are_scored():
    picture, caption, record, path = gtab.samples("gmmn_mnist", 0, 16)
    assert picture.ndim == 2 and "confidence" in caption and np.asarray(picture).max() > 0
    with pytest.raises(gr.Error, match="between"):
        gtab.samples("gmmn_mnist", 0, 1000)


def test_gmmn_train_config_covers_both_spaces():
    code = gtab.train_config("code", 100, steps=300, batch_size=128, lr=1e-3)
    pixels = gtab.train_config("pixels", 100, steps=300, batch_size=128, lr=1e-3)
    assert code.space == "code" and code.ae_steps == 100
    assert pixels.space == "pixels" and pixels.ae_steps == 0 and len(pixels.bandwidths) == 6
