"""The text-to-image tab's handlers, called as the page calls them, on a tiny checkpoint: streaming
generation, attention maps per word, the scrubber, prompt comparison, the autoencoder view, and
clear messages for bad prompts."""
import gradio as gr
import numpy as np
import pytest

from models import FAMILIES
from models.core import checkpoint, train as training
from studio import jobs, widgets
from studio.tabs import latent as tab


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    """A tiny untrained latent-diffusion model saved among the user's checkpoints."""
    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(tab, "JOBS", jobs.Jobs())
    fam = FAMILIES["ldm"]
    config = fam.config("tiny")
    checkpoint.save(tmp_path / "checkpoints" / "tiny_ldm.safetensors", fam.build(config), "ldm", config)
    return "tiny_ldm"


def finished_run(ckpt, prompt="a thick seven", n=4):
    updates = list(tab.generate(ckpt, prompt, n, 5, 3.0, 0.0, 2))
    runs = [u[2] for u in updates if u[2] is not None]
    assert len(runs) == 1
    return updates, runs[0]


def test_select_checkpoint_lists_the_words_it_knows(ckpt):
    card, prompt = tab.select_checkpoint(ckpt)
    assert "tiny_ldm" in card and "thick" in card and "seven" in card
    assert prompt["value"] == "a thick seven"


def test_generate_streams_and_keeps_every_step(ckpt):
    updates, run = finished_run(ckpt)
    assert updates[0][0] is None and "Denoising 4 latents" in updates[0][1]
    final = updates[-1]
    assert final[0].ndim == 2 and "[a | thick | seven]" in final[1]
    assert len(run["x0s"]) == 5 and run["images"].shape == (4, 1, 28, 28)
    assert run["words"] == ["a", "thick", "seven"]
    assert final[3]["maximum"] == 5


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
    img, latents, label = tab.scrub(run, 3)
    assert img.ndim == 2 and latents.ndim == 2 and "after 3 of 5" in label
    with pytest.raises(gr.Error, match="Step must be"):
        tab.scrub(run, 0)


def test_compare_prompts_gives_one_row_each(ckpt):
    img, caption = tab.compare(ckpt, "a thick seven\na thin seven\n", 3, 5, 3.0, 0)
    assert "thin seven" in caption
    rows = img.shape[0] / img.shape[1] * 3
    assert round(rows) == 2
    with pytest.raises(gr.Error, match="2 to 4 prompts"):
        tab.compare(ckpt, "a seven", 3, 5, 3.0, 0)
    with pytest.raises(gr.Error, match="Unknown word"):
        tab.compare(ckpt, "a seven\na dragon", 3, 5, 3.0, 0)


def test_autoencoder_view(ckpt):
    pair, channels, caption = tab.autoencode(ckpt, 3)
    assert pair.ndim == 2 and channels.ndim == 2 and "98 latent numbers for 784 pixels" in caption
    with pytest.raises(gr.Error, match="Test image number"):
        tab.autoencode(ckpt, 10_000)


@pytest.mark.parametrize("prompt, n, seed, message", [
    ("", 4, 0, "Write a prompt"),
    ("a purple seven", 4, 0, "Unknown word.*'purple'"),
    ("a seven", 0, 0, "Number of samples"),
    ("a seven", 4, -1, "Seed"),
])
def test_bad_input_is_a_clear_message(ckpt, prompt, n, seed, message):
    with pytest.raises(gr.Error, match=message):
        list(tab.generate(ckpt, prompt, n, 5, 3.0, 0.0, seed))


def test_training_from_the_page_streams_and_lists_the_run(ckpt, monkeypatch):
    monkeypatch.setattr(tab, "TRAIN_PRESET", "tiny")
    updates = list(tab.train_start("mnist", 2, 4, 16, 1e-3, "page_ldm", ckpt))
    assert "page_ldm" in updates[-1][0] and "Finished 4 steps" in updates[-1][0]
    assert any(isinstance(u[2], np.ndarray) for u in updates)
    names = [v for _, v in updates[-1][3]["choices"]]
    assert "page_ldm" in names
