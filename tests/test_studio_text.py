"""The Text tab's handlers, called as the page calls them, on tiny checkpoints: streaming generation
that a seed reproduces, the distribution at a clicked token, the predictive keyboard, the
temperature comparison, attention maps, uploads, and clear messages for bad input."""
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.text import corpus as text
from models.core import train as training
from studio import jobs, widgets
from studio.tabs import text as tab


@pytest.fixture
def ckpts(tmp_path, monkeypatch):
    """A tiny char GPT and a tiny word LSTM among the user's checkpoints."""
    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(tab, "JOBS", jobs.Jobs())
    monkeypatch.setattr(text, "UPLOADS", tmp_path / "corpora")
    torch.manual_seed(0)
    for fam, name, over in [("gpt", "tiny_gpt", {"block": 64, "seq_len": 16}), ("lstm", "tiny_lstm", {"level": "word"})]:
        config = FAMILIES[fam].config("tiny", **over)
        checkpoint.save(tmp_path / "checkpoints" / f"{name}.safetensors", FAMILIES[fam].build(config), fam, config)
    return "tiny_gpt", "tiny_lstm"


def final(updates):
    return updates[-1]


def test_choices_list_both_families_and_cards(ckpts):
    names = [v for _, v in tab.choices()]
    assert "tiny_gpt" in names and "tiny_lstm" in names
    card, prompt, att, layer, head = tab.select_checkpoint("tiny_gpt")
    assert "tiny_gpt" in card and prompt["value"].startswith("HAMLET") and att["visible"]
    assert layer["maximum"] == 2 and head["maximum"] == 2  # sliders need maximum > minimum
    card, prompt, att, _, _ = tab.select_checkpoint("tiny_lstm")
    assert not att["visible"] and prompt["value"] == "hamlet to be, or not to be"


def test_generate_streams_and_a_seed_reproduces_it(ckpts):
    args = ("tiny_gpt", "To be", 30, 0.8, 0, 1.0, False, 7, False)
    updates = list(tab.generate(*args))
    plain, out, status, dist, run, position = final(updates)
    assert plain == "".join(piece for piece, _ in out)
    assert "30 tokens" in status and "seed 7" in status and "repeated 4-grams" in status
    assert out[0] == ("To be", None) and len(out) == 31 and all(lab in tab.BUCKETS for _, lab in out[1:])
    assert dist.ndim == 3 and position["maximum"] == 30
    again = final(list(tab.generate(*args)))
    assert again[1] == out
    other = final(list(tab.generate("tiny_gpt", "To be", 30, 0.8, 0, 1.0, False, 8, False)))
    assert other[1] != out


def test_clicking_a_token_shows_its_alternatives(ckpts):
    run = final(list(tab.generate("tiny_gpt", "Ham", 10, 1.0, 5, 1.0, False, 0, False)))[4]
    assert tab.select_token(run, SimpleNamespace(index=3)) == 3  # item 0 is the prompt
    assert isinstance(tab.select_token(run, SimpleNamespace(index=0)), dict)  # the prompt: no change
    img = tab.show_position(run, 3)
    assert img.ndim == 3
    r = run["steps"][2]
    assert sum(a > 0 for a in r["after"]) <= 5 and r["token"] in r["ids"]
    with pytest.raises(gr.Error, match="Position must be"):
        tab.show_position(run, 11)
    with pytest.raises(gr.Error, match="Generate first"):
        tab.show_position(None, 1)


def test_greedy_equals_top_k_one_in_the_page(ckpts):
    a = final(list(tab.generate("tiny_gpt", "To be", 20, 1.0, 1, 1.0, False, 1, False)))[0]
    b = final(list(tab.generate("tiny_gpt", "To be", 20, 1.0, 0, 1.0, True, 2, False)))[0]
    assert a == b


@pytest.mark.parametrize("args, words", [
    (("tiny_gpt", "", 10, 1.0, 0, 1.0, False, 0, False), "Type a prompt"),
    (("tiny_gpt", "   ", 10, 1.0, 0, 1.0, False, 0, False), "Type a prompt"),
    (("tiny_lstm", "the zeppelin", 10, 1.0, 0, 1.0, False, 0, False), "Not in this model's vocabulary.*zeppelin"),
    (("tiny_gpt", "To be", 10, 0.0, 0, 1.0, False, 0, False), "Temperature must be above 0"),
    (("tiny_gpt", "To be", 10, -1.0, 0, 1.0, False, 0, False), "Temperature must be above 0"),
    (("tiny_gpt", "To be", 10, 1.0, 0, 1.0, False, -3, False), "Seed"),
    ((None, "To be", 10, 1.0, 0, 1.0, False, 0, False), "Choose a checkpoint"),
])
def test_bad_input_gives_clear_messages(ckpts, args, words):
    with pytest.raises(gr.Error, match=words):
        list(tab.generate(*args))


def test_predictive_keyboard_appends_and_repredicts(ckpts):
    typed, pieces, caption, *buttons = tab.predict("tiny_lstm", "to be")
    assert typed == "to be" and len(pieces) == tab.KEYS == len(buttons) and "entropy" in caption
    assert all("%" in b["value"] for b in buttons)
    typed2, pieces2, *_ = tab.press(0)("tiny_lstm", "to be", pieces)
    assert typed2.startswith("to be") and len(typed2) > len("to be")
    assert text.split_words(typed2)[-1] == text.split_words(pieces[0])[-1] or pieces[0] in ("\n", text.SEP)
    with pytest.raises(gr.Error, match="Type a prompt"):
        tab.predict("tiny_lstm", "")
    with pytest.raises(gr.Error, match="Predict first"):
        tab.press(0)("tiny_lstm", "to be", [])


def test_temperature_comparison_is_reproducible(ckpts):
    updates = list(tab.compare("tiny_gpt", "To be", 40, 0, 1.0, 3, False))
    assert len(updates) == 5 and updates[0][1]["value"] == ""  # streamed one temperature at a time
    outs = updates[-1]
    assert len(outs) == 5 and all(o["value"].startswith("To be") for o in outs)
    assert [o["label"].split(":")[0] for o in outs] == [f"τ = {t}" for t in tab.TEMPERATURES]
    again = final(list(tab.compare("tiny_gpt", "To be", 40, 0, 1.0, 3, False)))
    assert [o["value"] for o in again] == [o["value"] for o in outs]


def test_attention_maps_for_gpt_only(ckpts):
    run = final(list(tab.generate("tiny_gpt", "To be", 20, 1.0, 0, 1.0, False, 0, False)))[4]
    big, overview, caption = tab.attention_view(run, 1, 2, 16)
    assert big.ndim == 3 and overview.ndim == 3 and "16 tokens" in caption
    with pytest.raises(gr.Error, match="Head must be"):
        tab.attention_view(run, 1, 3, 16)
    lstm_run = final(list(tab.generate("tiny_lstm", "to be", 5, 1.0, 0, 1.0, False, 0, False)))[4]
    assert tab.attention_after(lstm_run, 1, 1, 16) == (None, None, "")
    with pytest.raises(gr.Error, match="need a transformer"):
        tab.attention_view(lstm_run, 1, 1, 16)


def test_upload_refuses_binary_and_adds_text(ckpts, tmp_path):
    binary = tmp_path / "model.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(gr.Error, match="binary file"):
        tab.upload_corpus(str(binary))
    story = tab_story = tmp_path / "fables.txt"
    story.write_text("The fox and the grapes. The fox could not reach them.\n\n" * 30)
    update, msg = tab.upload_corpus(str(tab_story))
    assert update["value"].endswith("fables.txt") and "30 paragraphs" in msg
    assert update["value"] in [v for _, v in tab.corpus_choices()]


def test_training_in_the_page_streams_a_sample(ckpts, monkeypatch):
    monkeypatch.setitem(tab.SIZES, "gpt", {"small": {"d_model": 16, "heads": 2, "layers": 1, "ff": 32}})
    ups = list(tab.train_start("gpt", "hamlet", "char", "small", "lstm", 1, 10, 8, 1e-3, "page_gpt", "tiny_gpt"))
    status, curves, preview, dd = ups[-1]
    assert "Finished 10 steps" in status
    assert any(isinstance(u[2], str) and u[2] for u in ups)  # a sample printed during training
    assert "page_gpt" in [v for _, v in tab.choices()]
