"""The GAN and GAN Lab tabs' handlers, called as the page calls them: good input gives the views,
bad input a clear message (gr.Error), training from the page streams curves, previews and a
diversity verdict, live switches belong to the run's owner and land between two steps, and the lab
leaves the process's thread count and global RNG alone."""
import json
import threading
import time
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from models.image import gan
from studio import jobs, parts, widgets
from studio.tabs import gan as tab
from studio.tabs import gan_lab as lab_tab

SHIPPED = "gan_mnist"
pytestmark = pytest.mark.skipif(SHIPPED not in widgets.checkpoint_paths("gan"), reason="no shipped GAN checkpoint")
ALICE, BOB = SimpleNamespace(session_hash="alice"), SimpleNamespace(session_hash="bob")


@pytest.fixture
def tiny_cpu_preset(monkeypatch):
    """The Train section builds from the cpu preset; tests train the tiny networks instead."""
    monkeypatch.setitem(gan.PRESETS, "cpu", {**gan.PRESETS["tiny"], "steps": 2})


def test_card_and_class_lists_follow_the_checkpoint():
    card = parts.card_of(["gan"], SHIPPED)
    assert SHIPPED in card and "D's belief that an image is real" in card
    classes, i_classes = tab.class_choices(SHIPPED)
    assert classes == i_classes
    assert classes["choices"][0] == tab.ANY_CLASS and len(classes["choices"]) == 11 and classes["interactive"]


def test_every_class_an_api_caller_may_ask_for_is_offered_without_loading_the_page():
    assert {"7", "Sneaker", tab.ANY_CLASS} <= set(tab.EVERY_CLASS)
    assert len(tab.EVERY_CLASS) == len(set(tab.EVERY_CLASS)) == 21
    with pytest.raises(gr.Error, match="Unknown class 'Sneaker' for mnist.*0, 1, 2"):
        tab.samples(SHIPPED, 0, 4, 1.0, "Sneaker")


def test_samples_are_reproducible_follow_the_class_and_carry_provenance():
    a, caption, record, png = tab.samples(SHIPPED, 3, 16, 1.0, "7")
    b, *_ = tab.samples(SHIPPED, 3, 16, 1.0, "7")
    c, *_ = tab.samples(SHIPPED, 3, 16, 1.0, "1")
    assert a.dtype == np.uint8 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert "seed 3" in caption and "class 7" in caption
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), a)
        assert json.loads(im.text["provenance"]) == record
    assert record["seed"] == 3 and record["checkpoint"] == SHIPPED and len(record["checkpoint_sha256"]) == 64
    assert record["controls"] == {"n": 16, "temperature": 1.0, "class_name": "7"}
    assert tab.samples(SHIPPED, 3, 16, 1.0, "7")[3] != png  # every output its own file


@pytest.mark.parametrize("args, words", [
    ((0, 0, 1.0, tab.ANY_CLASS), "Number of samples"),
    ((0, 4.5, 1.0, tab.ANY_CLASS), "Number of samples"),
    ((-1, 4, 1.0, tab.ANY_CLASS), "Seed"),
    ((1e30, 4, 1.0, tab.ANY_CLASS), "Seed must be a whole number"),
    ((1.5, 4, 1.0, tab.ANY_CLASS), "Seed must be a whole number"),
    ((None, 4, 1.0, tab.ANY_CLASS), "Seed must be a whole number"),
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
    with pytest.raises(gr.Error, match="Seed must be"):
        tab.class_seed_grid(SHIPPED, 1.5, 4, 1.0)
    gan_strip, vae_strip, note = tab.interpolation(SHIPPED, 1, 2, 8, "spherical", "3")
    assert gan_strip.shape[1] > gan_strip.shape[0] * 5  # one row of 8 images
    assert "GAN (gan_mnist, class 3)" in note and "largest/mean" in note
    if vae_strip is not None:
        assert "VAE" in note and vae_strip.shape == gan_strip.shape
    again, _, _ = tab.interpolation(SHIPPED, 1, 2, 8, "spherical", "3")
    assert np.array_equal(gan_strip, again)
    with pytest.raises(gr.Error, match="Interpolation must be"):
        tab.interpolation(SHIPPED, 1, 2, 8, "cubic", "3")
    with pytest.raises(gr.Error, match="Seed must be"):
        tab.interpolation(SHIPPED, 1e30, 2, 8, "linear", "3")


def test_checkerboard_demo_renders_each_layer_count():
    for layers in (1, 2, 3):
        assert tab.checkerboard_demo(layers).shape[2] == 3
    with pytest.raises(gr.Error, match="layers"):
        tab.checkerboard_demo(9)


def test_no_studio_state_outlives_a_visitor():
    assert not hasattr(tab, "MARKS")  # marks live with the run (job.marks), replay frames with the run/visitor


def test_train_from_the_page_streams_curves_preview_diversity_and_replay(user_dir, actions, tiny_cpu_preset):
    """A short run streams status and curves, shows fixed-noise previews with a diversity verdict,
    keeps them for replay, and ends with the run among the checkpoints."""
    outs = list(actions["gan_train"]("mnist", True, "bce", 1, 10.0, 0.1, 0.05, 0.2, 2e-4, 20, 16, 2e-4, "t1",
                                     SHIPPED))
    status, curves, preview, dropdown, notes, frames, slider = outs[-1]
    assert "Finished 20 steps" in status
    assert "diversity" in notes
    assert frames and frames[-1][0] == 20 and all(f.dtype == np.uint8 for _, f in frames)
    assert any(isinstance(o[6], dict) and o[6].get("value") == len(o[5]) - 1 for o in outs)  # slider follows
    frame, label = tab.replay(frames, 0)
    assert frame.ndim == 2 and "step" in label
    assert "t1" in [v for _, v in dropdown["choices"]]
    config = widgets.load("gan", "t1")[1]
    assert config.lr_g == 2e-4 and config.lr_d == 2e-4 and config.label_smoothing == 0.1
    with pytest.raises(gr.Error, match="Train first"):
        tab.replay([], 0)


def test_live_changes_are_queued_and_applied_together_between_steps():
    config = gan.FAMILY.config("tiny")
    job = jobs.Job("gan", "run", config)
    job.request_change({"loss": "wgan-gp", "lr_g": 1e-3}, gan.switch)
    assert config.loss == "bce" and config.lr_g == 1e-4  # nothing applied until the training thread asks
    job.between_steps(7)
    assert config.loss == "wgan-gp" and config.lr_g == 1e-3
    assert job.marks == [(7, "loss bce → wgan-gp; lr_g 0.0001 → 0.001")]
    job.between_steps(8)
    assert len(job.marks) == 1


def wait_for_progress(job, step=1, timeout=60):
    deadline = time.time() + timeout
    while (job.progress is None or job.progress.step < step) and time.time() < deadline:
        time.sleep(0.05)
    assert job.progress is not None


def test_switching_settings_mid_run_is_marked_on_the_curves(user_dir, actions, tiny_cpu_preset):
    switch = actions["gan_train_switch"]
    assert "No GAN training in progress" in switch("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 2e-4)
    run = actions["gan_train"]("mnist", False, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, 5000, 16, 2e-4, "t3", SHIPPED)
    next(run)
    job = jobs.JOBS.current
    wait_for_progress(job)
    message = switch("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 1e-3)
    assert "queued loss bce → wgan-gp" in message and "lr_g" in message
    with pytest.raises(gr.Error, match="label smoothing"):
        switch("wgan-gp", 2, 10.0, 0.9, 0.05, 2e-4, 1e-3)
    curves = None
    for out in run:
        if job.marks and hasattr(out[1], "axes") and job.progress.step > job.marks[0][0]:
            curves = out[1]
            jobs.JOBS.cancel()
    assert "Cancelled" in out[0]
    (mark, what), = job.marks  # the refused change was never queued
    assert "loss bce → wgan-gp" in what and "lr_g 0.0002 → 0.001" in what
    assert job.config.loss == "wgan-gp" and job.config.critic_steps == 2 and job.config.lr_g == 1e-3
    assert all(any(line.get_linestyle() == ":" for line in ax.lines) for ax in curves.axes)


def test_only_the_runs_owner_can_switch_its_settings(user_dir, tiny_cpu_preset):
    config = tab.train_config("mnist", False, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, steps=100_000, batch_size=8,
                              lr=2e-4)
    job = jobs.JOBS.start("gan", "alices_run", config, owner="alice", score_samples=0)
    try:
        wait_for_progress(job)
        with pytest.raises(gr.Error, match="belongs to another visitor"):
            tab.switch_live("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 1e-3, request=BOB)
        assert not job._pending and config.loss == "bce"
        assert "belongs to another visitor" in jobs.JOBS.cancel("bob") and job.running
        assert "queued" in tab.switch_live("wgan-gp", 2, 10.0, 0.0, 0.05, 2e-4, 1e-3, request=ALICE)
        deadline = time.time() + 30
        while not job.marks and time.time() < deadline:
            time.sleep(0.05)
        assert config.loss == "wgan-gp" and job.marks
    finally:
        jobs.JOBS.cancel("alice")
        job.thread.join(30)


def test_training_refuses_bad_settings(user_dir, actions):
    train = actions["gan_train"]
    with pytest.raises(gr.Error, match="learning rate"):
        list(train("mnist", True, "bce", 1, 10.0, 0.0, 0.05, 0.2, 0.0, 20, 16, 2e-4, "t2", SHIPPED))
    with pytest.raises(gr.Error, match="learning rate"):
        list(train("mnist", True, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, 20, 16, 0.0, "t2", SHIPPED))
    with pytest.raises(gr.Error, match="shipped checkpoint"):
        list(train("mnist", True, "bce", 1, 10.0, 0.0, 0.05, 0.2, 2e-4, 20, 16, 2e-4, SHIPPED, SHIPPED))


def fake_job(step, images, metrics=None):
    return SimpleNamespace(progress=SimpleNamespace(step=step, preview=images,
                                                    metrics=metrics or {"d_loss": 0.5, "g_grad_norm": 1.0}),
                           config=SimpleNamespace(dataset="mnist", loss="bce"), keep={})


def test_monitor_flags_a_collapsed_preview_and_keeps_a_bounded_replay(monkeypatch):
    from models.core import data

    one = data.images("mnist", "test")[0][:1].repeat(16, 1, 1, 1)
    job = fake_job(50, one)
    notes, frames, slider = tab.follow_run(job)
    assert "Mode collapse?" in notes and "dropout" in notes
    assert [s for s, _ in frames] == [50] and slider["value"] == 0
    assert tab.follow_run(job)[2] == gr.update()  # the same report again adds nothing
    monkeypatch.setattr(gan, "diversity", lambda images, dataset: {"diversity": 1.0, "classes_seen": 10,
                                                                    "collapse": False})
    for step in range(100, 100 + 50 * 3 * tab.MAX_FRAMES, 50):  # a long run: three times the cap
        job.progress = SimpleNamespace(step=step, preview=one, metrics={})
        notes, frames, slider = tab.follow_run(job)
        assert len(frames) <= tab.MAX_FRAMES and frames[-1][0] == step and slider["value"] == len(frames) - 1
    assert frames[0][0] == 50 and "No sign of collapse" in notes


# --- GAN Lab ---

LAB_SETTINGS = ("ring", "log", 5e-3, 5e-3, 32, 2, 0, [])


def new_lab(*settings):
    return lab_tab.reset(None, lab_tab.VIEWS, *(settings or LAB_SETTINGS))[0]


def test_lab_reset_step_and_one_sided_training():
    session = new_lab()
    session, plane, curves, status = lab_tab.step(session, lab_tab.VIEWS, "D", 3, *LAB_SETTINGS)
    assert session.lab.step == 3 and "trained: D" in status
    session, *_, status = lab_tab.step(session, lab_tab.VIEWS, "G", 2, *LAB_SETTINGS)
    assert session.lab.step == 5 and "trained: G" in status
    assert plane.ndim == 3 and curves.ndim == 3
    # before any Reset (a fresh API session), Step builds the lab the settings describe
    fresh, *_ = lab_tab.step(None, lab_tab.VIEWS, "both", 2, *LAB_SETTINGS)
    assert fresh.lab.step == 2 and fresh.lab.config.hidden == 32


def drive(player, messages):
    """Iterate a Play stream as Gradio does: a frame is sent before the loop is asked for the next."""
    def consume():
        for out in player:
            messages.append(("play", out[-1]))
            time.sleep(0.01)
    thread = threading.Thread(target=consume)
    thread.start()
    return thread


def test_lab_play_and_step_leave_threads_and_the_global_rng_alone(monkeypatch):
    def refuse(*args):
        raise AssertionError("a GAN Lab handler changed a process-wide torch setting")

    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    monkeypatch.setattr(torch, "set_num_threads", refuse)
    monkeypatch.setattr(torch, "manual_seed", refuse)
    session = new_lab()
    lab_tab.step(session, lab_tab.VIEWS, "both", 3, *LAB_SETTINGS)
    lab_tab.step(None, ["fake points"], "G", 2, *LAB_SETTINGS)
    messages, seen = [], []
    player = lab_tab.play(session, ["fake points"], 5)
    thread = drive((seen.append(torch.get_num_threads()) or out for out in player), messages)
    while len(messages) < 2:
        time.sleep(0.01)
    assert torch.get_num_threads() == threads  # while it plays, too
    lab_tab.pause(session, ["fake points"])
    thread.join(10)
    assert torch.get_num_threads() == threads and set(seen) == {threads}
    assert torch.equal(torch.random.get_rng_state(), rng)


@pytest.mark.parametrize("attempt", range(8))
def test_pause_sticks_the_play_stream_sends_nothing_after_it(attempt):
    session = new_lab()
    messages = []
    thread = drive(lab_tab.play(session, ["fake points"], 1 + attempt), messages)
    deadline = time.time() + 30
    while len(messages) < 1 + attempt % 3 and time.time() < deadline:
        time.sleep(0.005)
    *_, paused = lab_tab.pause(session, ["fake points"])
    messages.append(("pause", paused))
    thread.join(10)
    assert not thread.is_alive() and session.player is None
    assert messages[-1] == ("pause", paused) and "Paused." in paused
    assert all("Playing…" in m for who, m in messages[:-1])
    step = session.lab.step
    time.sleep(0.1)
    assert session.lab.step == step  # and training really stopped


def test_a_second_play_or_a_reset_stops_the_first_loop():
    session = new_lab()
    first, second = [], []
    a = drive(lab_tab.play(session, ["fake points"], 2), first)
    while not first:
        time.sleep(0.01)
    b = drive(lab_tab.play(session, ["fake points"], 2), second)
    a.join(10)
    assert not a.is_alive() and b.is_alive()
    fresh = lab_tab.reset(session, lab_tab.VIEWS, *LAB_SETTINGS)[0]  # at once, maybe before b has begun
    b.join(10)
    assert not b.is_alive() and fresh is not session and fresh.lab.step == 0
    assert list(lab_tab.play(session, ["fake points"], 2)) == []  # the replaced lab plays no more


def test_lab_switches_loss_live_and_refuses_bad_input():
    session = new_lab()
    lab_tab.step(session, lab_tab.VIEWS, "both", 2, *LAB_SETTINGS)
    plane, curves = lab_tab.switch_loss(session, "wasserstein", ["fake points"])
    assert session.lab.marks[-1] == (2, "wasserstein") and plane.ndim == 3
    with pytest.raises(gr.Error, match="at least 8 points"):
        lab_tab.reset(None, lab_tab.VIEWS, "drawn", "log", 5e-3, 5e-3, 32, 2, 0, [[0.0, 0.0]] * 3)
    with pytest.raises(gr.Error, match="Reset first"):
        next(lab_tab.play(None, lab_tab.VIEWS, 1))
    with pytest.raises(gr.Error, match="Steps per frame"):
        next(lab_tab.play(session, lab_tab.VIEWS, 500))
    with pytest.raises(gr.Error, match="learning rate"):
        lab_tab.switch_lr(session, 0.0, 1e-3)
    for seed in (1.5, 1e30, None):
        with pytest.raises(gr.Error, match="Seed must be a whole number"):
            lab_tab.reset(None, lab_tab.VIEWS, "ring", "log", 5e-3, 5e-3, 32, 2, seed, [])


def test_clicks_on_the_canvas_become_points_on_the_plane():
    points = []
    for px, py in [(0, 0), (lab_tab.CANVAS_PX / 2, lab_tab.CANVAS_PX / 2)]:
        points, img = lab_tab.add_point(points, SimpleNamespace(index=(px, py)))
    assert points == [[-2.0, 2.0], [0.0, 0.0]]
    assert img.shape[:2] == (lab_tab.CANVAS_PX, lab_tab.CANVAS_PX)
    drawn = [[0.1 * i, 0.05 * i] for i in range(8)]
    session = lab_tab.reset(None, lab_tab.VIEWS, "drawn", "least-squares", 5e-3, 5e-3, 32, 2, 0, drawn)[0]
    assert session.lab.points.shape == (8, 2)


def test_two_visitors_cannot_reconfigure_each_others_run_through_the_api(app_url):
    """Driven through two gradio_client sessions against the served app: B can neither switch nor
    cancel A's GAN run; A's own switch is queued."""
    from gradio_client import Client

    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    live = dict(loss="wgan-gp", d_steps_per_g_step=2, gradient_penalty_weight=10.0, label_smoothing=0.0,
                label_noise=0.05, d_learning_rate=2e-4, lr=2e-4)
    run = a.submit(dataset="mnist", class_conditional=False, steps=20000, batch_size=16, run_name="gan_visitor_a",
                   checkpoint=SHIPPED, api_name="/gan_train")
    try:
        deadline = time.time() + 120
        while not (run.outputs() and "step" in str(run.outputs()[-1][0])) and time.time() < deadline:
            time.sleep(0.3)
        assert "gan_visitor_a" in run.outputs()[-1][0]
        with pytest.raises(Exception, match="belongs to another visitor"):
            b.predict(**live, api_name="/gan_train_switch")
        assert "belongs to another visitor" in b.predict(api_name="/gan_train_cancel")
        assert "queued loss bce → wgan-gp" in a.predict(**live, api_name="/gan_train_switch")
    finally:
        message = a.predict(api_name="/gan_train_cancel")
    assert "Cancelling gan_visitor_a" in message
    assert "Cancelled at step" in run.result(timeout=60)[0]
