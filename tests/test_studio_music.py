"""The Music tab's handlers, called as the page calls them: a piece streams in, then plays, downloads
(with its provenance inside the MIDI file and beside it) and is explained; bad input gives a clear
message (gr.Error); training in the page streams loss curves and a playable sample, on uploads kept
by their contents."""
import json
import time

import gradio as gr
import numpy as np
import pretty_midi
import pytest
import soundfile

from models.music import notes as music
from studio import jobs, parts, widgets
from studio.tabs import music as tab

SHIPPED = "music_chorales"
CHORALE = "bach/bwv269 (held-out)"


def generate(**kw):
    args = dict(checkpoint=SHIPPED, start_from=tab.FROM_CHORALE, chorale=CHORALE, seed_phrase_notes=8, notes=24,
                pitch_temperature=1.0, duration_temperature=0.7, seed=0, tempo=90, instrument="Church organ",
                midi_file=None)
    args.update(kw)
    return list(tab.generate(**args))


def midi_of(tmp_path, chorale: str, name: str = "mine.mid") -> str:
    p, d = music.chorale(chorale)
    path = tmp_path / name
    path.write_bytes(music.midi_bytes(music.to_midi(p, d)))
    return str(path)


def test_generate_streams_then_gives_sound_files_and_explanations():
    sound, roll, heat, listing, caption, record, files, run = generate()[-1]
    rate, audio = sound
    assert rate == music.SAMPLE_RATE and audio.dtype == np.int16 and np.abs(audio).max() > 1000
    assert roll.ndim == 3 and heat.ndim == 3
    assert "24 notes" in caption and "seed 0" in caption.lower()
    assert run["pitch"].shape == (1 + 8 + 24,) and run["prompt_length"] == 8
    assert listing.startswith("seed: G4 1, G4 2")  # bwv269 opens G4 G4 D5 …
    att, att_caption = tab.show_attention(run, 3, "mean")
    assert att.ndim == 3 and "row" in att_caption
    att1, _ = tab.show_attention(run, 1, "2")
    assert not np.array_equal(att, att1)


def test_downloads_carry_their_provenance_in_a_folder_of_their_own():
    *_, record, files, run = generate()[-1]
    midi_path, xml_path, wav_path, json_path = files
    assert record["family"] == "music_transformer" and record["checkpoint"] == SHIPPED and record["seed"] == 0
    assert len(record["checkpoint_sha256"]) == 64 and record["controls"]["chorale"] == CHORALE
    pm = pretty_midi.PrettyMIDI(midi_path)  # the MIDI file carries the record in a text meta event
    assert [json.loads(t.text) for t in pm.text_events] == [record]
    assert len(pm.instruments[0].notes) == int((run["pitch"] >= 2).sum())
    beside = json.loads(open(json_path).read())
    assert {k: v for k, v in beside.items() if k != "notes"} == record and beside["notes"][:2] == ["G4 1", "G4 2"]
    assert xml_path.endswith(".musicxml") and "<score-partwise" in open(xml_path).read()
    wav, rate = soundfile.read(wav_path, dtype="int16")
    assert rate == music.SAMPLE_RATE and len(wav) > music.SAMPLE_RATE
    # the same piece asked for twice (two visitors, or two clicks) never shares a file
    again = generate()[-1][6]
    assert set(again).isdisjoint(files) and open(again[2], "rb").read() == open(wav_path, "rb").read()


def test_start_needs_no_midi_file_and_your_midi_file_needs_one():
    """The API's defaults start from a chorale; START needs no file at all; 'your MIDI file' without
    one says so."""
    *_, run = list(tab.generate(SHIPPED, tab.FROM_START, notes=6))[-1]
    assert run["prompt_length"] == 0 and run["pitch"].shape == (1 + 6,)
    *_, run = list(tab.generate(SHIPPED, notes=4))[-1]
    assert run["prompt_length"] == 8
    with pytest.raises(gr.Error, match="Upload a MIDI file to take the seed phrase from"):
        list(tab.generate(SHIPPED, tab.FROM_MIDI, notes=4))


def test_the_attention_rnn_generates_and_explains_too():
    sound, *_, run = generate(checkpoint="music_rnn_chorales", notes=16)[-1]
    assert np.abs(sound[1]).max() > 1000 and run["pitch"].shape == (1 + 8 + 16,)
    layer, head, shown = tab.select_checkpoint("music_rnn_chorales")
    assert head["choices"] in (["mean", "1"], [("mean", "mean"), ("1", "1")]) and not layer["interactive"]
    card = parts.card_of(tab.FAMILIES, "music_rnn_chorales")
    assert "attention RNN" in card and "pitch loss" in card
    att, caption = tab.show_attention(run, 1, "1")
    assert att.ndim == 3
    with pytest.raises(gr.Error, match="Layer must be from 1 to 1"):
        tab.show_attention(run, 2, "mean")


def test_same_seed_same_piece_other_seed_differs():
    a, b, c = (generate(seed=s, start_from=tab.FROM_START, notes=10)[-1][-1] for s in (4, 4, 5))
    assert np.array_equal(a["pitch"], b["pitch"]) and np.array_equal(a["duration"], b["duration"])
    assert not np.array_equal(a["pitch"], c["pitch"])


def test_rerender_changes_tempo_and_instrument():
    run = generate(notes=8)[-1][-1]
    slow = tab.rerender(run, 60, "Flute")[1]
    fast = tab.rerender(run, 180, "Flute")[1]
    assert len(slow) > 2 * len(fast)
    with pytest.raises(gr.Error, match="Generate a piece first"):
        tab.rerender(None, 90, "Flute")
    with pytest.raises(gr.Error, match="Unknown instrument"):
        tab.rerender(run, 90, "Kazoo")


def test_seed_phrase_from_an_uploaded_midi(tmp_path):
    p, _ = music.chorale("bach/bwv347")
    path = midi_of(tmp_path, "bach/bwv347")
    *_, record, _, run = generate(start_from=tab.FROM_MIDI, midi_file=path, seed_phrase_notes=5, notes=6)[-1]
    assert np.array_equal(run["pitch"][1:6], p[:5])
    assert record["controls"]["midi_file"] == "mine.mid" and record["controls"]["midi_file_sha256"] == \
        parts.file_hash(path)
    roll, note = tab.describe_upload(path)
    assert roll["visible"] and roll["value"].ndim == 3 and f"mine.mid: {int((p >= 2).sum())} notes" in note


@pytest.mark.parametrize("kw, words", [
    ({"notes": 0}, "Number of notes"),
    ({"notes": 10**6}, "Number of notes"),
    ({"notes": 2.5}, "Number of notes must be a whole number"),
    ({"notes": None}, "Number of notes"),
    ({"seed": -1}, "Seed"),
    ({"seed": 1.5}, "Seed"),
    ({"seed": None}, "Seed"),
    ({"pitch_temperature": -0.5}, "temperature"),
    ({"tempo": 1000}, "Tempo"),
    ({"start_from": tab.FROM_MIDI}, "Upload a MIDI"),
    ({"start_from": "the radio"}, "Unknown seed source"),
    ({"seed_phrase_notes": 0}, "Seed phrase length"),
    ({"seed_phrase_notes": float("nan")}, "Seed phrase length"),
    ({"chorale": "bach/nothing"}, "No chorale"),
    ({"checkpoint": "no_such_checkpoint"}, "No music checkpoint"),
])
def test_bad_generate_input_gives_a_clear_message(kw, words):
    with pytest.raises(gr.Error, match=words):
        generate(**kw)


def test_bad_uploads_give_clear_messages(tmp_path, user_dir, actions):
    text = tmp_path / "song.mid"
    text.write_text("la la la")
    with pytest.raises(gr.Error, match="not a MIDI file"):
        tab.describe_upload(str(text))
    with pytest.raises(gr.Error, match="not a MIDI file"):
        generate(start_from=tab.FROM_MIDI, midi_file=str(text))
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(gr.Error, match="no notes"):
        list(actions["music_train"]("Transformer", [str(empty)], 0, 1, 20, 8, 1e-3, "x", SHIPPED))
    with pytest.raises(gr.Error, match="Unknown model"):
        list(actions["music_train"]("GPT-5", [], 0, 1, 20, 8, 1e-3, "x", SHIPPED))


def test_attention_needs_a_piece_and_valid_layer_and_head():
    with pytest.raises(gr.Error, match="Generate a piece first"):
        tab.show_attention(None, 1, "mean")
    run = {"name": SHIPPED, "pitch": np.array([0, 60, 62]), "duration": np.array([0, 4, 4])}
    with pytest.raises(gr.Error, match="Layer"):
        tab.show_attention(run, 9, "mean")
    with pytest.raises(gr.Error, match="Head"):
        tab.show_attention(run, 1, "9")
    with pytest.raises(gr.Error, match="Head"):
        tab.show_attention(run, 1, "loud")


def test_card_shows_held_out_losses_beside_measured_baselines():
    """The card's baselines are measured on the held-out chorales, not fixed text."""
    card = parts.card_of(tab.FAMILIES, SHIPPED)
    assert "pitch loss" in card and "duration loss" in card and "nats" in card and "transformer: 3 blocks" in card
    b = music.baselines()
    assert f"{b['note_uniform']:.2f} and {b['duration_uniform']:.2f} nats" in card
    assert f"{b['note_unigram']:.2f} and {b['duration_unigram']:.2f} nats" in card
    layer, head, shown = tab.select_checkpoint(SHIPPED)
    assert head["choices"][0] in (("mean", "mean"), "mean") and layer["value"] == 3 and shown["maximum"] == 64


def test_training_in_the_page_streams_curves_and_a_playable_sample(user_dir, tmp_path, actions):
    mine = midi_of(tmp_path, "bach/bwv347")
    outs = []
    deadline = time.time() + 90
    for out in actions["music_train"]("Transformer", [mine], 0, 1, 20, 8, 1e-3, "my_music_test", SHIPPED):
        outs.append(out)
        assert time.time() < deadline
    status, _, _, _, dropdown = outs[-1]
    assert "Finished 20 steps" in status
    rolls = [o[2] for o in outs if isinstance(o[2], np.ndarray)]
    sounds = [o[3] for o in outs if isinstance(o[3], tuple)]
    assert rolls and rolls[-1].ndim == 3
    assert sounds and sounds[-1][0] == music.SAMPLE_RATE and np.abs(sounds[-1][1]).max() > 0
    assert (user_dir / "my_music_test.safetensors").exists()
    assert {SHIPPED, "music_rnn_chorales", "my_music_test"} <= {v for _, v in dropdown["choices"]}
    assert "plus 1 of your MIDI files" in parts.card_of(tab.FAMILIES, "my_music_test")


def test_a_resumed_run_trains_on_the_midi_file_it_started_with(user_dir, tmp_path, actions):
    """Another upload with the same file name but other notes does not change what a resumed run
    learns from: uploads are kept under their content hash."""
    first = midi_of(tmp_path, "bach/bwv347")
    tokens = music.read_midi(first)
    assert "Finished 10 steps" in list(actions["music_train"]("Attention RNN", [first], 0, 1, 10, 8, 1e-3,
                                                               "resume_me", SHIPPED))[-1][0]
    kept = jobs.JOBS.current.config.midi_files
    assert len(kept) == 1 and kept[0].startswith(str(parts.UPLOADS))
    # someone uploads another mine.mid (another chorale) for a run of their own
    (tmp_path / "other").mkdir()
    (tmp_path / "mine.mid").write_bytes(open(midi_of(tmp_path / "other", "bach/bwv269"), "rb").read())
    assert tab.keep_uploads([str(tmp_path / "mine.mid")]) != kept
    resumed = list(actions["music_train_resume"]("resume_me", 20, SHIPPED))
    assert "Finished 20 steps" in resumed[-1][0]
    again = jobs.JOBS.current.config.midi_files
    assert again == kept
    p, d = music.read_midi(again[0])
    assert np.array_equal(p, tokens[0]) and np.array_equal(d, tokens[1])


def test_training_the_attention_rnn_in_the_page(user_dir, actions):
    outs = list(actions["music_train"]("Attention RNN", [], 0, 1, 10, 8, 1e-3, "my_rnn_test", SHIPPED))
    assert "Finished 10 steps" in outs[-1][0]
    assert tab.family_of("my_rnn_test") == "music_rnn"
    assert "attention RNN: 1 LSTM layers" in parts.card_of(tab.FAMILIES, "my_rnn_test")
    with pytest.raises(ValueError, match="music_transformer or music_rnn"):
        parts.import_into(tab.FAMILIES, str(widgets.resolve("musegan", "musegan_chorales")), jobs.LOCAL)


def test_planner_times_a_music_run(user_dir, actions):
    note, steps = actions["music_train_plan"]("Transformer", [], 0, 1, 100, 8, 1e-3, "1 minute")
    assert "s per step" in note and steps["value"] >= 10
