"""The Text tab's handlers, called as the page calls them, on tiny checkpoints: streaming generation
that a seed reproduces (with its text and provenance as a download), the distribution at a clicked
token, the predictive keyboard, the temperature comparison, attention maps, uploads kept by content,
training from the Train section, the named API, and clear messages for bad input."""
import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.text import corpus
from models.text.gpt import GPTConfig
from models.text.lstm import LSTMConfig
from studio import jobs, parts
from studio.tabs import text as tab


@pytest.fixture
def ckpts(user_dir):
    """A tiny char GPT and a tiny word LSTM among the user's checkpoints."""
    torch.manual_seed(0)
    for fam, name, over in [("gpt", "tiny_gpt", {"block": 64, "seq_len": 16}), ("lstm", "tiny_lstm", {"level": "word"})]:
        config = FAMILIES[fam].config("tiny", **over)
        checkpoint.save(user_dir / f"{name}.safetensors", FAMILIES[fam].build(config), fam, config)
    return "tiny_gpt", "tiny_lstm"


@pytest.fixture
def tiny_sizes(monkeypatch):
    """The Train section's "small" models shrunk so a run takes a second or two."""
    monkeypatch.setitem(tab.SIZES, "gpt", {"small": {"d_model": 16, "heads": 2, "layers": 1, "ff": 32}})
    monkeypatch.setitem(tab.SIZES, "lstm", {"small": {"embedding": 8, "hidden": 16}})


def final(updates):
    return updates[-1]


def test_header_lists_both_families_with_cards_from_their_hooks(ckpts):
    names = [v for _, v in parts.checkpoint_choices(tab.FAMS)]
    assert "tiny_gpt" in names and "tiny_lstm" in names
    labels = dict((v, k) for k, v in parts.checkpoint_choices(tab.FAMS))
    assert "GPT 1 layers × 2 heads" in labels["tiny_gpt"] and "1 × LSTM 16" in labels["tiny_lstm"]
    shipped = parts.card_of(tab.FAMS, "gpt_hamlet")
    assert "nats per token" in shipped and "perplexity" in shipped and "GPT 4 layers" in shipped
    assert "interrupted" in parts.card_of(tab.FAMS, "tiny_gpt")  # no card yet: the header says so
    prompt, typed, att, layer, head, _ = tab.select_checkpoint("tiny_gpt")
    assert prompt == typed and prompt.startswith("HAMLET") and att["visible"]
    assert layer["maximum"] == 2 and head["maximum"] == 2  # sliders need maximum > minimum
    prompt, _, att, _, _, state_layer = tab.select_checkpoint("tiny_lstm")
    assert not att["visible"] and prompt == "hamlet to be, or not to be"
    assert state_layer["maximum"] == 2 and state_layer["value"] == 1  # the recurrent state's layer slider
    assert not hasattr(tab, "card_text") and not hasattr(tab, "choices")


def test_generate_streams_a_seed_reproduces_it_and_the_download_carries_provenance(ckpts):
    args = ("tiny_gpt", "To be", 30, 0.8, 0, 1.0, False, 7, False)
    updates = list(tab.generate(*args))
    plain, out, status, dist, run, position, caption, record, files = final(updates)
    assert plain == "".join(piece for piece, _ in out)
    assert "30 tokens" in status and "seed 7" in status and "repeated 4-grams" in status
    assert out[0] == ("To be", None) and len(out) == 31 and all(lab in tab.BUCKETS for _, lab in out[1:])
    assert dist.ndim == 3 and position["maximum"] == 30
    assert "seed 7" in caption and "tiny_gpt" in caption
    txt, beside = files
    assert Path(txt).read_text(encoding="utf-8") == plain
    assert json.loads(Path(beside).read_text(encoding="utf-8")) == record
    assert record["family"] == "gpt" and record["seed"] == 7 and len(record["checkpoint_sha256"]) == 64
    assert record["controls"]["prompt"] == "To be" and record["controls"]["length"] == 30
    again = final(list(tab.generate(*args)))
    assert again[1] == out and again[8][0] != txt  # same text, its own download path
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
    (("tiny_gpt", "To be", 10, 1.0, 0, 1.0, False, 1.5, False), "Seed"),
    (("tiny_gpt", "To be", 10, 1.0, 0, 1.0, False, None, False), "Seed"),
    (("tiny_gpt", "To be", 10, 1.0, 0, 1.0, False, 1e30, False), "Seed"),
    ((None, "To be", 10, 1.0, 0, 1.0, False, 0, False), "Choose a checkpoint"),
])
def test_bad_input_gives_clear_messages(ckpts, args, words):
    with pytest.raises(gr.Error, match=words):
        list(tab.generate(*args))


def test_predictive_keyboard_appends_and_repredicts(ckpts):
    top, caption, keyset = tab.predict("tiny_lstm", "to be")
    assert len(top) == len(keyset) == tab.KEYS and "entropy" in caption
    assert list(top.values()) == [q for _, q in keyset] and all(0 < q < 1 for q in top.values())
    buttons = tab.show_keys(keyset)
    assert len(buttons) == tab.KEYS and all("%" in b["value"] for b in buttons)
    typed2, top2, _, keyset2 = tab.press(0)("tiny_lstm", "to be", keyset)
    assert typed2.startswith("to be") and len(typed2) > len("to be") and keyset2
    assert corpus.split_words(typed2)[-1] == corpus.split_words(keyset[0][0])[-1] or keyset[0][0] in ("\n", corpus.SEP)
    with pytest.raises(gr.Error, match="Type a prompt"):
        tab.predict("tiny_lstm", "")
    with pytest.raises(gr.Error, match="Predict first"):
        tab.press(0)("tiny_lstm", "to be", [])
    assert all(b["value"] == "…" for b in tab.show_keys([]))


def test_temperature_comparison_is_reproducible_and_downloadable(ckpts):
    updates = list(tab.compare("tiny_gpt", "To be", 40, 0, 1.0, 3, False))
    assert len(updates) == 6 and updates[0][1]["value"] == ""  # streamed one temperature at a time
    *outs, caption, record, (txt, beside) = updates[-1]
    assert len(outs) == 5 and all(o["value"].startswith("To be") for o in outs)
    assert [o["label"].split(":")[0] for o in outs] == [f"τ = {t}" for t in tab.TEMPERATURES]
    assert all(o["value"] in Path(txt).read_text(encoding="utf-8") for o in outs)
    assert json.loads(Path(beside).read_text(encoding="utf-8"))["controls"]["temperatures"] == list(tab.TEMPERATURES)
    again = final(list(tab.compare("tiny_gpt", "To be", 40, 0, 1.0, 3, False)))
    assert [o["value"] for o in again[:5]] == [o["value"] for o in outs]


def test_attention_maps_for_gpt_only_without_page_state(ckpts):
    plain = final(list(tab.generate("tiny_gpt", "To be", 20, 1.0, 0, 1.0, False, 0, False)))[0]
    big, overview, caption = tab.attention_view("tiny_gpt", plain, 1, 2, 16)
    assert big.ndim == 3 and overview.ndim == 3 and "16 tokens" in caption
    _, _, blank = tab.attention_view("tiny_gpt", "", 1, 1, 48)  # before any generation: the example prompt
    example = corpus.prompt_ids(tab.loaded("tiny_gpt")[0].tokenizer, "HAMLET\nTo be, or not to be")
    assert f"{len(example)} tokens" in blank
    with pytest.raises(gr.Error, match="Head must be"):
        tab.attention_view("tiny_gpt", plain, 1, 3, 16)
    with pytest.raises(gr.Error, match="vocabulary"):
        tab.attention_view("tiny_gpt", "5 €", 1, 1, 16)
    assert tab.attention_after("tiny_lstm", "to be", 1, 1, 16) == (None, None, "")
    with pytest.raises(gr.Error, match="need a transformer"):
        tab.attention_view("tiny_lstm", "to be", 1, 1, 16)


def test_upload_refuses_binary_and_keeps_text_by_content(ckpts, tmp_path):
    binary = tmp_path / "model.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(gr.Error, match="binary file"):
        tab.upload_corpus(str(binary))
    story = tmp_path / "fables.txt"
    story.write_text("The fox and the grapes. The fox could not reach them.\n\n" * 30)
    update, msg = tab.upload_corpus(str(story))
    assert Path(update["value"]).name.startswith("fables-") and "30 paragraphs" in msg
    assert update["value"] in [v for _, v in tab.corpus_choices()]
    assert tab.upload_corpus(str(story))[0]["value"] == update["value"]  # the same text: the same file


def test_train_config_follows_the_chosen_family():
    gpt_cfg = tab.train_config("gpt", "hamlet", "char", "small", "gru", 2, steps=100, batch_size=8, lr=1e-3)
    lstm_cfg = tab.train_config("lstm", "reviews", "word", "medium", "gru", 2, steps=100, batch_size=8, lr=1e-3)
    assert type(gpt_cfg) is GPTConfig and gpt_cfg.d_model == 64 and gpt_cfg.steps == 100
    assert type(lstm_cfg) is LSTMConfig and (lstm_cfg.cell, lstm_cfg.layers, lstm_cfg.hidden) == ("gru", 2, 256)
    assert (parts.family_of_config(gpt_cfg), parts.family_of_config(lstm_cfg)) == ("gpt", "lstm")
    with pytest.raises(ValueError, match="Unknown corpus"):
        tab.train_config("gpt", "/etc/passwd.txt", "char", "small", "lstm", 1, steps=100, batch_size=8, lr=1e-3)
    with pytest.raises(ValueError, match="Model must be"):
        tab.train_config("vae", "hamlet", "char", "small", "lstm", 1, steps=100, batch_size=8, lr=1e-3)


def test_training_in_the_page_streams_a_sample(ckpts, tiny_sizes, actions):
    ups = list(actions["text_train"]("gpt", "hamlet", "char", "small", "lstm", 1, 10, 8, 1e-3, "page_gpt", "tiny_gpt"))
    status, curves, preview, dd = ups[-1]
    assert "Finished 10 steps" in status
    assert any(isinstance(u[2], str) and u[2] for u in ups)  # a sample printed during training
    assert "page_gpt" in [v for _, v in dd["choices"]]
    assert "nats per token" in parts.card_of(tab.FAMS, "page_gpt")


def test_a_resumed_run_trains_on_the_text_it_started_with(ckpts, tiny_sizes, actions, user_dir, tmp_path):
    """Another upload with the same file name but other text never changes what a run resumes on."""
    first, second = tmp_path / "a" / "story.txt", tmp_path / "b" / "story.txt"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_text("abc cab bad dab. " * 40 + "\n\n" + "a bad cab. " * 60)
    second.write_text("xyz zyx wyx. " * 40 + "\n\n" + "zz yy xx. " * 60)
    name = tab.upload_corpus(str(first))[0]["value"]
    ups = list(actions["text_train"]("lstm", name, "char", "small", "lstm", 1, 10, 8, 1e-3, "story_run", "tiny_gpt"))
    assert "Finished 10 steps" in ups[-1][0]
    other = tab.upload_corpus(str(second))[0]["value"]  # someone uploads their story.txt
    assert other != name and Path(name).read_text() == first.read_text()
    ups = list(actions["text_train_resume"]("story_run", 20, "tiny_gpt"))
    assert "Finished" in ups[-1][0]
    _, config, meta = checkpoint.load(user_dir / "story_run.safetensors")
    assert meta["step"] == 20 and config.dataset == name
    assert set(config.vocab[2:]) == set("abcd .")  # the first story's characters, none of the second's
    assert corpus.documents(config.dataset)[0].startswith("abc cab")


def test_training_refuses_another_visitors_run(ckpts, tiny_sizes, actions):
    """A run started by one visitor cannot be resumed over by another."""
    list(actions["text_train"]("gpt", "hamlet", "char", "small", "lstm", 1, 10, 8, 1e-3, "mine", "tiny_gpt"))
    jobs.JOBS.owners["mine"] = "someone else"
    with pytest.raises(gr.Error, match="another visitor"):
        list(actions["text_train_resume"]("mine", 20, "tiny_gpt"))


def test_api_names_parameters_and_outputs(studio_app):
    endpoints = studio_app.get_api_info()["named_endpoints"]
    expected = {
        "/text_generate": ["checkpoint", "prompt", "length", "temperature", "top_k", "top_p", "greedy", "seed",
                           "stop_at_end"],
        "/text_predict": ["checkpoint", "text"],
        "/text_compare": ["checkpoint", "prompt", "length", "top_k", "top_p", "seed", "stop_at_end"],
        "/text_attention": ["checkpoint", "generated_text", "layer", "head", "last_tokens"],
        "/text_recurrent_state": ["checkpoint", "generated_text", "text", "layer", "kind", "units"],
        "/text_train": ["model", "corpus", "tokens", "size", "cell", "layers", "steps", "batch_size", "lr",
                        "run_name", "checkpoint", "processes"],
        "/text_train_resume": ["run_name", "steps", "checkpoint", "processes"],
        "/text_train_cancel": [],
        "/text_train_plan": ["model", "corpus", "tokens", "size", "cell", "layers", "steps", "batch_size", "lr",
                             "budget"],
    }
    for name, params in expected.items():
        assert [p["parameter_name"] for p in endpoints[name]["parameters"]] == params, name
        assert all(p["parameter_has_default"] for p in endpoints[name]["parameters"]), name  # callable bare
        assert not any(r["label"].startswith("value_") for r in endpoints[name]["returns"]), name
    assert not [n for n in endpoints if n.startswith("/text_") and n[-2] == "_" and n[-1].isdigit()]
    assert "/generate_text" not in endpoints


def test_page_defaults_give_results(actions):
    """What an API caller gets with the page's defaults: a real prompt, not an empty-prompt error."""
    prompt = tab.default_prompt()
    assert prompt.startswith("HAMLET")
    plain = final(list(actions["text_generate"]("gpt_hamlet", prompt, 20, 0.8, 0, 1.0, False, 0, False)))[0]
    assert plain.startswith(prompt) and len(plain) > len(prompt)
    assert len(actions["text_predict"]("gpt_hamlet", prompt)[0]) == tab.KEYS
    assert "tokens" in actions["text_attention"]("gpt_hamlet", "", 1, 1, 48)[2]
    assert "Read" in actions["text_recurrent_state"](tab.RECURRENT_EXAMPLE, "", "", 1, "h", "")[3]
