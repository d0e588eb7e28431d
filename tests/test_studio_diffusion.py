"""The diffusion tab's handlers, called as the page calls them, on a tiny checkpoint: streaming
generation, the scrubber, GIF export, branching that reproduces the original, the forward-process
view, and clear messages for bad input."""
import gradio as gr
import numpy as np
import pytest
from PIL import Image

from models import FAMILIES
from models.core import checkpoint, data, train as training
from studio import jobs, widgets
from studio.tabs import diffusion as tab


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    """A tiny class-conditional model (T = 20) saved among the user's checkpoints."""
    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(tab, "JOBS", jobs.Jobs())
    fam = FAMILIES["diffusion"]
    config = fam.config("tiny", T=20, conditional=True)
    checkpoint.save(tmp_path / "checkpoints" / "tiny_ddpm.safetensors", fam.build(config), "diffusion", config)
    return "tiny_ddpm"


def run_of(updates):
    return [u[3] for u in updates if u[3] is not None][-1]


def test_select_checkpoint_enables_guidance_for_conditional(ckpt):
    card, classes, guidance, steps = tab.select_checkpoint(ckpt)
    assert "tiny_ddpm" in card
    assert classes["interactive"] and guidance["interactive"] and steps["maximum"] == 20
    assert "No diffusion checkpoint" in tab.select_checkpoint(None)[0]


def test_generate_streams_then_keeps_every_step(ckpt):
    updates = list(tab.generate(ckpt, "DDIM", 10, 0.0, "3", 2.0, 5, 4))
    assert len(updates) >= 2
    xt, x0, status, run, scrubber, branch_from = updates[-1]
    assert xt.ndim == 2 and x0.ndim == 2 and "step 10/10" in status
    assert len(run["xs"]) == 11 and run["labels"] == [3] * 4 and scrubber["maximum"] == 10
    assert branch_from["maximum"] == 9 and branch_from["value"] == 5
    again = run_of(list(tab.generate(ckpt, "DDIM", 10, 0.0, "3", 2.0, 5, 4)))
    assert np.array_equal(run["xs"][-1], again["xs"][-1])  # same seed, same images


def test_ddpm_uses_every_step(ckpt):
    run = run_of(list(tab.generate(ckpt, "DDPM", 3, 0.0, tab.ANY_CLASS, 0.0, 0, 2)))
    assert len(run["ts"]) == 20 and run["eta"] == 1.0


def test_scrubber_play_and_gif(ckpt):
    run = run_of(list(tab.generate(ckpt, "DDIM", 10, 0.5, tab.ANY_CLASS, 0.0, 1, 4)))
    xt, x0, label = tab.scrub(run, 0)
    assert x0 is None and "after 0 of 10" in label
    xt, x0, label = tab.scrub(run, 10)
    assert "final" in label
    assert list(tab.play(run, 0))[-1] == 10
    for which in ("x_t", "x̂₀"):
        with Image.open(tab.export_gif(run, which)) as im:
            assert im.n_frames >= 10
    with pytest.raises(gr.Error, match="Step must be"):
        tab.scrub(run, 11)
    with pytest.raises(gr.Error, match="Generate first"):
        tab.scrub(None, 0)


def test_branch_with_original_settings_is_identical_and_a_new_seed_differs(ckpt):
    run = run_of(list(tab.generate(ckpt, "DDIM", 10, 1.0, "7", 2.0, 3, 4)))
    same_img, same_msg = list(tab.branch(run, 4, 3, 10, 1.0))[-1]
    assert "Identical" in same_msg
    assert np.array_equal(same_img, tab.original_final(run))
    other_img, other_msg = list(tab.branch(run, 4, 99, 10, 1.0))[-1]
    assert "Identical" not in other_msg and not np.array_equal(other_img, same_img)
    with pytest.raises(gr.Error, match="Branch from a step"):
        list(tab.branch(run, 10, 3, 10, 1.0))


def test_bad_generation_settings_give_messages(ckpt):
    cases = [(("DDIM", 21, 0.0, tab.ANY_CLASS, 0.0, 0, 4), "steps"),  # more steps than T
             (("DDIM", 10, 0.0, tab.ANY_CLASS, -1.0, 0, 4), "guidance"),
             (("DDIM", 10, 2.0, tab.ANY_CLASS, 0.0, 0, 4), "η"),
             (("DDIM", 10, 0.0, "Sneaker", 0.0, 0, 4), "Unknown class"),
             (("DDIM", 10, 0.0, tab.ANY_CLASS, 0.0, -1, 4), "Seed"),
             (("DDIM", 10, 0.0, tab.ANY_CLASS, 0.0, 0, 0), "Number of samples")]
    for args, message in cases:
        with pytest.raises(gr.Error, match=message):
            list(tab.generate(ckpt, *args))


def test_forward_process_view():
    strip, at_t, plot, caption = tab.forward_process("mnist", 0, 250, "cosine")
    assert strip.ndim == 2 and at_t.ndim == 2 and plot.ndim == 3
    assert "t = 250" in caption
    digit = widgets.upscale(widgets.mosaic(data.images("mnist", "test")[0][:1], 1, pad=0), 8).ravel()
    corr = lambda t: np.corrcoef(tab.forward_process("mnist", 0, t, "linear")[1].ravel(), digit)[0, 1]
    assert corr(0) > 0.95  # x_0: the digit itself
    assert abs(corr(999)) < 0.2  # x_T: pure noise
    for args, message in [(("mnist", 0, 1000, "linear"), "t must be"), (("mnist", -1, 5, "linear"), "Test image"),
                          (("mnist", 0, 5, "quadratic"), "schedule")]:
        with pytest.raises(gr.Error, match=message):
            tab.forward_process(*args)
