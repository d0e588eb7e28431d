"""The GAN and GAN Lab tabs' handlers, called as the page calls them: good input gives the views,
bad input a clear message (gr.Error), and training from the page streams curves, previews and a
diversity verdict."""
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from models.image import gan2d
from models.core import train as training
from studio import jobs, widgets
from studio.tabs import gan as tab
from studio.tabs import gan_lab as lab_tab

SHIPPED = "gan_mnist"
pytestmark = pytest.mark.skipif(SHIPPED not in widgets.checkpoint_paths("gan"), reason="no shipped GAN checkpoint")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(jobs, "JOBS", jobs.Jobs())
    monkeypatch.setattr(tab, "JOBS", jobs.JOBS)
    return tmp_path / "checkpoints"


def test_select_checkpoint_offers_the_classes():
    card, classes, i_classes = tab.select_checkpoint(SHIPPED)
    assert SHIPPED in card
    assert classes["choices"][0] == tab.ANY_CLASS and len(classes["choices"]) == 11 and classes["interactive"]


def test_samples_are_reproducible_from_a_seed_and_follow_the_class():
    a, caption = tab.samples(SHIPPED, 3, 16, 1.0, "7")
    b, _ = tab.samples(SHIPPED, 3, 16, 1.0, "7")
    c, _ = tab.samples(SHIPPED, 3, 16, 1.0, "1")
    assert a.dtype == np.uint8 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert "seed 3" in caption and "7" in caption


@pytest.mark.parametrize("args, words", [
    ((0, 0, 1.0, tab.ANY_CLASS), "Number of samples"),
    ((-1, 4, 1.0, tab.ANY_CLASS), "Seed"),
    ((0, 4, 5.0, tab.ANY_CLASS), "temperature"),
    ((0, 4, 1.0, "cat"), "Unknown class"),
])
def test_bad_sample_controls_are_refused(args, words):
    with pytest.raises(gr.Error, match=words):
        tab.samples(SHIPPED, *args)


def test_class_seed_grid_and_interpolation():
    grid = tab.class_seed_grid(SHIPPED, 0, 4, 1.0)
    assert grid.ndim == 3 and grid.shape[2] == 3
    with pytest.raises(gr.Error, match="Seeds per class"):
        tab.class_seed_grid(SHIPPED, 0, 13, 1.0)
    gan_strip, vae_strip, note = tab.interpolation(SHIPPED, 1, 2, 8, "spherical", "3")
    assert gan_strip.shape[1] > gan_strip.shape[0] * 5  # one row of 8 images
    assert "GAN" in note and "largest/mean" in note
    if vae_strip is not None:
        assert "VAE" in note
    with pytest.raises(gr.Error, match="Interpolation must be"):
        tab.interpolation(SHIPPED, 1, 2, 8, "cubic", "3")


def test_checkerboard_demo_renders_each_layer_count():
    assert tab.checkerboard_demo(1).shape[2] == 3
    with pytest.raises(gr.Error, match="layers"):
        tab.checkerboard_demo(9)


def test_train_from_the_page_streams_curves_preview_and_diversity(user_dir, monkeypatch):
    """A short run streams status and curves, shows fixed-noise previews with a diversity verdict,
    keeps them for replay, and ends with the run among the checkpoints."""
    monkeypatch.setattr(tab.gan, "PRESETS", {**tab.gan.PRESETS, "cpu": tab.gan.PRESETS["tiny"]})
    outs = list(tab.train_start("mnist", True, "bce", 1, 10.0, 0.1, 0.05, 0.2, 2e-4, 2e-4, 20, 16, "t1",
                                SHIPPED))
    status, curves, preview, choices, notes, frames, replay = outs[-1]
    assert "Finished 20 steps" in status
    assert "diversity" in "".join(o[4] for o in outs)
    assert frames and frames[-1][0] == 20
    frame, label = tab.replay(frames, 0)
    assert frame.ndim == 2 and "step" in label
    assert "t1" in [v for _, v in widgets.checkpoint_choices("gan")]
    with pytest.raises(gr.Error, match="Train first"):
        tab.replay([], 0)


def test_switching_settings_mid_run_is_marked_on_the_curves(user_dir, monkeypatch):
    monkeypatch.setattr(tab.gan, "PRESETS", {**tab.gan.PRESETS, "cpu": tab.gan.PRESETS["tiny"]})
    with pytest.raises(gr.Error, match="No GAN training in progress"):
        tab.switch_live("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 2e-4)
    run = tab.train_start("mnist", False, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, 2e-4, 2000, 16, "t3", SHIPPED)
    for _ in run:
        if jobs.JOBS.current.progress is not None:
            break
    message = tab.switch_live("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 1e-3)
    assert "loss bce → wgan-gp" in message and "lr_g" in message
    with pytest.raises(gr.Error, match="label smoothing"):
        tab.switch_live("wgan-gp", 2, 10.0, 0.9, 0.05, 2e-4, 1e-3)
    (mark, _), = tab.MARKS["t3"]
    curves = None
    for out in run:
        if hasattr(out[1], "axes") and jobs.JOBS.current.progress.step > mark:
            curves = out[1]
            jobs.JOBS.cancel()
    assert "Cancelled" in out[0]
    assert jobs.JOBS.current.config.loss == "wgan-gp"
    assert all(any(line.get_linestyle() == ":" for line in ax.lines) for ax in curves.axes)


def test_training_refuses_bad_settings(user_dir):
    with pytest.raises(gr.Error, match="learning rate"):
        list(tab.train_start("mnist", True, "bce", 1, 10.0, 0.0, 0.05, 0.2, 0.0, 2e-4, 20, 16, "t2", SHIPPED))
    with pytest.raises(gr.Error, match="shipped checkpoint"):
        list(tab.train_start("mnist", True, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, 2e-4, 20, 16, SHIPPED, SHIPPED))


def test_monitor_flags_a_collapsed_preview():
    from models.core import data

    job = SimpleNamespace(progress=SimpleNamespace(step=50, metrics={"d_loss": 0.5, "g_grad_norm": 1.0}),
                          config=SimpleNamespace(dataset="mnist", loss="bce"))
    m = tab.Monitor(job)
    m.render(data.images("mnist", "test")[0][:1].repeat(16, 1, 1, 1))
    assert "Mode collapse?" in m.notes and "dropout" in m.notes


# --- GAN Lab ---

@pytest.fixture
def lab():
    with gan2d.one_thread():
        yield lab_tab.reset("ring", "log", 5e-3, 5e-3, 32, 2, 0, [])[0]


def test_lab_reset_step_and_one_sided_training(lab):
    with gan2d.one_thread():
        lab, plane, curves, status = lab_tab.step(lab, lab_tab.VIEWS, "D", 3)
        assert lab.step == 3 and "trained: D" in status
        lab, *_ , status = lab_tab.step(lab, lab_tab.VIEWS, "G", 2)
        assert lab.step == 5 and "trained: G" in status
    assert plane.ndim == 3 and curves.ndim == 3


def test_lab_plays_until_cancelled_and_switches_loss_live(lab):
    with gan2d.one_thread():
        player = lab_tab.play(lab, ["fake points"], 5)
        first = next(player)
        lab_tab.switch_loss(lab, "wasserstein", ["fake points"])
        next(player)
        player.close()  # what Pause does
    assert first[0] is lab and lab.step >= 10 and lab.marks[-1][1] == "wasserstein"
    assert lab.history[-1]["step"] == lab.step


def test_lab_refuses_too_few_drawn_points_and_a_missing_lab():
    with pytest.raises(gr.Error, match="at least 8 points"):
        lab_tab.reset("drawn", "log", 5e-3, 5e-3, 32, 2, 0, [[0.0, 0.0]] * 3)
    with pytest.raises(gr.Error, match="Reset first"):
        lab_tab.step(None, lab_tab.VIEWS, "both", 1)
    with pytest.raises(gr.Error, match="learning rate"):
        lab_tab.switch_lr(gan2d.make_lab(), 0.0, 1e-3)


def test_clicks_on_the_canvas_become_points_on_the_plane():
    points = []
    for px, py in [(0, 0), (lab_tab.CANVAS_PX / 2, lab_tab.CANVAS_PX / 2)]:
        points, img = lab_tab.add_point(points, SimpleNamespace(index=(px, py)))
    assert points == [[-2.0, 2.0], [0.0, 0.0]]
    assert img.shape[:2] == (lab_tab.CANVAS_PX, lab_tab.CANVAS_PX)
    drawn = [[0.1 * i, 0.05 * i] for i in range(8)]
    lab = lab_tab.reset("drawn", "least-squares", 5e-3, 5e-3, 32, 2, 0, drawn)[0]
    assert lab.points.shape == (8, 2)
