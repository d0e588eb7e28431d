"""The Music tab's handlers, called as the page calls them: a piece streams in, then plays, downloads
and is explained; bad input gives a clear message (gr.Error); training in the page streams loss
curves and a playable sample."""
import json
import time

import gradio as gr
import numpy as np
import pretty_midi
import pytest

from models.music import notes as music
from models.core import train as training
from studio import jobs, widgets
from studio.tabs import music as tab

SHIPPED = "music_chorales"
CHORALE = "bach/bwv269 (held-out)"


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """Send the user's checkpoints, uploads and training state to a temporary folder."""
    monkeypatch.setattr(widgets, "USER_CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(training, "STATE", tmp_path / "state")
    monkeypatch.setattr(tab, "UPLOADS", tmp_path / "midi")
    monkeypatch.setattr(jobs, "JOBS", jobs.Jobs())
    monkeypatch.setattr(tab, "JOBS", jobs.JOBS)
    return tmp_path / "checkpoints"


def generate(**kw):
    args = dict(name=SHIPPED, source=tab.FROM_CHORALE, chorale=CHORALE, midi_file=None, phrase_len=8, notes=24,
                t_pitch=1.0, t_duration=0.7, seed=0, bpm=90, instrument="Church organ")
    args.update(kw)
    return list(tab.generate(*args.values()))


def test_generate_streams_then_gives_sound_files_and_explanations():
    outs = generate()
    sound, files, roll, status, run, heat, listing = outs[-1]
    rate, audio = sound
    assert rate == music.SAMPLE_RATE and audio.dtype == np.int16 and np.abs(audio).max() > 1000
    assert roll.ndim == 3 and heat.ndim == 3
    assert "24 notes" in status and "seed 0" in status.lower()
    assert run["pitch"].shape == (1 + 8 + 24,) and run["prompt_length"] == 8
    assert listing.startswith("seed: G4 1, G4 2")  # bwv269 opens G4 G4 D5 …
    midi_path, xml_path, json_path = files
    prov = json.loads(open(json_path).read())
    assert prov["checkpoint"] == SHIPPED and prov["seed"] == 0 and prov["notes"][:2] == ["G4 1", "G4 2"]
    pm = pretty_midi.PrettyMIDI(midi_path)
    assert len(pm.instruments[0].notes) == int((run["pitch"] >= 2).sum())
    assert xml_path.endswith(".musicxml")
    att, caption = tab.show_attention(run, 3, "mean")
    assert att.ndim == 3 and "row" in caption
    att1, _ = tab.show_attention(run, 1, "2")
    assert not np.array_equal(att, att1)


def test_the_attention_rnn_generates_and_explains_too():
    sound, files, roll, status, run, heat, listing = generate(name="music_rnn_chorales", notes=16)[-1]
    assert np.abs(sound[1]).max() > 1000 and run["pitch"].shape == (1 + 8 + 16,)
    card, layer, head, shown = tab.select_checkpoint("music_rnn_chorales")
    assert "attention RNN" in card and "pitch loss" in card and head["choices"] in (["mean", "1"], [("mean", "mean"), ("1", "1")])
    att, caption = tab.show_attention(run, 1, "1")
    assert att.ndim == 3
    with pytest.raises(gr.Error, match="Layer must be from 1 to 1"):
        tab.show_attention(run, 2, "mean")


def test_same_seed_same_piece_other_seed_differs():
    a, b, c = (generate(seed=s, source=tab.FROM_START, notes=10)[-1][4] for s in (4, 4, 5))
    assert np.array_equal(a["pitch"], b["pitch"]) and np.array_equal(a["duration"], b["duration"])
    assert not np.array_equal(a["pitch"], c["pitch"])


def test_rerender_changes_tempo_and_instrument():
    run = generate(notes=8)[-1][4]
    slow = tab.rerender(run, 60, "Flute")[1]
    fast = tab.rerender(run, 180, "Flute")[1]
    assert len(slow) > 2 * len(fast)
    with pytest.raises(gr.Error, match="Generate a piece first"):
        tab.rerender(None, 90, "Flute")
    with pytest.raises(gr.Error, match="Unknown instrument"):
        tab.rerender(run, 90, "Kazoo")


def test_seed_phrase_from_an_uploaded_midi(tmp_path):
    p, d = music.chorale("bach/bwv347")
    path = tmp_path / "mine.mid"
    path.write_bytes(music.midi_bytes(music.to_midi(p, d)))
    run = generate(source=tab.FROM_MIDI, midi_file=str(path), phrase_len=5, notes=6)[-1][4]
    assert np.array_equal(run["pitch"][1:6], p[:5])
    roll, note = tab.describe_upload(str(path))
    assert roll["visible"] and roll["value"].ndim == 3 and f"mine.mid: {int((p >= 2).sum())} notes" in note


@pytest.mark.parametrize("kw, words", [
    ({"notes": 0}, "Number of notes"),
    ({"notes": 10**6}, "Number of notes"),
    ({"seed": -1}, "Seed"),
    ({"t_pitch": -0.5}, "temperature"),
    ({"bpm": 1000}, "Tempo"),
    ({"source": tab.FROM_MIDI}, "Upload a MIDI"),
    ({"phrase_len": 0}, "Seed phrase length"),
    ({"chorale": "bach/nothing"}, "No chorale"),
    ({"name": "no_such_checkpoint"}, "No music checkpoint"),
])
def test_bad_generate_input_gives_a_clear_message(kw, words):
    with pytest.raises(gr.Error, match=words):
        generate(**kw)


def test_bad_uploads_give_clear_messages(tmp_path):
    text = tmp_path / "song.mid"
    text.write_text("la la la")
    with pytest.raises(gr.Error, match="not a MIDI file"):
        tab.describe_upload(str(text))
    with pytest.raises(gr.Error, match="not a MIDI file"):
        generate(source=tab.FROM_MIDI, midi_file=str(text))
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(gr.Error, match="no notes"):
        list(tab.train_start("Transformer", 0, [str(empty)], 2, 8, 1e-3, 1, "x", SHIPPED))
    with pytest.raises(gr.Error, match="Unknown model"):
        list(tab.train_start("GPT-5", 0, [], 2, 8, 1e-3, 1, "x", SHIPPED))


def test_attention_needs_a_piece_and_valid_layer_and_head():
    with pytest.raises(gr.Error, match="Generate a piece first"):
        tab.show_attention(None, 1, "mean")
    run = {"name": SHIPPED, "pitch": np.array([0, 60, 62]), "duration": np.array([0, 4, 4])}
    with pytest.raises(gr.Error, match="Layer"):
        tab.show_attention(run, 9, "mean")
    with pytest.raises(gr.Error, match="Head"):
        tab.show_attention(run, 1, "9")


def test_card_shows_validation_losses():
    card, layer, head, shown = tab.select_checkpoint(SHIPPED)
    assert "pitch loss" in card and "duration loss" in card and "nats" in card
    assert head["choices"][0] == ("mean", "mean") or head["choices"][0] == "mean"


def test_training_in_the_page_streams_curves_and_a_playable_sample(user_dir, tmp_path):
    p, d = music.chorale("bach/bwv347")
    mine = tmp_path / "mine.mid"
    mine.write_bytes(music.midi_bytes(music.to_midi(p, d)))
    outs = []
    deadline = time.time() + 60
    for out in tab.train_start("Transformer", 0, [str(mine)], 20, 8, 1e-3, 1, "my_music_test", SHIPPED):
        outs.append(out)
        assert time.time() < deadline
    status, *_ = outs[-1]
    assert "Finished 20 steps" in status
    sounds = [o[3] for o in outs if isinstance(o[3], tuple)]
    assert sounds and sounds[-1][0] == music.SAMPLE_RATE and np.abs(sounds[-1][1]).max() > 0
    assert (user_dir / "my_music_test.safetensors").exists()
    assert (tab.UPLOADS / "mine.mid").exists()
    assert "my_music_test" in [v for _, v in widgets.checkpoint_choices("music_transformer")]
    assert {SHIPPED, "music_rnn_chorales", "my_music_test"} <= {v for _, v in outs[-1][4]["choices"]}


def test_training_the_attention_rnn_in_the_page(user_dir):
    outs = list(tab.train_start("Attention RNN", 0, [], 10, 8, 1e-3, 1, "my_rnn_test", SHIPPED))
    assert "Finished 10 steps" in outs[-1][0]
    assert tab.family_of("my_rnn_test") == "music_rnn"
    resumed = list(tab.train_resume("my_rnn_test", 20, SHIPPED))
    assert "Finished 20 steps" in resumed[-1][0]
