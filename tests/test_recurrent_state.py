"""Reading a recurrent model's state: per-step h and c replayed with the LSTM's own weights, units that
track readable features of the text, the Text tab's view of them, and the Music tab's book
temperatures."""
import gradio as gr
import numpy as np
import pytest
import torch

from models import FAMILIES
from models.core import checkpoint
from models.core.train import SHIPPED
from models.music import music_transformer as mt
from models.text import corpus, lstm
from studio import parts
from studio.tabs import music as music_tab
from studio.tabs import text as tab

TEXT = "HAMLET\nWho's there? [Aside] \"Stand, ho!\"\nHORATIO\nFriends to this ground.\n"


@pytest.mark.parametrize("cell, layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
def test_per_step_states_match_the_torch_layer(cell, layers):
    torch.manual_seed(0)
    model = FAMILIES["lstm"].build(FAMILIES["lstm"].config("tiny", cell=cell, layers=layers)).eval()
    ids = [1] + model.tokenizer.encode(TEXT, strict=False)
    st = lstm.states(model, ids)
    with torch.no_grad():
        out, final = model.rnn(model.embed(torch.tensor([ids])))
    assert st.h.shape == (layers, len(ids), 16)
    assert torch.allclose(st.h[-1], out[0], atol=1e-5)  # nn.LSTM's per-step outputs are the top layer's h
    h_n = final[0] if cell == "lstm" else final
    assert torch.allclose(st.h[:, -1], h_n[:, 0], atol=1e-5)  # every layer's last h
    if cell == "lstm":
        assert st.c.shape == st.h.shape
        assert torch.allclose(st.c[:, -1], final[1][:, 0], atol=1e-5)  # and its last c
        big = torch.tanh(st.c).abs() > 1e-3
        o = (st.h / torch.tanh(st.c))[big]  # h = o ⊙ tanh(c): the output gate lies in (0, 1)
        assert ((o > 0) & (o < 1)).all()
    else:
        assert st.c is None


def test_features_of_a_play_text():
    tok = corpus.Tokenizer("char", (corpus.UNK, corpus.SEP, *sorted(set(TEXT))))
    ids = tok.encode(TEXT, strict=False)
    f = lstm.text_features(tok, ids)
    chars = [tok.piece(i) for i in ids]
    on = lambda name: "".join(c for c, v in zip(chars, f[name]) if v)  # noqa: E731
    assert on("speaker name") == "HAMLETHORATIO"
    assert on("inside quotes") == '"Stand, ho!"'
    assert on("inside [stage directions]") == "[Aside]"
    assert on("line end") == "\n" * 4
    assert f["position in line"][chars.index("W")] == 1


def test_feature_units_find_the_unit_that_tracks_a_feature():
    rng = np.random.default_rng(0)
    feature = (rng.random(400) < 0.3).astype(float)
    acts = rng.normal(size=(400, 32)) * 0.5
    acts[:, 7] = 0.9 * feature + 0.1 * rng.normal(size=400)
    acts[:, 3] = -feature + 0.3 * rng.normal(size=400)
    top = lstm.feature_units(acts, {"quote": feature, "absent": np.zeros(400)}, k=2)
    assert [u for u, _ in top["quote"]] == [7, 3]
    assert top["quote"][0][1] > 0.95 and top["quote"][1][1] < -0.8
    assert top["absent"] == []


@pytest.fixture
def ckpts(user_dir):
    torch.manual_seed(0)
    for fam, name, over in [("gpt", "tiny_gpt", {"block": 64, "seq_len": 16}), ("lstm", "tiny_lstm", {}),
                            ("lstm", "tiny_gru", {"cell": "gru"})]:
        config = FAMILIES[fam].config("tiny", **over)
        checkpoint.save(user_dir / f"{name}.safetensors", FAMILIES[fam].build(config), fam, config)


def test_state_view_draws_units_and_ranks_them(ckpts):
    img, html, rows, caption = tab.recurrent_view("tiny_lstm", "", TEXT, 1, "c", "")
    assert img.ndim == 3 and img.shape[2] == 3
    assert "unit" in html and "Read" in caption
    features = {r[0] for r in rows}
    assert {"speaker name", "inside quotes", "line end", "position in line"} <= features
    assert all(r[1] is None or -1 <= r[2] <= 1 for r in rows)
    img, html, rows, _ = tab.recurrent_view("tiny_lstm", "HAMLET\nTo be", "", 1, "h", "0, 5")  # the generated text
    assert html.count("<b>unit") == 2
    assert tab.recurrent_view("tiny_gru", "", TEXT, 1, "h", "")[0].ndim == 3


@pytest.mark.parametrize("name, kw, words", [
    ("tiny_gpt", {}, "recurrent models"),
    ("tiny_gru", {"kind": "c"}, "no cell state"),
    ("tiny_lstm", {"units": "99"}, "out of range"),
    ("tiny_lstm", {"units": "a, b"}, "whole numbers"),
    ("tiny_lstm", {"layer": 2}, "Layer"),
])
def test_state_view_bad_choices_give_clear_messages(ckpts, name, kw, words):
    args = {"generated_text": "", "text": TEXT, "layer": 1, "kind": "h", "units": ""} | kw
    with pytest.raises(gr.Error, match=words):
        tab.recurrent_view(name, **args)


def test_music_book_settings_set_the_books_temperatures():
    assert music_tab.book_temperatures() == (mt.BOOK_SAMPLING["note_temperature"],
                                             mt.BOOK_SAMPLING["duration_temperature"]) == (0.5, 0.5)
    with gr.Blocks() as demo:
        music_tab.build(parts.Page(demo, tab="music"))
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "music-book-temperatures")
    dep = next(d for d in demo.fns.values() if (button._id, "click") in d.targets)
    assert dep.fn() == (0.5, 0.5)
    assert [o.label for o in dep.outputs] == ["Pitch temperature (0 = most likely)", "Duration temperature"]



SHIPPED_CHAR = SHIPPED / "lstm_hamlet.safetensors"


@pytest.mark.skipif(not SHIPPED_CHAR.exists(), reason="lstm_hamlet not shipped")
def test_the_shipped_character_lstm_has_readable_units():
    """Reading the end of Hamlet (held out), one cell unit counts along the line and units follow the
    speaker names; an untrained LSTM of the same size gets nowhere near (|r| about 0.3)."""
    model, config, _ = checkpoint.load(SHIPPED_CHAR)
    assert (config.level, config.cell) == ("char", "lstm")
    ids = [1] + model.tokenizer.encode(corpus.documents("hamlet")[-1][-3000:], strict=False)
    st = lstm.states(model.eval(), ids)
    features = {k: v[1:] for k, v in lstm.text_features(model.tokenizer, ids).items()}
    top = lstm.feature_units(st.c[0, 1:].numpy(), features, k=1)
    assert abs(top["position in line"][0][1]) > 0.8
    assert abs(top["speaker name"][0][1]) > 0.45
