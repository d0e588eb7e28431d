"""The text-to-image tab's handlers, called as the page calls them, on a tiny checkpoint: streaming
generation with a download that carries its provenance, attention maps per word, the scrubber's
bounded frames, prompt comparison, the autoencoder view, Cancel for a run started either way, and
clear messages for bad prompts."""
import json

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from models import FAMILIES
from models.core import checkpoint
from studio import parts
from studio.tabs import latent as tab


def save_tiny(user_dir, name, **overrides):
    fam = FAMILIES["ldm"]
    config = fam.config("tiny", **overrides)
    checkpoint.save(user_dir / f"{name}.safetensors", fam.build(config), "ldm", config)
    return name


@pytest.fixture
def ckpt(user_dir):
    """A tiny untrained latent-diffusion model saved among the user's checkpoints."""
    return save_tiny(user_dir, "tiny_ldm")


def finished_run(ckpt, prompt="a thick seven", n=4):
    updates = list(tab.generate(ckpt, prompt, n, 5, 3.0, 0.0, 2))
    run = updates[-1][2]
    assert run.done
    return updates, run


def test_select_checkpoint_lists_the_words_it_knows(ckpt):
    hint, prompt = tab.select_checkpoint(ckpt)
    assert "thick" in hint and "seven" in hint
    assert prompt["value"] == "a thick seven"
    assert "tiny_ldm" in parts.card_of(["ldm"], ckpt)


def test_generate_streams_keeps_every_step_and_publishes(ckpt):
    updates, run = finished_run(ckpt)
    assert updates[0][0] is None and "Denoising 4 latents" in updates[0][1]
    picture, status, _, scrubber, caption, record, png = updates[-1]
    assert picture.ndim == 2 and "[a | thick | seven]" in status
    assert len(run.frames) == 5 and run.images.shape == (4, 1, 28, 28)
    assert run.words == ["a", "thick", "seven"]
    assert scrubber["maximum"] == 4
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), picture)
        assert json.loads(im.text["provenance"]) == record
    assert record["controls"]["prompt"] == "a thick seven" and record["seed"] == 2


def test_attention_maps_show_one_panel_per_word(ckpt):
    _, run = finished_run(ckpt)
    fig = tab.attention_maps(run, 1)
    assert fig.ndim == 3 and fig.shape[1] > 3 * fig.shape[0]  # image + 3 word panels side by side
    with pytest.raises(gr.Error, match="Sample number"):
        tab.attention_maps(run, 9)
    with pytest.raises(gr.Error, match="Generate first"):
        tab.attention_maps(None, 0)


def test_scrubber_shows_decoded_steps_and_latents(ckpt):
    _, run = finished_run(ckpt)
    img, latents, label = tab.scrub(run, 2)
    assert img.ndim == 2 and latents.ndim == 2 and "after 3 of 5" in label
    with pytest.raises(gr.Error, match="Frame must be"):
        tab.scrub(run, 5)


def test_a_long_run_keeps_a_bounded_number_of_uint8_frames(ckpt, monkeypatch):
    monkeypatch.setattr(parts, "MAX_FRAMES", 3)  # 200 in the page: here 3 of 10 steps
    run = list(tab.generate(ckpt, "a seven", 2, 10, 3.0, 0.0, 0))[-1][2]
    assert run.total == 10 and len(run.frames) == 3
    assert run.frames.steps == [0, 4, 9] and "after 10 of 10" in tab.scrub(run, 2)[2]
    assert all(v.dtype == np.uint8 for f in run.frames.images for v in f.values())


def test_cancel_says_where_it_stopped(ckpt, monkeypatch):
    monkeypatch.setattr(tab, "PREVIEW_S", -1.0)
    stream = tab.generate(ckpt, "a seven", 2, 10, 3.0, 0.0, 0)
    for _ in range(3):  # the start, then steps 1 and 2
        run = next(stream)[2]
    status, scrubber = tab.cancel_generate(run)
    assert status.startswith("Cancelled at step 2 of 10") and scrubber["maximum"] == 1
    assert list(stream) == [] and not run.done
    assert "after 2 of 10" in tab.scrub(run, 1)[2]
    with pytest.raises(gr.Error, match="finished run"):
        tab.attention_maps(run, 0)
    assert "Nothing to cancel" in tab.cancel_generate(None)[0]


def test_cancel_stops_a_run_started_with_enter_too(ckpt):
    """Cancel cancels the Generate click, the prompt's Enter and the page's first run."""
    with gr.Blocks() as demo:
        page = parts.Page(demo, tab=tab.TITLE)
        tab.build(page)
    config = demo.config
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    deps = config["dependencies"]
    started = {d["id"] for d in deps if d["targets"] in ([(ids["ldm-generate"], "click")],
                                                          [(ids["ldm-prompt"], "submit")])}
    started |= {d["id"] for d in deps if any(e == "load" for _, e in d["targets"]) and d["types"]["generator"]}
    assert len(started) == 3
    cancels = [set(d["cancels"]) for d in deps if d["targets"] == [(ids["ldm-cancel"], "click")] and d["cancels"]]
    assert cancels and all(c == started for c in cancels)
    assert {a.api_name for a in page.actions} == {
        "text_to_image", "text_to_image_compare", "text_to_image_autoencode", "text_to_image_train",
        "text_to_image_train_resume", "text_to_image_train_cancel", "text_to_image_train_plan"}


def test_compare_prompts_gives_one_row_each(ckpt):
    img, caption, record, png = tab.compare(ckpt, "a thick seven\na thin seven\n", 3, 5, 3.0, 0)
    assert "thin seven" in caption and record["controls"]["prompts"] == ["a thick seven", "a thin seven"]
    rows = img.shape[0] / img.shape[1] * 3
    assert round(rows) == 2
    with Image.open(png) as im:
        assert json.loads(im.text["provenance"]) == record
    with pytest.raises(gr.Error, match="2 to 4 prompts"):
        tab.compare(ckpt, "a seven", 3, 5, 3.0, 0)
    with pytest.raises(gr.Error, match="Unknown word"):
        tab.compare(ckpt, "a seven\na dragon", 3, 5, 3.0, 0)
    with pytest.raises(gr.Error, match="Samples per prompt"):
        tab.compare(ckpt, "a seven\na two", 0, 5, 3.0, 0)


def test_autoencoder_view(ckpt):
    pair, channels, caption = tab.autoencode(ckpt, 3)
    assert pair.ndim == 2 and channels.ndim == 2 and "98 latent numbers for 784 pixels" in caption
    with pytest.raises(gr.Error, match="Test image number"):
        tab.autoencode(ckpt, 10_000)


@pytest.mark.parametrize("prompt, n, seed, message", [
    ("", 4, 0, "Write a prompt"),
    ("a purple seven", 4, 0, "Unknown word.*'purple'"),
    ("a 七 seven", 4, 0, "Unknown word.*'七'"),  # was silently dropped, while "sevem" was refused
    ("a sevem", 4, 0, "Unknown word.*'sevem'"),
    ("a seven", 0, 0, "Number of samples"),
    ("a seven", 4, -1, "Seed"),
])
def test_bad_input_is_a_clear_message(ckpt, prompt, n, seed, message):
    with pytest.raises(gr.Error, match=message):
        list(tab.generate(ckpt, prompt, n, 5, 3.0, 0.0, seed))


def test_training_from_the_page_streams_and_lists_the_run(ckpt, actions, monkeypatch):
    monkeypatch.setattr(tab, "TRAIN_PRESET", "tiny")
    updates = list(actions["text_to_image_train"]("mnist", 2, 4, 16, 1e-3, "page_ldm", ckpt))
    assert "page_ldm" in updates[-1][0] and "Finished 4 steps" in updates[-1][0]
    assert any(isinstance(u[2], np.ndarray) for u in updates)
    names = [v for _, v in updates[-1][3]["choices"]]
    assert "page_ldm" in names
