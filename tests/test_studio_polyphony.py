"""The four-voice chorales tab's handlers, called as the page calls them: a generated piece streams its
piano roll, then plays, exports four parts (MIDI and MusicXML) and is scored beside Bach; a chorale's
tokens round-trip; bad input (a one-voice MIDI file, out-of-range controls) gives a clear message."""
import math

import gradio as gr
import mido
import numpy as np
import pytest

from models.music import chorales as ch, notes as music
from studio.tabs import polyphony as tab


def drain(gen):
    frames = list(gen)
    assert frames
    return frames[-1]


@pytest.mark.parametrize("name", list(tab.CHECKPOINTS.values()))
def test_generate_plays_scores_and_exports_four_parts(name):
    from music21 import converter

    sound, roll, table, tokens, caption, record, files = drain(tab.generate(name, bars=2, seed=3))
    rate, audio = sound
    assert rate == music.SAMPLE_RATE and audio.dtype == np.int16 and len(audio) > rate
    assert roll.ndim == 3 and roll.shape[2] == 3
    assert "this piece" in table and "held-out chorales" in table and "notes in key" in table
    assert "BOS" in tokens and "Seed 3" in caption and record["controls"]["bars"] == 2
    by_suffix = {f.rsplit(".", 1)[1]: f for f in files}
    assert set(by_suffix) == {"mid", "musicxml", "wav", "json"}
    assert len(converter.parse(by_suffix["musicxml"]).parts) == 4
    names = [t.name for t in mido.MidiFile(by_suffix["mid"]).tracks]
    assert all(v in names for v in ch.VOICES)  # one named track per voice (a silent voice too)


def test_continuing_a_chorale_keeps_its_opening_and_a_four_part_upload_works(tmp_path):
    chorale = tab.default_chorale()
    *_, record, files = drain(tab.generate(tab.DEFAULT, tab.FROM_CHORALE, chorale, seed_bars=1, bars=1))
    assert record["controls"]["chorale"] == chorale
    path = tmp_path / "four.mid"
    ch.to_midi(ch.crop(ch.chorale(chorale), 64)).write(str(path))
    _, note = tab.describe_upload(str(path))
    assert "four voices" in note
    *_, caption, record, _ = drain(tab.generate(tab.DEFAULT, tab.FROM_MIDI, None, 2, 1, midi_file=str(path)))
    assert "four.mid" in caption and record["controls"]["midi_file"] == "four.mid"


def test_a_one_voice_midi_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "melody.mid"
    music.to_midi(*music.chorale(music.chorale_names()[0])).write(str(path))
    with pytest.raises(gr.Error, match="has 1 voice.*one per voice"):
        drain(tab.generate(tab.DEFAULT, tab.FROM_MIDI, None, 2, 2, midi_file=str(path)))
    with pytest.raises(gr.Error, match="has 1 voice"):
        tab.describe_upload(str(path))
    with pytest.raises(gr.Error, match="Upload a four-part MIDI file"):
        drain(tab.generate(tab.DEFAULT, tab.FROM_MIDI, None))


@pytest.mark.parametrize("kwargs, words", [
    ({"bars": 0}, "Bars to generate must be a whole number from 1 to 32"),
    ({"bars": math.nan}, "Bars to generate"),
    ({"temperature": 5}, "Temperature must be between 0 and 2"),
    ({"temperature": "hot"}, "Temperature must be a number"),
    ({"seed": -1}, "Seed"),
    ({"instruments": "kazoo"}, "Unknown ensemble 'kazoo'"),
    ({"start_from": "somewhere"}, "Unknown start 'somewhere'"),
    ({"checkpoint": "nope"}, "No four-voice checkpoint named 'nope'"),
])
def test_bad_controls_give_clear_messages(kwargs, words):
    with pytest.raises(gr.Error, match=words):
        drain(tab.generate(**kwargs))


@pytest.mark.parametrize("kind", ch.TOKENISATIONS)
def test_tokens_view_round_trips(kind):
    text, note, roll = tab.show_tokens(tab.default_chorale(), kind, 2)
    assert "exactly the same notes" in note and roll.ndim == 3
    assert ("hold" in text or "rest" in text) if kind == "grid" else ("on S:" in text and "shift" in text)
    with pytest.raises(gr.Error, match="Start bar"):
        tab.show_tokens(tab.default_chorale(), kind, 999)
    with pytest.raises(gr.Error, match="Unknown tokenisation"):
        tab.show_tokens(tab.default_chorale(), "roll", 1)


def test_train_section_builds_the_chosen_layout_and_refuses_bad_values():
    c = tab.train_config("events", 2, 3, steps=40, batch_size=8, lr=5e-4)
    assert (c.tokenisation, c.transpose, c.n_layers, c.steps, c.batch_size, c.lr) == ("events", 2, 3, 40, 8, 5e-4)
    for args, words in ((("midi", 2, 2), "Tokenisation must be one of"), (("grid", 2.5, 2), "Transpose must be"),
                        (("grid", 2, 0), "Layers must be a whole number from 1 to 6")):
        with pytest.raises(ValueError, match=words):
            tab.train_config(*args, steps=40, batch_size=8, lr=5e-4)


def test_training_snapshots_replay_as_roll_and_sound():
    """What the loop keeps every N steps (two bars from a fixed seed) survives its JSON round trip and
    renders as a four-colour roll with audio: the replay that makes progress audible."""
    from models.core import train as training
    from models.core.family import seeded
    from models.music import polyphony as poly

    model = tab.loaded(tab.DEFAULT)[0]
    kept = training.from_json(training.to_json(poly.preview(model, seeded(0))))
    roll, (rate, audio) = tab.train_preview(kept)
    assert len(kept["voices"]) == 4 and sum(map(len, kept["voices"])) > 0
    assert roll.ndim == 3 and rate == music.SAMPLE_RATE and len(audio) > 0
