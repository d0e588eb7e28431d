"""The diffusion tab's handlers, called as the page calls them, on a tiny checkpoint: streaming
generation with a download that carries its provenance, the scrubber's bounded uint8 frames, Cancel
that says where it stopped, GIF export, branching that reproduces the original, the forward-process
view, class choices an API caller can use without loading the page, and clear messages for bad input."""
import json
import socket

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from models import FAMILIES
from models.core import checkpoint, data
from studio import parts, widgets
from studio.tabs import diffusion as tab


def save_tiny(user_dir, name, **overrides):
    fam = FAMILIES["diffusion"]
    config = fam.config("tiny", **overrides)
    checkpoint.save(user_dir / f"{name}.safetensors", fam.build(config), "diffusion", config)
    return name


@pytest.fixture
def ckpt(user_dir):
    """A tiny class-conditional model (T = 20) saved among the user's checkpoints."""
    return save_tiny(user_dir, "tiny_ddpm", T=20, conditional=True)


def run_of(updates):
    return updates[-1][3]


def test_select_checkpoint_enables_guidance_for_conditional(ckpt):
    classes, guidance, steps = tab.select_checkpoint(ckpt)
    assert classes["interactive"] and guidance["interactive"] and steps["maximum"] == 20
    assert classes["choices"] == [tab.EACH_CLASS, tab.ANY_CLASS] + [str(d) for d in range(10)]
    assert classes["value"] == tab.EACH_CLASS  # the page opens on guided samples of every class
    assert "tiny_ddpm" in parts.card_of(["diffusion"], ckpt)
    assert all(isinstance(u, dict) for u in tab.select_checkpoint(None))


def test_generate_streams_then_keeps_every_step_and_publishes(ckpt):
    updates = list(tab.generate(ckpt, "DDIM", 10, 0.0, "3", 2.0, 5, 4))
    assert len(updates) >= 2
    xt, x0, status, run, scrubber, branch_from, caption, record, png = updates[-1]
    assert xt.ndim == 2 and x0.ndim == 2 and "step 10/10" in status and "guidance 2" in status
    assert run.done and len(run.frames) == 11 and run.labels == [3] * 4 and scrubber["maximum"] == 10
    assert branch_from["maximum"] == 9 and branch_from["value"] == 5
    with Image.open(png) as im:  # the download is the picture, with what made it inside
        assert np.array_equal(np.asarray(im), xt)
        assert json.loads(im.text["provenance"]) == record
    assert record["seed"] == 5 and record["controls"]["class_name"] == "3" and record["controls"]["steps"] == 10
    again = list(tab.generate(ckpt, "DDIM", 10, 0.0, "3", 2.0, 5, 4))[-1]
    assert np.array_equal(xt, again[0]) and again[8] != png  # same seed, same images; a file of its own


def test_default_draws_every_class_in_turn_with_guidance(ckpt, user_dir):
    """The page's default class setting guides sample i towards class i mod 10, and the status and
    provenance say so; an unconditional checkpoint refuses it with a message."""
    status, record = list(tab.generate(ckpt, "DDIM", 5, 0.0, tab.EACH_CLASS, 3.0, 0, 12))[-1][2::5]
    assert "every class in turn" in status and "guidance 3" in status
    assert record["controls"]["class_name"] == tab.EACH_CLASS and record["controls"]["guidance"] == 3.0
    assert tab._labels(tab.loaded(ckpt)[1], tab.EACH_CLASS, 12) == list(range(10)) + [0, 1]
    name = save_tiny(user_dir, "tiny_uncond_each", T=20)
    with pytest.raises(gr.Error, match="unconditional"):
        list(tab.generate(name, "DDIM", 5, 0.0, tab.EACH_CLASS, 3.0, 0, 2))


def test_guidance_is_reported_unused_without_a_class(ckpt):
    status, record = list(tab.generate(ckpt, "DDIM", 5, 0.0, tab.ANY_CLASS, 3.0, 0, 2))[-1][2::5]
    assert "guidance unused (no class chosen)" in status and "guidance 3" not in status
    assert record["controls"]["guidance"] == 0.0


def test_guidance_on_an_unconditional_checkpoint_is_unused_not_an_error(user_dir):
    name = save_tiny(user_dir, "tiny_uncond", T=20)
    assert "guidance unused" in list(tab.generate(name, "DDIM", 5, 0.0, tab.ANY_CLASS, 3.0, 0, 2))[-1][2]
    with pytest.raises(gr.Error, match="unconditional"):
        list(tab.generate(name, "DDIM", 5, 0.0, "3", 3.0, 0, 2))


def test_ddpm_uses_every_step(ckpt):
    run = run_of(list(tab.generate(ckpt, "DDPM", 3, 0.0, tab.ANY_CLASS, 0.0, 0, 2)))
    assert len(run.ts) == 20 and run.eta == 1.0


def test_frames_are_evenly_spaced_and_capped():
    assert parts.frame_steps(5, 200) == [0, 1, 2, 3, 4]
    kept = parts.frame_steps(1001, 200)
    assert len(kept) == 200 and kept[0] == 0 and kept[-1] == 1000
    gaps = np.diff(kept)
    assert gaps.min() >= 5 and gaps.max() <= 6
    frames = parts.Frames(1001)
    for step in range(1001):
        frames.add(step, x=np.full((2, 1, 4, 4), step / 1000))
    assert len(frames) == 200 and frames.images[0]["x"].dtype == np.uint8
    step, images = frames.frame(199)
    assert step == 1000 and images["x"].max() == 1.0
    with pytest.raises(ValueError, match="Frame must be"):
        frames.frame(200)


def test_a_long_ddpm_run_keeps_a_bounded_number_of_uint8_frames(ckpt, monkeypatch):
    """1,000 DDPM steps of 16 samples kept every float state (about 100 MB per visitor); now at most
    MAX_FRAMES (200) uint8 frames of x_t and x̂₀, evenly spaced, and branching from any step, kept or
    not, still reproduces the run (the state is rebuilt from the seed). Here 8 of T = 20 steps."""
    monkeypatch.setattr(parts, "MAX_FRAMES", 8)
    run = run_of(list(tab.generate(ckpt, "DDPM", 1, 0.0, "5", 2.0, 0, 16)))
    assert run.total == 20 and len(run.frames) == 8
    assert run.frames.steps == parts.frame_steps(21, 8) and run.frames.steps[::7] == [0, 20]
    assert all(v.dtype == np.uint8 for f in run.frames.images for v in f.values() if v is not None)
    assert run.frames.nbytes <= 8 * 2 * 16 * 28 * 28
    assert "final" in tab.scrub(run, 7)[2]
    assert 18 not in run.frames.steps
    _, message = list(tab.branch(run, 18, 0, 20, 1.0))[-1]
    assert "Identical" in message


def test_cancel_says_where_it_stopped_and_keeps_what_was_made(ckpt, monkeypatch):
    monkeypatch.setattr(tab, "PREVIEW_S", -1.0)  # a preview after every step
    stream = tab.generate(ckpt, "DDIM", 10, 1.0, "7", 2.0, 3, 4)
    for _ in range(4):  # the start, then steps 1, 2 and 3
        run = next(stream)[3]
    status, scrubber, branch_from = tab.cancel_generate(run)
    assert status.startswith("Cancelled at step 3 of 10")
    assert scrubber["maximum"] == 3 and branch_from["maximum"] == 3
    assert list(stream) == []  # the run stops at the next step
    assert run.step == 3 and not run.done and "after 3 of 10" in tab.scrub(run, 3)[2]
    image, message = list(tab.branch(run, 2, 3, 10, 1.0))[-1]
    assert image.ndim == 2 and "Branched at step 2" in message
    with pytest.raises(gr.Error, match="cancelled at step 3"):
        list(tab.branch(run, 5, 3, 10, 1.0))
    assert "Nothing to cancel" in tab.cancel_generate(None)[0]
    finished = run_of(list(tab.generate(ckpt, "DDIM", 5, 0.0, tab.ANY_CLASS, 0.0, 0, 2)))
    assert "finished all 5 steps" in tab.cancel_generate(finished)[0]


def test_scrubber_play_and_gif(ckpt):
    run = run_of(list(tab.generate(ckpt, "DDIM", 10, 0.5, tab.ANY_CLASS, 0.0, 1, 4)))
    xt, x0, label = tab.scrub(run, 0)
    assert x0 is None and "after 0 of 10" in label
    xt, x0, label = tab.scrub(run, 10)
    assert "final" in label and np.array_equal(xt, tab.original_final(run))
    assert list(tab.play(run, 0))[-1] == 10
    paths = set()
    for which in ("x_t", "x̂₀"):
        path = tab.export_gif(run, which)
        paths.add(path)
        with Image.open(path) as im:
            assert im.n_frames >= 10
            record = json.loads(im.info["comment"])
        assert record["seed"] == 1 and record["checkpoint"] == ckpt and record["controls"]["eta"] == 0.5
    assert len(paths | {tab.export_gif(run, "x_t")}) == 3  # every export at a path of its own
    with pytest.raises(gr.Error, match="Frame must be"):
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
             (("DDIM", 10, 0.0, "Sneaker", 0.0, 0, 4), "Unknown class 'Sneaker' for mnist"),
             (("DDIM", 10, 0.0, tab.ANY_CLASS, 0.0, -1, 4), "Seed"),
             (("DDIM", 10, 0.0, tab.ANY_CLASS, 0.0, 1.5, 4), "Seed"),
             (("DDIM", 10, 0.0, tab.ANY_CLASS, 0.0, 0, 0), "Number of samples"),
             (("DDPX", 10, 0.0, tab.ANY_CLASS, 0.0, 0, 4), "Sampler")]
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


def test_train_config_uses_the_panel_settings():
    config = tab.train_config("fashion", False, "cosine", steps=40, batch_size=16, lr=2e-3)
    assert (config.dataset, config.conditional, config.schedule, config.steps, config.batch_size, config.lr) == \
        ("fashion", False, "cosine", 40, 16, 2e-3)
    assert config.channels == FAMILIES["diffusion"].config("cpu").channels


def build_tab():
    with gr.Blocks() as demo:
        page = parts.Page(demo, tab=tab.TITLE)
        tab.build(page)
    return demo, page


def test_the_api_names_every_action_and_can_choose_any_class(ckpt):
    """Every class of every dataset is a choice when the page is built (an API caller never loads the
    page); the page narrows the list to the checkpoint's dataset on load."""
    demo, page = build_tab()
    assert {a.api_name for a in page.actions} == {
        "diffusion_generate", "diffusion_forward_process", "diffusion_train", "diffusion_train_resume",
        "diffusion_train_cancel", "diffusion_train_plan"}
    dropdown = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Class")
    choices = [v for _, v in dropdown.choices]
    assert {"3", "Ankle boot", tab.ANY_CLASS, tab.EACH_CLASS} <= set(choices) and len(choices) == 22
    assert dropdown.value == tab.EACH_CLASS


def test_gradio_client_generates_a_class(ckpt):
    """The reported failure: /generate with class "3" was refused ("not in the list of choices")."""
    from gradio_client import Client

    demo, _ = build_tab()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/diffusion_generate" in endpoints and "/generate" not in endpoints
        params = [p["parameter_name"] for p in endpoints["/diffusion_generate"]["parameters"]]
        assert params == ["checkpoint", "sampler", "steps", "eta", "class_name", "guidance", "seed", "n_samples"]
        result = client.predict(ckpt, "DDIM", 5, 0.0, "3", 2.0, 0, 2, api_name="/diffusion_generate")
        xt, x0, status, *_ = result
        assert "class 3, guidance 2" in status and xt and x0
    finally:
        demo.close()
